"""The load tool's SMTP server as a state machine: bytes in, replies and messages out."""

from __future__ import annotations

from itinerary.load.smtp_server import MAX_LINE, MAX_MESSAGE, SmtpServerSession


def codes(replies: bytes) -> list[int]:
    """The reply codes in `replies`; a multi-line reply counts once (its last line)."""
    return [int(line[:3]) for line in replies.decode().split("\r\n") if line[3:4] == " "]


def greeted() -> SmtpServerSession:
    session = SmtpServerSession("receiver.test")
    assert session.greeting().startswith(b"220 receiver.test ")
    replies, _ = session.feed(b"EHLO client.test\r\n", 1.0)
    assert b"250-PIPELINING\r\n" in replies and codes(replies) == [250]
    return session


def test_a_pipelined_transaction_is_answered_in_order_and_its_message_kept() -> None:
    session = greeted()
    replies, messages = session.feed(b"MAIL FROM:<news@a.test> SIZE=120\r\nRCPT TO:<ann@b.test>\r\nDATA\r\n", 2.0)
    assert codes(replies) == [250, 250, 354] and messages == []
    replies, messages = session.feed(b"Subject: hi\r\n\r\nhello\r\n.\r\n", 3.0)
    assert codes(replies) == [250]
    [message] = messages
    assert (message.mail_from, message.rcpt_tos, message.arrived) == ("news@a.test", ("ann@b.test",), 3.0)
    assert message.content == b"Subject: hi\r\n\r\nhello\r\n"


def test_a_message_split_anywhere_is_put_back_together() -> None:
    whole = b"MAIL FROM:<a@a.test>\r\nRCPT TO:<b@b.test>\r\nDATA\r\nX: 1\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n"
    for cut in range(1, len(whole)):
        session = greeted()
        first, got_first = session.feed(whole[:cut], 1.0)
        second, got_second = session.feed(whole[cut:], 2.0)
        assert codes(first + second) == [250, 250, 354, 250, 221], cut
        [message] = got_first + got_second
        assert message.content == b"X: 1\r\n\r\n.dot\r\nbody\r\n"  # dot-stuffing undone
        assert session.closing


def test_several_messages_in_one_read_are_all_taken() -> None:
    session = greeted()
    one = b"MAIL FROM:<a@a.test>\r\nRCPT TO:<b@b.test>\r\nDATA\r\nbody %d\r\n.\r\n"
    replies, messages = session.feed(b"".join(one.replace(b"%d", b"%d" % i) for i in range(3)), 1.0)
    assert codes(replies) == [250, 250, 354, 250] * 3
    assert [m.content for m in messages] == [b"body 0\r\n", b"body 1\r\n", b"body 2\r\n"]


def test_an_empty_message_and_a_leading_dot_line() -> None:
    session = greeted()
    _, messages = session.feed(b"MAIL FROM:<>\r\nRCPT TO:<b@b.test>\r\nDATA\r\n.", 1.0)
    assert messages == []
    _, messages = session.feed(b"\r\n", 1.0)
    assert [(m.mail_from, m.content) for m in messages] == [("", b"")]  # null reverse-path
    _, messages = session.feed(b"MAIL FROM:<a@a.test>\r\nRCPT TO:<b@b.test>\r\nDATA\r\n..x\r\n.\r\n", 1.0)
    assert [m.content for m in messages] == [b".x\r\n"]


def test_commands_out_of_order_are_refused_as_rfc_5321_says() -> None:
    session = SmtpServerSession("receiver.test")
    assert codes(session.feed(b"MAIL FROM:<a@a.test>\r\n", 1.0)[0]) == [503]  # no EHLO yet
    assert codes(session.feed(b"HELO client\r\nRCPT TO:<b@b.test>\r\nDATA\r\n", 1.0)[0]) == [250, 503, 503]
    replies, _ = session.feed(b"MAIL FROM:<a@a.test>\r\nMAIL FROM:<a@a.test>\r\nDATA\r\n", 1.0)
    assert codes(replies) == [250, 503, 503]  # nested MAIL; DATA without a recipient
    replies, _ = session.feed(b"RSET\r\nRCPT TO:<b@b.test>\r\nNOOP\r\nVRFY ann\r\nSTARTTLS\r\nXYZZY\r\n", 1.0)
    assert codes(replies) == [250, 503, 250, 252, 502, 500]  # offered by RFCs but not here; unknown


def test_malformed_arguments_get_501() -> None:
    session = greeted()
    replies, _ = session.feed(b"MAIL a@a.test\r\nMAIL FROM:a@a.test\r\nEHLO\r\n", 1.0)
    assert codes(replies) == [501, 501, 501]
    replies, _ = session.feed(b"MAIL FROM:<a@a.test>\r\nRCPT TO:<>\r\nRCPT TO:<b@b.test>\r\nDATA now\r\n", 1.0)
    assert codes(replies) == [250, 501, 250, 501]


def test_a_line_without_an_end_is_refused_and_the_session_closed() -> None:
    session = greeted()
    replies, _ = session.feed(b"X" * (MAX_LINE + 1), 1.0)
    assert codes(replies) == [500] and session.closing
    assert session.feed(b"NOOP\r\n", 1.0) == (b"", [])


def test_a_message_over_the_size_limit_is_refused_without_being_kept() -> None:
    session = greeted()
    session.feed(b"MAIL FROM:<a@a.test>\r\nRCPT TO:<b@b.test>\r\nDATA\r\n", 1.0)
    chunk = b"x" * 1022 + b"\r\n"
    for _ in range(MAX_MESSAGE // len(chunk) + 100):
        replies, messages = session.feed(chunk, 1.0)
        assert replies == b"" and messages == []
    assert len(session._buffer) < MAX_LINE  # the oversized message's bytes were dropped
    replies, messages = session.feed(b".\r\nMAIL FROM:<a@a.test>\r\n", 1.0)
    assert codes(replies) == [552, 250] and messages == []
