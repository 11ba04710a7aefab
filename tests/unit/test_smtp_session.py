"""SmtpSession's pure parts: DATA preparation and reply parsing (a fake transport)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from itinerary.channels.smtp_session import SmtpSession, SmtpSessionClosed, prepare_data


def test_data_is_ended_by_a_lone_dot() -> None:
    assert prepare_data(b"Subject: a\r\n\r\nbody\r\n") == b"Subject: a\r\n\r\nbody\r\n.\r\n"


def test_a_missing_final_line_end_is_added() -> None:
    assert prepare_data(b"Subject: a\r\n\r\nbody") == b"Subject: a\r\n\r\nbody\r\n.\r\n"


def test_bare_line_ends_become_crlf() -> None:
    assert prepare_data(b"Subject: a\n folded\r\n\r\none\rtwo\n") == b"Subject: a\r\n folded\r\n\r\none\r\ntwo\r\n.\r\n"


def test_lines_starting_with_a_dot_are_doubled() -> None:
    assert prepare_data(b".first\r\n\r\n.\r\n..two\r\n") == b"..first\r\n\r\n..\r\n...two\r\n.\r\n"


async def settle() -> None:
    """Let the session's task run until it waits for the fake relay again."""
    for _ in range(20):
        await asyncio.sleep(0)


class FakeTransport(asyncio.Transport):
    """Records writes; replies are fed to the session by the test."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False
        self.protocol: Any = None

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def test_replies_in_one_read_are_all_kept_and_split_ones_joined() -> None:
    transport = FakeTransport()
    session = SmtpSession(transport, pipelining=True, timeout=5.0)
    assert transport.protocol is session
    sending = asyncio.ensure_future(session.send_mail(b"a@x", b"b@y", b"hi\r\n.\r\n"))
    await settle()
    assert transport.written == [b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n"]
    session.data_received(b"250 2.1.0 ok\r\n250-2.1.5 ok\r\n25")
    session.data_received(b"0 2.1.5 recipient ok\r\n354 go on\r\n")
    await settle()
    assert transport.written[1:] == [b"hi\r\n.\r\n"]
    session.data_received(b"250 2.0.0 queued\r\n")
    reply = await sending
    assert (reply.code, reply.text) == (250, "2.0.0 queued")


async def start_sending(pipelining: bool) -> tuple[SmtpSession, asyncio.Future[Any]]:
    """A session on a fake transport, with one transaction started and waiting for replies."""
    session = SmtpSession(FakeTransport(), pipelining=pipelining, timeout=5.0)
    sending = asyncio.ensure_future(session.send_mail(b"a@x", b"b@y", b"hi\r\n.\r\n"))
    await settle()
    return session, sending


async def test_a_reply_that_is_not_smtp_fails_the_session() -> None:
    session, sending = await start_sending(pipelining=False)
    session.data_received(b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(SmtpSessionClosed, match="not an SMTP reply"):
        await sending
    assert not session.is_open


async def test_a_reply_without_end_is_refused_once_it_is_too_long() -> None:
    session, sending = await start_sending(pipelining=False)
    session.data_received(b"250" + b"x" * 70_000)
    with pytest.raises(SmtpSessionClosed, match="too long"):
        await sending


async def test_an_unexpected_success_to_data_is_a_protocol_error() -> None:
    session, sending = await start_sending(pipelining=True)
    session.data_received(b"250 ok\r\n250 ok\r\n250 ok\r\n")
    with pytest.raises(SmtpSessionClosed, match="unexpected reply to DATA"):
        await sending
