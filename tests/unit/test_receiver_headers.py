"""The SMTP receiver's header scan: the few headers it records, unfolded, first one wins."""

from __future__ import annotations

import asyncio

import pytest
from aiosmtpd.smtp import SMTP

from itinerary.channels.email import build_message
from itinerary.receivers import SmtpReceiver, _ReceiverSMTP, header_fields


def test_reads_the_recorded_headers_of_a_gateway_message() -> None:
    request = {
        "id": "Email:a@x.example/welcome/1/send/1",
        "payload": {"to": "a@x.example", "subject": "Hi", "text": "b"},
    }
    fields = header_fields(build_message(request, "Shop <shop@x.example>"))
    assert fields == {
        "subject": "Hi",
        "message-id": "<Email%3Aa%40x%2Eexample%2Fwelcome%2F1%2Fsend%2F1@itinerary>",
        "x-itinerary-idempotency-key": "Email:a@x.example/welcome/1/send/1",
    }


def test_folded_values_are_unfolded_and_names_are_case_blind() -> None:
    raw = b"SUBJECT: a long\r\n\tsubject line\r\nmessage-ID:  <m@x>\r\nX-Other: y\r\n\r\nSubject: not a header\r\n"
    assert header_fields(raw) == {"subject": "a long subject line", "message-id": "<m@x>"}


def test_the_first_occurrence_wins_and_a_body_is_never_read() -> None:
    raw = b"Subject: first\r\nSubject: second\r\n continued\r\n\r\nX-Itinerary-Idempotency-Key: k\r\n"
    assert header_fields(raw) == {"subject": "first"}


def test_a_message_without_headers_gives_nothing() -> None:
    assert header_fields(b"") == {}
    assert header_fields(b"no colon here\r\n\r\nbody") == {}


async def test_the_receiver_parses_envelope_addresses_as_aiosmtpd_does() -> None:
    receiver = SmtpReceiver()
    await receiver.start()
    try:
        reader, writer = await asyncio.open_connection(receiver.host, receiver.port)

        async def say(line: str) -> str:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()
            reply = b""
            while True:  # multi-line replies: "250-..." until "250 ..."
                got = await reader.readline()
                reply += got
                if got[3:4] != b"-":
                    return reply.decode()

        assert (await reader.readline()).startswith(b"220")
        assert (await say("EHLO client.example")).startswith("250")
        assert (await say("MAIL FROM:<@x.example>")).startswith("553")  # not an address
        for _ in range(2):  # the second time from the cache
            assert (await say("MAIL FROM:<shop@x.example>")).startswith("250")
            assert (await say("RCPT TO:<ann@x.example>")).startswith("250")
            assert (await say("RSET")).startswith("250")
        writer.close()
        await writer.wait_closed()
    finally:
        await receiver.stop()


@pytest.mark.parametrize(
    "arg",
    [
        "<a@b.example>",
        "<a b@x.example>",
        "<a@b",
        "a@b.example SIZE=10",
        "<>",
        "",
        '<"q q"@x.example> BODY=8BITMIME',
        "nonsense",
        "<@x>",
        "<a@b>>",
        "<" + "x" * 70 + "@y.example>",
    ],
)
@pytest.mark.parametrize("limit", [0, 64])
def test_cached_address_parsing_answers_as_aiosmtpd(arg: str, limit: int) -> None:
    ours, theirs = _ReceiverSMTP(None), SMTP(None)
    ours.local_part_limit = theirs.local_part_limit = limit
    assert ours._getaddr(arg) == theirs._getaddr(arg) == ours._getaddr(arg)
