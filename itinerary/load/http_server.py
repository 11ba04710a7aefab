"""The load tool's webhook receiver: a small HTTP/1.1 server on the caller's event loop.

Why not aiohttp's web server, which the tests and the demo use (itinerary/receivers.py):
at load-test rates the receiver runs on the same cores as the engine it measures, and
aiohttp's request objects, handler task and response machinery cost ~79 µs of CPU per
call (scripts/bench_gateway.py). This server reads a call in one pass over its bytes and
answers with one write.

It accepts what a custom-action endpoint accepts, and checks it the same way as the
project's `WebhookReceiver`: POST or PUT (405 otherwise), `Authorization: Bearer <token>`
(401), a JSON body (400), framed by Content-Length (411 without one, 501 for a chunked
body, 413 over MAX_BODY). `Expect: 100-continue` is answered, keep-alive and pipelined
requests are served in order, and every buffer is bounded. The protocol is
`HttpReceiverSession` (bytes in, responses and calls out, no I/O), tested without
sockets; `HttpReceiver` binds it to an asyncio server.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from itinerary.load.serving import SessionServer

__all__ = ["MAX_BODY", "MAX_HEAD", "HttpReceiver", "HttpReceiverSession", "ReceivedCall"]

MAX_HEAD = 16 * 1024  # request line and headers
MAX_BODY = 1024 * 1024
_REQUEST_LINE = re.compile(rb"^([A-Z]{1,16}) (\S{1,8000}) HTTP/1\.([01])$")
_REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True, slots=True)
class ReceivedCall:
    """One accepted call: where it went, its idempotency key and event time, and when it came."""

    path: str
    idempotency_key: str | None
    event_time: float | None
    arrived: float


def _answer(status: int, body: bytes, *, close: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n"
    )
    return head.encode() + body


_OK = _answer(200, b'{"ok": true}', close=False)


def _error(status: int, message: str, *, close: bool = False) -> bytes:
    return _answer(status, json.dumps({"error": message}).encode(), close=close)


def _float(value: bytes | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


class HttpReceiverSession:
    """The server side of one HTTP connection, as a state machine over received bytes.

    `feed(data, now)` returns the bytes to write (every response this data completed, in
    order) and the calls accepted. `closing` is True once the connection must end (the
    client asked, or sent something that cannot be framed); the caller writes and closes.
    """

    def __init__(self, token: str | None, event_time_header: str, idempotency_header: str = "Idempotency-Key") -> None:
        self._expected_auth = f"Bearer {token}".encode() if token is not None else None
        self._event_time = event_time_header.lower().encode()
        self._idempotency = idempotency_header.lower().encode()
        self.closing = False
        self._buffer = bytearray()
        # The request whose body is awaited: (method, path, headers, keep-alive, length)
        self._pending: tuple[bytes, bytes, dict[bytes, bytes], bool, int] | None = None

    def greeting(self) -> bytes:
        return b""  # HTTP clients speak first

    def feed(self, data: bytes, now: float) -> tuple[bytes, list[ReceivedCall]]:
        if self.closing:
            return b"", []
        self._buffer += data
        out: list[bytes] = []
        calls: list[ReceivedCall] = []
        while not self.closing:
            if self._pending is None and not self._read_head(out):
                break
            pending = self._pending
            assert pending is not None
            method, path, headers, keep_alive, length = pending
            if len(self._buffer) < length:
                break
            body = bytes(self._buffer[:length])
            del self._buffer[:length]
            self._pending = None
            out.append(self._respond(method, path, headers, body, keep_alive, now, calls))
            if not keep_alive:
                self.closing = True
        return b"".join(out), calls

    def _read_head(self, out: list[bytes]) -> bool:
        """Take a request head off the buffer into `_pending`; False if it is not all here
        (or the connection is closing over a bad one)."""
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end == -1 or end > MAX_HEAD:
            if len(buffer) > MAX_HEAD:
                self._fail(out, 431, "request head too large")
            return False
        lines = bytes(buffer[:end]).split(b"\r\n")
        del buffer[: end + 4]
        match = _REQUEST_LINE.match(lines[0])
        if match is None:
            self._fail(out, 400, "bad request line")
            return False
        method, target, minor = match.group(1), match.group(2), match.group(3)
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name[-1:] in (b" ", b"\t") or name[:1] in (b" ", b"\t"):
                self._fail(out, 400, "bad header line")
                return False
            headers[name.lower()] = value.strip(b" \t")
        connection = headers.get(b"connection", b"").lower()
        keep_alive = b"close" not in connection if minor == b"1" else b"keep-alive" in connection
        if b"transfer-encoding" in headers:
            self._fail(out, 501, "chunked request bodies are not supported; send Content-Length")
            return False
        text = headers.get(b"content-length")
        if text is None:
            length = 0
        elif not text.isdigit():
            self._fail(out, 400, "bad Content-Length")
            return False
        else:
            length = int(text)
        if length > MAX_BODY:
            self._fail(out, 413, f"body over {MAX_BODY} bytes")
            return False
        if length and headers.get(b"expect", b"").lower() == b"100-continue" and len(buffer) < length:
            out.append(_CONTINUE)
        path = target.split(b"?", 1)[0]
        self._pending = (method, path, headers, keep_alive, length)
        return True

    def _respond(
        self,
        method: bytes,
        path: bytes,
        headers: dict[bytes, bytes],
        body: bytes,
        keep_alive: bool,
        now: float,
        calls: list[ReceivedCall],
    ) -> bytes:
        close = not keep_alive
        if method not in (b"POST", b"PUT"):
            return _error(405, "method not allowed", close=close)
        if self._expected_auth is not None and not hmac.compare_digest(
            headers.get(b"authorization", b""), self._expected_auth
        ):
            return _error(401, "unauthorized", close=close)
        if b"content-length" not in headers:
            return _error(411, "Content-Length required", close=close)
        try:
            json.loads(body)
        except ValueError:
            return _error(400, "body is not JSON", close=close)
        key = headers.get(self._idempotency)
        calls.append(
            ReceivedCall(
                path.decode("utf-8", "replace"),
                key.decode("utf-8", "replace") if key is not None else None,
                _float(headers.get(self._event_time)),
                now,
            )
        )
        if close:
            return _answer(200, b'{"ok": true}', close=True)
        return _OK

    def _fail(self, out: list[bytes], status: int, message: str) -> None:
        """Answer a request that cannot be framed, and end the connection."""
        out.append(_error(status, message, close=True))
        self.closing = True
        self._buffer.clear()


class HttpReceiver(SessionServer[ReceivedCall]):
    """A webhook endpoint on the running event loop, calling `on_call` for each accepted call.

    `port` 0 picks a free port, stored in `.port` once started. `connections` counts the
    connections accepted (to check that a client reuses them).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        token: str | None,
        on_call: Callable[[ReceivedCall], None],
        event_time_header: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            host,
            port,
            new_session=lambda: HttpReceiverSession(token, event_time_header),
            on_item=on_call,
            clock=clock,
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
