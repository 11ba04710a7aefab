"""A keep-alive HTTP/1.1 client for one origin: the webhook channel's transport.

Why not aiohttp's ClientSession: a custom action sends the same small JSON request to the
same origin thousands of times a second, and the session's generality (cookie jar, URL
objects, multidict headers, tracing, redirects, a timer per call) cost 106 us of the
gateway's CPU per call on the development machine. With this client, one asyncio Protocol
per connection and the parser in http1.py, the gateway's whole cost per webhook message
fell from 163 to 108 us (scripts/bench_gateway.py, docs/benchmarks.md). aiohttp still
resolves host names (any AbstractResolver, so the netpolicy check stays in the resolver)
and serves the ingress.

Connections are kept for reuse while the server allows it (HTTP/1.1 without
`Connection: close`), at most `max_connections` at a time; one unused for
`KEEPALIVE_IDLE` seconds is closed at the next call instead of reused (no timer per
call): servers drop idle connections, and a request written on one the server has just
closed is lost. Such a request (no byte of an answer came back
on a reused connection) is sent once more on a new connection; it carries its
idempotency key, so a receiver that did see it can tell.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import cast

from aiohttp.abc import AbstractResolver

from itinerary.channels.http1 import ProtocolError, Response, ResponseParser

KEEPALIVE_IDLE = 15.0  # seconds an unused connection is kept (aiohttp's default too)
DNS_TTL = 60.0  # seconds a host's addresses are kept


class ServerDisconnected(ConnectionError):
    """The server closed the connection before its answer was complete."""


class ConnectFailed(OSError):
    """No address of the host accepted a connection; `cause` is the last error."""

    def __init__(self, host: str, port: int, cause: BaseException) -> None:
        super().__init__(f"cannot connect to {host}:{port}")
        self.host = host
        self.port = port
        self.cause = cause


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; carries one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser: ResponseParser | None = None
        self._answer: asyncio.Future[Response] | None = None

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parser, answer = self._parser, self._answer
        if parser is None or answer is None or answer.done():
            self.close()  # bytes nobody asked for: the stream can no longer be trusted
            return
        try:
            response = parser.feed(data)
        except ProtocolError as exc:
            answer.set_exception(exc)
            self.close()
            return
        if response is not None:
            answer.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        parser, answer = self._parser, self._answer
        if parser is None or answer is None or answer.done():
            return
        try:
            response = parser.eof()
        except ProtocolError as error:
            answer.set_exception(ServerDisconnected(str(error)))
            return
        if response is not None:
            answer.set_result(response)

    # -- use ---------------------------------------------------------------------------

    def send(self, data: bytes, parser: ResponseParser) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._parser = parser
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._answer

    @property
    def answered_anything(self) -> bool:
        return self._parser is not None and self._parser.started

    def finish(self) -> None:
        """The response was read: the connection is free for the next request."""
        self._parser = None
        self._answer = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Http1Client:
    """Sends requests to one origin (scheme, host, port) over pooled keep-alive connections."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        resolver: AbstractResolver,
        max_connections: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        self._tls = tls
        self._resolver = resolver
        self._clock = clock
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: deque[_Connection] = deque()
        self._open: set[_Connection] = set()
        self._addresses: tuple[float, list[tuple[int, str, int]]] | None = None
        self._closed = False

    async def request(self, data: bytes, *, head_request: bool = False) -> Response:
        """Send one request (head and body in `data`) and read its response.

        Raises ConnectFailed, ServerDisconnected, ProtocolError or OSError; the caller
        bounds the time (a cancelled request closes its connection)."""
        async with self._slots:
            connection = self._take_idle()
            reused = connection is not None
            if connection is None:
                connection = await self._connect()
            while True:
                try:
                    response = await connection.send(data, ResponseParser(head_request=head_request))
                except (ServerDisconnected, ConnectionResetError, BrokenPipeError):
                    stale = reused and not connection.answered_anything
                    self._discard(connection)
                    if not stale:
                        raise
                    # The server closed a kept connection as the request went out.
                    connection, reused = await self._connect(), False
                    continue
                except BaseException:
                    self._discard(connection)
                    raise
                connection.finish()
                if response.keep_alive and not self._closed:
                    connection.idle_since = self._clock()
                    self._idle.append(connection)
                else:
                    self._discard(connection)
                return response

    async def close(self) -> None:
        """Close every connection; requests in flight fail."""
        self._closed = True
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()

    @property
    def connections(self) -> int:
        """Connections open now (idle or carrying a request)."""
        return len(self._open)

    def _take_idle(self) -> _Connection | None:
        now = self._clock()
        while self._idle:
            connection = self._idle.pop()  # the most recently used: the least likely closed
            if not connection.closed and now - connection.idle_since < KEEPALIVE_IDLE:
                # Older ones wait at the left end: drop those past their keep-alive.
                while self._idle and now - self._idle[0].idle_since >= KEEPALIVE_IDLE:
                    self._discard(self._idle.popleft())
                return connection
            self._discard(connection)
        return None

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._open.discard(connection)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        last: BaseException | None = None
        for family, address, port in await self._resolve():
            try:
                _, connection = await loop.create_connection(
                    _Connection,
                    address,
                    port,
                    family=family,
                    ssl=self._tls,
                    server_hostname=self.host if self._tls is not None else None,
                )
            except OSError as exc:  # ssl.SSLError is an OSError too
                last = exc
                continue
            sock = connection.transport.get_extra_info("socket") if connection.transport else None
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._closed:
                connection.close()
                raise ConnectFailed(self.host, self.port, ConnectionAbortedError("client closed"))
            self._open.add(connection)
            return connection
        raise ConnectFailed(self.host, self.port, last or OSError(f"{self.host} has no address"))

    async def _resolve(self) -> list[tuple[int, str, int]]:
        """(family, address, port) to try in turn; an address literal is not looked up."""
        literal = _address_literal(self.host)
        if literal is not None:
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            return [(family, str(literal), self.port)]
        now = self._clock()
        cached = self._addresses
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            answers = await self._resolver.resolve(self.host, self.port, socket.AF_UNSPEC)
        except OSError as exc:
            if type(exc) not in (OSError, socket.gaierror):
                raise  # a resolver's own refusal (netpolicy) is the caller's to judge
            raise ConnectFailed(self.host, self.port, exc) from exc
        addresses = [(int(a["family"]), str(a["host"]), int(a["port"])) for a in answers]
        self._addresses = (now + DNS_TTL, addresses)
        return addresses


def _address_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
