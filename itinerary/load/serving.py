"""What the load tool's two receivers share: an asyncio server whose connections each feed
a protocol session (bytes in; bytes to write and finished items out; no I/O).

The sessions are `SmtpServerSession` (smtp_server.py) and `HttpReceiverSession`
(http_server.py); this module binds either to sockets on the running event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar, cast

Item = TypeVar("Item")


class Session(Protocol[Item]):
    """One connection's protocol state machine."""

    closing: bool

    def greeting(self) -> bytes: ...

    def feed(self, data: bytes, now: float) -> tuple[bytes, list[Item]]: ...


class _SessionProtocol(asyncio.Protocol, Generic[Item]):
    """Feeds a connection's bytes to its session, writes what it answers, hands on its items."""

    def __init__(self, server: SessionServer[Item]) -> None:
        self._server = server
        self._session = server.new_session()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self._transport = cast(asyncio.Transport, transport)
        self._server.connections += 1
        self._server.open_transports.add(self._transport)
        greeting = self._session.greeting()
        if greeting:
            self._transport.write(greeting)

    def data_received(self, data: bytes) -> None:
        out, items = self._session.feed(data, self._server.clock())
        assert self._transport is not None
        if out:
            self._transport.write(out)
        for item in items:
            self._server.on_item(item)
        if self._session.closing:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._server.open_transports.discard(self._transport)


class SessionServer(Generic[Item]):
    """Listens on `host`:`port` (0 picks a free port, stored in `.port` once started) and
    runs one session per connection, calling `on_item` for everything a session finishes.
    `connections` counts the connections accepted (to check that clients reuse them)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        new_session: Callable[[], Session[Item]],
        on_item: Callable[[Item], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.port = port
        self.new_session = new_session
        self.on_item = on_item
        self.clock = clock
        self.connections = 0
        self.open_transports: set[asyncio.Transport] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; raises OSError if the port is taken."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _SessionProtocol(self), self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            for transport in list(self.open_transports):
                transport.close()
            await server.wait_closed()
