"""Direct streams between actors: the data plane's calls as msgpack frames on kept TCP
connections, one connection per pair of processes.

A Ray actor call costs about 0.6 ms of CPU in the caller and 0.8 ms in the callee on the
development machine, and 1.3 ms from call to answer; the same call as a frame on a kept
connection costs about 60 µs on each side and 130 µs from call to answer
(`scripts/bench_calls.py`, docs/benchmarks.md, stop 17). At 10,000 events/s the data plane makes a few hundred calls
a second (batches, sends, outcomes), so Ray's cost was a fifth of the machine. Ray still
finds the peer: the caller asks the actor by name, through Ray, for its `endpoint` (host,
port and a token drawn at random when the server started), then connects and presents
the token. Only the methods the callee lists can be called.

Frames: a call is `[call_id, method, args]`, its answer `[call_id, error, result]` (error
is None or the callee's exception as text). The first frame on a connection is
`["hello", token]`, answered `[0, None, "ok"]`; any other first frame, or a wrong token,
closes the connection. Calls run concurrently on the callee, as Ray runs an async
actor's calls; answers come back in the order they finish.

No Ray here: the actors bind their methods (`WireServer(handlers)`), and `RayPeers`
decides which calls go this way (actors/peers.py).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

import msgpack

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]

# One frame's bound: a batch of 1,000 records at the largest record a shard accepts
# (64 KiB, runtime.ingress.max_event_bytes) with room to spare. A peer that sends more is
# cut off (the caller sees its connection fail), not buffered without end.
MAX_FRAME_BYTES = 256 * 1024 * 1024
HELLO = "hello"
# A peer whose machine vanished (no reset ever comes) is found dead by TCP keepalive in
# about IDLE + INTERVAL x COUNT seconds, instead of the kernel's two hours.
KEEPALIVE_IDLE = 10
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3


class WireError(ConnectionError):
    """The connection to a peer failed: refused, lost, or the token was not accepted.
    Calls in flight on it fail with this; the caller looks the peer up again."""


class RemoteError(Exception):
    """The callee's method raised; the text names its exception. The connection is fine."""


def _keepalive(sock: socket.socket | None) -> None:
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
    ):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _unpacker() -> msgpack.Unpacker:
    return msgpack.Unpacker(raw=False, max_buffer_size=MAX_FRAME_BYTES)


def _pack(frame: list[Any]) -> bytes:
    return msgpack.packb(frame, use_bin_type=True)  # type: ignore[no-any-return]


class WireServer:
    """Serves an actor's listed methods to peers that present its token."""

    def __init__(self, handlers: dict[str, Handler], name: str = "wire") -> None:
        self.handlers = dict(handlers)
        self.name = name
        self.token = secrets.token_urlsafe(24)
        self.calls = 0
        self.refused = 0  # connections closed for a bad hello or a malformed frame
        self._server: asyncio.base_events.Server | None = None
        self._sessions: set[_ServerSession] = set()
        self._starting = asyncio.Lock()
        self.host = ""
        self.port = 0

    async def start(self, host: str) -> dict[str, Any]:
        """Listen on `host` (a port the system picks); returns the endpoint to hand out."""
        async with self._starting:
            if self._server is None:
                loop = asyncio.get_running_loop()
                self._server = await loop.create_server(lambda: _ServerSession(self), host, 0)
                self.host = host
                self.port = int(self._server.sockets[0].getsockname()[1])
        return self.endpoint()

    def endpoint(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "token": self.token}

    def summary(self) -> dict[str, Any]:
        """For status: where it listens (no token), calls served, connections refused."""
        return {
            "address": f"{self.host}:{self.port}" if self._server is not None else None,
            "connections": len(self._sessions),
            "calls": self.calls,
            "refused": self.refused,
        }

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for session in list(self._sessions):
                session.close()
            await self._server.wait_closed()
            self._server = None


class _ServerSession(asyncio.Protocol):
    """One caller's connection: checks the hello, then runs each call as a task."""

    def __init__(self, server: WireServer) -> None:
        self._server = server
        self._unpacker = _unpacker()
        self._transport: asyncio.Transport | None = None
        self._authenticated = False
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._server._sessions.add(self)
        _keepalive(transport.get_extra_info("socket"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._sessions.discard(self)
        self._transport = None
        # Calls still running finish on the actor (Ray's calls would too); only their
        # answers have nowhere to go.

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None  # frames already read behind a refused one are not run

    def _refuse(self, why: str) -> None:
        self._server.refused += 1
        log.warning("%s: connection closed: %s", self._server.name, why)
        self.close()

    def data_received(self, data: bytes) -> None:
        try:
            self._unpacker.feed(data)
            for frame in self._unpacker:
                if self._transport is None:
                    return
                self._frame(frame)
        except msgpack.BufferFull:
            self._refuse(f"a frame over {MAX_FRAME_BYTES} bytes")
        except Exception as exc:  # whatever a peer sends ends its connection, not the actor's loop
            self._refuse(f"malformed frame: {type(exc).__name__}")

    def _frame(self, frame: Any) -> None:
        if not self._authenticated:
            token = frame[1] if isinstance(frame, list) and len(frame) == 2 and frame[0] == HELLO else None
            # As bytes: compare_digest refuses str with characters beyond ASCII.
            if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self._server.token.encode()):
                self._refuse("the first frame is not a hello with this actor's token")
                return
            self._authenticated = True
            self._write([0, None, "ok"])
            return
        if not (isinstance(frame, list) and len(frame) == 3 and isinstance(frame[0], int)):
            self._refuse("a call frame is [call_id, method, args]")
            return
        call_id, method, args = frame
        handler = self._server.handlers.get(method) if isinstance(method, str) else None
        if handler is None or not isinstance(args, list):
            self._write([call_id, f"LookupError: no method {method!r} on this stream", None])
            return
        self._server.calls += 1
        task = asyncio.get_running_loop().create_task(self._run(call_id, handler, args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, call_id: int, handler: Handler, args: list[Any]) -> None:
        try:
            result = await handler(*args)
        except Exception as exc:
            self._write([call_id, f"{type(exc).__name__}: {exc}", None])
            return
        try:
            self._write([call_id, None, result])
        except (TypeError, ValueError) as exc:  # a result msgpack cannot carry: a bug here
            self._write([call_id, f"{type(exc).__name__}: answer not encodable: {exc}", None])

    def _write(self, frame: list[Any]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_pack(frame))


class WireClient(asyncio.Protocol):
    """A kept connection to one peer's WireServer; calls on it may overlap."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self._unpacker = _unpacker()
        self._transport: asyncio.Transport | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 1
        self._lost: Exception | None = None

    @classmethod
    async def connect(cls, peer: str, endpoint: dict[str, Any], timeout: float) -> WireClient:
        """Open a connection to `endpoint` and present its token; raises WireError."""
        loop = asyncio.get_running_loop()
        client = cls(peer)
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: client, str(endpoint["host"]), int(endpoint["port"])), timeout
            )
            answer = await asyncio.wait_for(client._send(0, [HELLO, str(endpoint["token"])]), timeout)
        except (TimeoutError, OSError) as exc:
            client.close()
            raise WireError(f"{peer}: cannot open a stream to {endpoint['host']}:{endpoint['port']}: {exc}") from exc
        if answer != "ok":
            client.close()
            raise WireError(f"{peer}: stream hello answered {answer!r}")
        return client

    @property
    def closed(self) -> bool:
        return self._transport is None or self._lost is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        _keepalive(transport.get_extra_info("socket"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(WireError(f"{self.peer}: stream lost" + (f": {exc}" if exc else "")))

    def _fail(self, error: WireError) -> None:
        if self._lost is None:
            self._lost = error
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
        if self._transport is not None:
            self._transport.close()

    def close(self) -> None:
        self._fail(WireError(f"{self.peer}: stream closed"))

    def data_received(self, data: bytes) -> None:
        try:
            self._unpacker.feed(data)
            for frame in self._unpacker:
                call_id, error, result = frame
                future = self._pending.pop(call_id, None)
                if future is None or future.done():
                    continue  # its caller gave up (cancelled)
                if error is None:
                    future.set_result(result)
                else:
                    future.set_exception(RemoteError(f"{self.peer}: {error}"))
        except (msgpack.BufferFull, ValueError, TypeError, msgpack.UnpackException) as exc:
            self._fail(WireError(f"{self.peer}: malformed answer: {type(exc).__name__}"))

    def _send(self, call_id: int, frame: list[Any]) -> asyncio.Future[Any]:
        """Write `frame`; the future resolves with the answer that carries `call_id`."""
        if self._lost is not None:
            raise self._lost
        if self._transport is None:
            raise WireError(f"{self.peer}: stream not open")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        self._transport.write(_pack(frame))
        return future

    async def call(self, method: str, *args: Any) -> Any:
        """Call `method` on the peer; raises WireError (connection) or RemoteError (the
        method raised)."""
        call_id = self._next_id
        self._next_id += 1
        future = self._send(call_id, [call_id, method, list(args)])
        try:
            return await future
        finally:
            self._pending.pop(call_id, None)
