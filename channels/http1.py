"""HTTP/1.1 framing for the webhook client: a request head builder and a response parser.

Pure logic, no I/O: `ResponseParser` is fed the bytes a connection receives and says when
a whole response has arrived (RFC 9112 section 6.3 framing: Content-Length, chunked, or
until the server closes), what its status and Retry-After are, and whether the
connection may carry another request. The body is not kept: a custom action's answer is
judged by its status (and Retry-After), so its bytes are counted and dropped.

A response that does not follow the grammar raises `ProtocolError`; the connection it
came on is then closed, never reused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_HEAD = 64 * 1024  # bytes of status line plus headers; more is refused, not buffered
MAX_CHUNK_LINE = 4 * 1024  # a chunk-size line with its extensions
MAX_INTERIM = 10  # 1xx responses before the final one

_TOKEN = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_STATUS_LINE = re.compile(rb"^HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?$")
_HEX = re.compile(rb"^[0-9A-Fa-f]+$")
_UNSAFE_VALUE = re.compile("[\r\n\x00]")


class ProtocolError(Exception):
    """The peer's bytes are not a well-formed HTTP/1.x response."""


@dataclass(frozen=True, slots=True)
class Response:
    """What the client needs of a response: its status, Retry-After, and whether the
    connection may be used again."""

    status: int
    retry_after: str | None
    keep_alive: bool
    body_bytes: int


def header_value_problem(value: str) -> str | None:
    """Why `value` cannot be sent as a header value (a line break would inject headers)."""
    if _UNSAFE_VALUE.search(value):
        return "contains a line break or NUL"
    return None


def is_token(name: str) -> bool:
    """Whether `name` is a valid header field name (an RFC 9110 token)."""
    return bool(_TOKEN.match(name.encode("latin-1", "replace")))


def request_head(method: str, target: str, headers: list[tuple[str, str]]) -> bytes:
    """The request line and headers, ending with the blank line.

    Values must have passed `header_value_problem`; they are sent as UTF-8 (identities in
    idempotency keys may hold non-ASCII e-mail addresses)."""
    lines = [f"{method} {target} HTTP/1.1"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8")


# Parser states
_HEAD = 0
_LENGTH = 1  # body of known length
_CHUNK_SIZE = 2
_CHUNK_DATA = 3
_CHUNK_DATA_END = 4  # the CRLF after a chunk's data
_TRAILERS = 5
_UNTIL_CLOSE = 6
_DONE = 7


class ResponseParser:
    """Parses one response to a request, fed incrementally (see the module docstring).

    `feed(data)` returns the Response once it is complete, else None; `eof()` is called
    when the server closes, and returns the Response if closing ended it (a body framed
    by the connection's end) or raises ProtocolError if it cut it short. Bytes after the
    response are `extra`: a server that sends them is not trusted with another request.
    """

    def __init__(self, *, head_request: bool = False) -> None:
        self._head_request = head_request
        self._buffer = bytearray()
        self._state = _HEAD
        self._remaining = 0
        self._interim = 0
        self._status = 0
        self._retry_after: str | None = None
        self._keep_alive = False
        self._body_bytes = 0
        self.extra = 0
        self.started = False  # any byte of a response arrived

    def feed(self, data: bytes) -> Response | None:
        if data:
            self.started = True
        if self._state == _DONE:
            self.extra += len(data)
            return None
        if self._state == _UNTIL_CLOSE:
            self._body_bytes += len(data)
            return None
        if self._state == _LENGTH and not self._buffer:
            # The common case after the head: body bytes straight off the wire, no copy.
            taken = min(len(data), self._remaining)
            self._remaining -= taken
            self._body_bytes += taken
            if self._remaining:
                return None
            self._state = _DONE
            self.extra += len(data) - taken
            return self._response()
        self._buffer += data
        return self._advance()

    def eof(self) -> Response | None:
        """The server closed the connection."""
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
            self._keep_alive = False
            return self._response()
        if self._state == _DONE:
            return None
        if not self.started:
            raise ProtocolError("server closed the connection without answering")
        raise ProtocolError("server closed the connection in the middle of its response")

    def _response(self) -> Response:
        return Response(self._status, self._retry_after, self._keep_alive and not self.extra, self._body_bytes)

    def _advance(self) -> Response | None:
        buffer = self._buffer
        while True:
            state = self._state
            if state == _HEAD:
                end = self._find(b"\r\n\r\n", MAX_HEAD, f"response head over {MAX_HEAD} bytes")
                if end == -1:
                    return None
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                self._read_head(head)
            elif state == _LENGTH:
                if not self._skip_body():
                    return None
                self._state = _DONE
            elif state == _CHUNK_SIZE:
                end = self._find(b"\r\n", MAX_CHUNK_LINE, "chunk size line too long")
                if end == -1:
                    return None
                size_text = bytes(buffer[:end]).split(b";", 1)[0].strip(b" \t")
                if not _HEX.match(size_text) or len(size_text) > 16:
                    raise ProtocolError(f"bad chunk size {size_text[:20]!r}")
                del buffer[: end + 2]
                self._remaining = int(size_text, 16)
                self._state = _CHUNK_DATA if self._remaining else _TRAILERS
            elif state == _CHUNK_DATA:
                if not self._skip_body():
                    return None
                self._state = _CHUNK_DATA_END
            elif state == _CHUNK_DATA_END:
                if len(buffer) < 2:
                    return None
                if buffer[:2] != b"\r\n":
                    raise ProtocolError("chunk data not followed by CRLF")
                del buffer[:2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = self._find(b"\r\n", MAX_HEAD, f"trailers over {MAX_HEAD} bytes")
                if end == -1:
                    return None
                del buffer[: end + 2]
                if end == 0:  # the blank line that ends the trailers
                    self._state = _DONE
            elif state == _UNTIL_CLOSE:
                self._body_bytes += len(buffer)
                buffer.clear()
                return None
            else:  # _DONE
                self.extra += len(buffer)
                buffer.clear()
                return self._response()

    def _find(self, marker: bytes, limit: int, too_long: str) -> int:
        """Where `marker` starts in the buffer, -1 while it has not arrived; a line or head
        longer than `limit` is refused whether or not its end is here yet."""
        end = self._buffer.find(marker)
        if end > limit or (end == -1 and len(self._buffer) > limit):
            raise ProtocolError(too_long)
        return end

    def _skip_body(self) -> bool:
        """Drop buffered body bytes up to the remaining count; True once none remain."""
        taken = min(len(self._buffer), self._remaining)
        del self._buffer[:taken]
        self._remaining -= taken
        self._body_bytes += taken
        return not self._remaining

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        match = _STATUS_LINE.match(lines[0])
        if match is None:
            raise ProtocolError(f"bad status line {lines[0][:80]!r}")
        minor, status = int(match.group(1)), int(match.group(2))
        if status < 100:
            raise ProtocolError(f"bad status {status}")
        fields: dict[bytes, list[bytes]] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.match(name):
                # Also refuses obsolete line folding (a line starting with a space).
                raise ProtocolError(f"bad header line {line[:80]!r}")
            fields.setdefault(name.lower(), []).append(value.strip(b" \t"))
        if 100 <= status < 200:
            if status == 101:
                raise ProtocolError("server switched protocols")
            self._interim += 1
            if self._interim > MAX_INTERIM:
                raise ProtocolError("too many interim responses")
            return  # 100 Continue, 103 Early Hints: the final response follows
        self._status = status
        retry_after = fields.get(b"retry-after")
        self._retry_after = retry_after[0].decode("latin-1") if retry_after else None
        connection = {t.strip().lower() for v in fields.get(b"connection", []) for t in v.split(b",")}
        self._keep_alive = (b"close" not in connection) if minor == 1 else (b"keep-alive" in connection)
        self._frame(status, fields)

    def _frame(self, status: int, fields: dict[bytes, list[bytes]]) -> None:
        """Choose how the body ends (RFC 9112 section 6.3)."""
        if self._head_request or status in (204, 304):
            self._state = _DONE
            return
        encodings = fields.get(b"transfer-encoding")
        if encodings:
            codings = [t.strip().lower() for v in encodings for t in v.split(b",") if t.strip()]
            if codings and codings[-1] == b"chunked":
                self._state = _CHUNK_SIZE
            else:
                self._state = _UNTIL_CLOSE
                self._keep_alive = False
            return
        lengths = fields.get(b"content-length")
        if lengths is None:
            self._state = _UNTIL_CLOSE
            self._keep_alive = False
            return
        values = {t.strip() for v in lengths for t in v.split(b",")}
        if len(values) != 1:
            raise ProtocolError("conflicting Content-Length headers")
        text = values.pop()
        if not text.isdigit() or len(text) > 18:
            raise ProtocolError(f"bad Content-Length {text[:20]!r}")
        self._remaining = int(text)
        self._state = _LENGTH if self._remaining else _DONE
