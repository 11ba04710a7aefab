"""One open SMTP session that runs mail transactions, pipelined when the relay allows it.

Opening a session (greeting, EHLO, STARTTLS, AUTH) is left to aiosmtplib: it is rare and
that code is well tried. Once open, the session's transport is taken over by this small
protocol, because the transaction is the hot path of the e-mail channel: aiosmtplib runs
it as four round trips (MAIL, RCPT, DATA, the message) and cannot pipeline. Against a
relay that advertises PIPELINING (RFC 2920: Postfix, Exim, the big senders, the demo's
receiver) MAIL, RCPT and DATA go out in one write and the message in a second, so a
message costs two round trips, and two wake-ups on each side instead of four.

The socket calls are the expensive part on small machines: measured on the 2-core
benchmark machine, a write to a loopback socket cost ~50 µs of CPU, and the aiosmtplib
transaction spent over a third of the e-mail gateway's time in them.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque

__all__ = ["SmtpReply", "SmtpSession", "SmtpSessionClosed", "prepare_data"]

# RFC 5321 4.5.3.1.5: a reply line is at most 512 octets; relays add long texts in
# multi-line replies. A session that receives more than this without a complete reply is
# talking to something that is not an SMTP server.
MAX_REPLY_BYTES = 64 * 1024
_BARE_LINE_END = re.compile(rb"(?<!\r)\n|\r(?!\n)")


class SmtpSessionClosed(ConnectionError):
    """The relay closed the session, or sent something that is not an SMTP reply."""


class SmtpReply(tuple[int, str]):
    """(code, text) of one SMTP reply; a multi-line reply's lines are joined by newlines."""

    __slots__ = ()

    @property
    def code(self) -> int:
        return self[0]

    @property
    def text(self) -> str:
        return self[1]


def prepare_data(message: bytes) -> bytes:
    """The message as DATA content: CRLF line ends, leading dots doubled, ended by `.`.

    The common message (built by channels.email: CRLF throughout, no line starting with a
    dot) is recognised by two scans in C and only gets the terminator appended.
    """
    if message.count(b"\n") != message.count(b"\r\n") or message.count(b"\r") != message.count(b"\r\n"):
        message = _BARE_LINE_END.sub(b"\r\n", message)
    if message.startswith(b".") or b"\r\n." in message:
        message = message.replace(b"\r\n.", b"\r\n..")
        if message.startswith(b"."):
            message = b"." + message
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message + b".\r\n"


class SmtpSession(asyncio.Protocol):
    """A session's transport after the greeting: sends commands, collects replies in order.

    Replies are parsed as they arrive and queued, so several replies in one read (the
    answer to a pipelined group) are all kept. One transaction at a time. A transaction
    the relay refuses is reset (RSET) and the session goes on; a session that failed
    (dropped, silent past the timeout, answering garbage) is closed by the caller.
    """

    def __init__(self, transport: asyncio.Transport, pipelining: bool, timeout: float) -> None:
        self.pipelining = pipelining
        self._timeout = timeout
        self._transport: asyncio.Transport | None = transport
        self._buffer = bytearray()
        self._lines: list[bytes] = []  # lines of a multi-line reply seen so far
        self._replies: deque[SmtpReply] = deque()
        self._wanted = 0
        self._waiter: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        transport.set_protocol(self)

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing() and self._failure is None

    # -- transactions -----------------------------------------------------------------

    async def send_mail(self, sender: bytes, recipient: bytes, message: bytes) -> SmtpReply:
        """Run one transaction; returns the first reply that is not a success, or the
        relay's answer to the message (250) when all went well.

        `sender` and `recipient` are bare ASCII addresses, already checked for CR, LF and
        angle brackets; `message` is DATA content from `prepare_data`. A transaction the
        relay refuses before the message is reset with RSET, so the session stays usable
        (a bounce does not cost a new connection, TLS handshake and login); after a 421,
        or when RSET fails, the session is closed and `is_open` is False. Raises
        SmtpSessionClosed or TimeoutError when the session fails; the caller drops it.
        """
        mail = b"MAIL FROM:<" + sender + b">\r\n"
        rcpt = b"RCPT TO:<" + recipient + b">\r\n"
        if self.pipelining:
            self._write(mail + rcpt + b"DATA\r\n")
            mail_reply, rcpt_reply, data_reply = await self._read(3)
            if data_reply.code == 354 and not (_ok(mail_reply) and _ok(rcpt_reply)):
                # The relay took DATA although the envelope failed (RFC 2920 allows it):
                # end the empty message so that the session is in step again.
                self._write(b".\r\n")
                await self._read(1)
        else:
            self._write(mail)
            (mail_reply,) = await self._read(1)
            if not _ok(mail_reply):
                return await self._refused(mail_reply)
            self._write(rcpt)
            (rcpt_reply,) = await self._read(1)
            if not _ok(rcpt_reply):
                return await self._refused(rcpt_reply)
            self._write(b"DATA\r\n")
            (data_reply,) = await self._read(1)
        for reply in (mail_reply, rcpt_reply):
            if not _ok(reply):
                return await self._refused(reply)
        if data_reply.code != 354:
            if data_reply.code < 400:  # only 354 lets the message follow
                raise SmtpSessionClosed(f"unexpected reply to DATA: {data_reply.code}")
            return await self._refused(data_reply)
        self._write(message)
        (done,) = await self._read(1)
        if done.code == 421:  # the relay is closing the session
            self.close()
        return done  # after the message the relay is ready for the next transaction

    async def _refused(self, reply: SmtpReply) -> SmtpReply:
        """End a transaction the relay refused (RSET), or the session if it cannot go on."""
        if reply.code == 421 or not self.is_open:
            self.close()
            return reply
        try:
            self._write(b"RSET\r\n")
            (reset,) = await self._read(1)
        except (OSError, TimeoutError):  # the refusal is the answer; only the session is lost
            self.close()
            return reply
        if not _ok(reset):
            self.close()
        return reply

    async def quit(self) -> None:
        """Say QUIT and close; errors are ignored (the session is finished either way)."""
        try:
            if self.is_open:
                self._write(b"QUIT\r\n")
                await asyncio.wait_for(self._read(1), min(self._timeout, 2.0))
        except (OSError, TimeoutError, SmtpSessionClosed):
            pass
        finally:
            self.close()

    def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        self._fail(SmtpSessionClosed("session closed"))

    # -- I/O --------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if not self.is_open:
            raise self._failure or SmtpSessionClosed("session closed")
        assert self._transport is not None
        self._transport.write(data)

    async def _read(self, count: int) -> list[SmtpReply]:
        """The next `count` replies, within the session's timeout."""
        if len(self._replies) < count:
            if self._failure is not None:
                raise self._failure
            loop = asyncio.get_running_loop()
            self._wanted = count
            self._waiter = loop.create_future()
            try:
                await asyncio.wait_for(self._waiter, self._timeout)
            finally:
                self._waiter = None
                self._wanted = 0
            if len(self._replies) < count:  # woken by a failure
                raise self._failure or SmtpSessionClosed("session closed")
        return [self._replies.popleft() for _ in range(count)]

    def data_received(self, data: bytes) -> None:
        if self._failure is not None:
            return  # the session is finished; the caller drops it
        buffer = self._buffer
        buffer += data
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = bytes(buffer[start:end]).rstrip(b"\r")
            start = end + 1
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b"", b" ", b"-"):
                self._fail(SmtpSessionClosed(f"not an SMTP reply: {line[:80]!r}"))
                return
            self._lines.append(line)
            if line[3:4] != b"-":  # the last line of the reply
                lines, self._lines = self._lines, []
                text = "\n".join(part[4:].decode("utf-8", "replace").strip() for part in lines)
                self._replies.append(SmtpReply((int(line[:3]), text)))
        del buffer[:start]
        if len(buffer) > MAX_REPLY_BYTES or len(self._lines) > 1000:
            self._fail(SmtpSessionClosed("reply too long"))
            return
        waiter = self._waiter
        if waiter is not None and len(self._replies) >= self._wanted and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self._fail(SmtpSessionClosed("the relay closed the session"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        failure = SmtpSessionClosed(f"connection lost: {exc}" if exc else "the relay closed the session")
        self._fail(failure)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # _read sees the failure


def _ok(reply: SmtpReply) -> bool:
    return 200 <= reply.code < 300
