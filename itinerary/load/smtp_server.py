"""The load tool's SMTP receiver: a small RFC 5321 server on the caller's event loop.

Why not aiosmtpd, which the tests and the demo use: at load-test rates the receiver runs
on the same cores as the engine it measures, and aiosmtpd cost ~140 µs of CPU per message
(a coroutine per command, a thread of its own and its GIL hand-overs). This server answers
a pipelined group of commands with one write and takes a message in one pass over its
bytes, which costs a fraction of that (figures in docs/benchmarks.md).

It is a receiver, not a relay: it speaks enough SMTP for any client (EHLO/HELO, MAIL,
RCPT, DATA, RSET, NOOP, VRFY, QUIT; PIPELINING, 8BITMIME and SIZE advertised; no
STARTTLS or AUTH), refuses commands out of order as RFC 5321 says, bounds every buffer,
and hands each accepted message to a callback with its arrival time. The protocol logic
is `SmtpServerSession` (bytes in, replies and messages out, no I/O), so it is tested
without sockets; `SmtpServer` binds it to an asyncio server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from itinerary.load.serving import SessionServer

__all__ = ["MAX_LINE", "MAX_MESSAGE", "ReceivedMessage", "SmtpServer", "SmtpServerSession"]

MAX_LINE = 4096  # RFC 5321 4.5.3.1.4 allows 512 octets; extensions make lines longer
MAX_MESSAGE = 32 * 1024 * 1024  # advertised as SIZE; larger messages get 552
MAX_RECIPIENTS = 1000
_END_OF_DATA = b"\r\n.\r\n"
# Commands RFC 5321 and its extensions define that this receiver does not offer: 502, not
# the 500 of a command nobody defined, so a client knows to do without.
_NOT_IMPLEMENTED = frozenset({"HELP", "EXPN", "STARTTLS", "AUTH", "BDAT", "ETRN", "TURN"})


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One accepted message: envelope, content (dot-unstuffed, CRLF line ends), arrival."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    arrived: float


def _address(argument: str, keyword: str) -> str | None:
    """The path of `FROM:<a@b> SIZE=10` (keyword FROM); None when it is not that shape."""
    head, colon, rest = argument.partition(":")
    if not colon or head.strip().upper() != keyword:
        return None
    rest = rest.strip()
    if not rest.startswith("<"):
        return None
    end = rest.find(">")
    return None if end == -1 else rest[1:end]


class SmtpServerSession:
    """The server side of one SMTP connection, as a state machine over received bytes.

    `feed(data, now)` takes what the client sent and returns the replies to write (all of
    them in one bytes object, so a pipelined group is answered by one write) and the
    messages completed by this data. `closing` is True once the session has ended (QUIT,
    or a client that broke the limits); the caller writes the replies and closes.
    """

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self.closing = False
        self._buffer = bytearray()
        self._greeted = False
        self._mail_from: str | None = None
        self._rcpt_tos: list[str] = []
        self._in_data = False
        self._scanned = 0  # bytes of the DATA buffer already searched for the terminator
        self._data_too_big = False

    def greeting(self) -> bytes:
        return f"220 {self.hostname} ESMTP itinerary load receiver\r\n".encode()

    def feed(self, data: bytes, now: float) -> tuple[bytes, list[ReceivedMessage]]:
        """Consume `data`; return (replies to send, messages completed)."""
        if self.closing:
            return b"", []
        self._buffer += data
        replies: list[str] = []
        messages: list[ReceivedMessage] = []
        while not self.closing:
            if self._in_data:
                if not self._take_data(replies, messages, now):
                    break
                continue
            end = self._buffer.find(b"\r\n")
            if end == -1:
                if len(self._buffer) > MAX_LINE:
                    replies.append("500 5.5.2 Line too long")
                    self.closing = True
                break
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 2]
            if len(line) > MAX_LINE:
                replies.append("500 5.5.2 Line too long")
                continue
            replies.append(self._command(line.decode("utf-8", "replace")))
        return ("\r\n".join(replies) + "\r\n").encode() if replies else b"", messages

    def _command(self, line: str) -> str:
        verb, _, argument = line.partition(" ")
        verb = verb.upper()
        if verb == "EHLO" or verb == "HELO":
            if not argument.strip():
                return f"501 5.5.4 Syntax: {verb} hostname"
            self._greeted = True
            self._reset()
            if verb == "HELO":
                return f"250 {self.hostname}"
            return f"250-{self.hostname}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE {MAX_MESSAGE}"
        if verb == "MAIL":
            if not self._greeted:
                return "503 5.5.1 Error: send HELO first"
            if self._mail_from is not None:
                return "503 5.5.1 Error: nested MAIL command"
            sender = _address(argument, "FROM")
            if sender is None:
                return "501 5.5.4 Syntax: MAIL FROM:<address>"
            self._mail_from = sender
            return "250 2.1.0 OK"
        if verb == "RCPT":
            if self._mail_from is None:
                return "503 5.5.1 Error: need MAIL command"
            recipient = _address(argument, "TO")
            if not recipient:
                return "501 5.5.4 Syntax: RCPT TO:<address>"
            if len(self._rcpt_tos) >= MAX_RECIPIENTS:
                return "452 4.5.3 Too many recipients"
            self._rcpt_tos.append(recipient)
            return "250 2.1.5 OK"
        if verb == "DATA":
            if argument.strip():
                return "501 5.5.4 Syntax: DATA"
            if not self._rcpt_tos:
                return "503 5.5.1 Error: need RCPT command"
            self._in_data = True
            self._scanned = 0
            self._data_too_big = False
            return "354 End data with <CR><LF>.<CR><LF>"
        if verb == "RSET":
            self._reset()
            return "250 2.0.0 OK"
        if verb == "NOOP":
            return "250 2.0.0 OK"
        if verb == "VRFY":
            return "252 2.0.0 Cannot VRFY user, but will accept message"
        if verb == "QUIT":
            self.closing = True
            return "221 2.0.0 Bye"
        if verb in _NOT_IMPLEMENTED:
            return f"502 5.5.1 {verb} not implemented"
        return f"500 5.5.2 Error: command {verb[:32]!r} not recognized"

    def _take_data(self, replies: list[str], messages: list[ReceivedMessage], now: float) -> bool:
        """Complete the message in the buffer if its terminator has arrived."""
        buffer = self._buffer
        if not self._data_too_big and buffer.startswith(b".\r\n"):
            content_end, consumed = 0, 3  # an empty message
        else:
            at = buffer.find(_END_OF_DATA, max(0, self._scanned - 4))
            if at == -1:
                self._scanned = len(buffer)
                if self._data_too_big or len(buffer) > MAX_MESSAGE + MAX_LINE:
                    # Keep looking for the end, not the bytes: the message will be refused.
                    self._data_too_big = True
                    del buffer[:-4]
                    self._scanned = len(buffer)
                return False
            content_end, consumed = at + 2, at + 5  # the content keeps its last CRLF
        content = bytes(buffer[:content_end])
        del buffer[:consumed]
        self._in_data = False
        if self._data_too_big or len(content) > MAX_MESSAGE:
            replies.append("552 5.3.4 Message too big")
        else:
            if b"\r\n.." in content or content.startswith(b".."):  # undo the client's dot-stuffing
                content = content.replace(b"\r\n..", b"\r\n.")
                if content.startswith(b".."):
                    content = content[1:]
            messages.append(ReceivedMessage(self._mail_from or "", tuple(self._rcpt_tos), content, now))
            replies.append("250 2.0.0 OK: queued")
        self._reset()
        return True

    def _reset(self) -> None:
        self._mail_from = None
        self._rcpt_tos = []


class SmtpServer(SessionServer[ReceivedMessage]):
    """An SMTP receiver on the running event loop, calling `on_message` for each message.

    `port` 0 picks a free port, stored in `.port` once started. `sessions` counts the
    connections accepted (to check that a client reuses them).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        on_message: Callable[[ReceivedMessage], None],
        clock: Callable[[], float] = time.time,
        hostname: str = "itinerary-load",
    ) -> None:
        super().__init__(host, port, new_session=lambda: SmtpServerSession(hostname), on_item=on_message, clock=clock)
        self.hostname = hostname

    @property
    def sessions(self) -> int:
        return self.connections
