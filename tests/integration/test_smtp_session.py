"""SmtpSession against real relays: aiosmtpd (the receiver) and scripted socket servers.

The scripted servers answer on a real socket the way some relays do and aiosmtpd does not
(DATA accepted after a refused recipient, a session dropped mid-transaction, a relay that
stops answering), so the session's handling of them is seen end to end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import aiosmtplib
import pytest
import uvloop

from itinerary.channels.email import EmailProvider
from itinerary.channels.smtp_session import SmtpSession, SmtpSessionClosed, prepare_data
from itinerary.config.channels import EmailChannelConfig
from itinerary.receivers import SmtpReceiver

SENDER = b"news@itinerary.test"
MESSAGE = prepare_data(b"Subject: hi\r\n\r\nhello\r\n")

Answer = Callable[[str], list[str] | None]
"""A scripted relay's answer to one command line: reply lines, or None to hang up."""


async def open_session(port: int, timeout: float = 5.0) -> SmtpSession:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=timeout)
    await smtp.connect()
    await smtp.ehlo()
    transport = smtp.transport
    assert transport is not None
    return SmtpSession(transport, smtp.supports_extension("pipelining"), timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize("pipelining", [True, False])
async def test_a_session_sends_mails_one_after_another(pipelining: bool) -> None:
    relay = SmtpReceiver(pipelining=pipelining)
    await relay.start()
    try:
        session = await open_session(relay.port)
        assert session.pipelining is pipelining
        for i in range(3):
            message = prepare_data(f"X-Itinerary-Idempotency-Key: k{i}\r\nSubject: hi\r\n\r\nhello\r\n".encode())
            reply = await session.send_mail(SENDER, f"user{i}@example.com".encode(), message)
            assert reply.code == 250
        await session.quit()
        assert not session.is_open
        assert await relay.wait_for(3, timeout=5.0)
        assert [m.rcpt_tos for m in relay.messages] == [(f"user{i}@example.com",) for i in range(3)]
        assert relay.sessions == 1
    finally:
        await relay.stop()


class ScriptedRelay:
    """A socket server that greets, offers PIPELINING and answers commands by a script."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self._servers: list[asyncio.Server] = []

    async def start(self, answer: Answer) -> int:
        """Listen on a free port (returned) and answer each command with `answer`."""

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"220 scripted ESMTP\r\n")
            in_data = False
            while line := await reader.readline():
                text = line.decode().rstrip("\r\n")
                self.received.append(text)
                if in_data:
                    if text != ".":
                        continue
                    in_data = False
                lines = ["250-scripted", "250 PIPELINING"] if text.upper().startswith("EHLO") else answer(text)
                if lines is None:
                    writer.close()
                    return
                in_data = text.upper() == "DATA" and bool(lines) and lines[-1].startswith("354")
                writer.write("".join(f"{reply}\r\n" for reply in lines).encode())

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def close(self) -> None:
        for server in self._servers:
            server.close()


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedRelay]:
    relay = ScriptedRelay()
    yield relay
    relay.close()


async def test_data_after_a_refused_recipient_is_ended_and_the_session_stays_in_step(
    scripted: ScriptedRelay,
) -> None:
    def answer(command: str) -> list[str] | None:
        if command.startswith("RCPT") and "bad" in command:
            return ["550 5.1.1 no such user"]
        if command == "DATA":
            return ["354 go ahead"]  # some relays take DATA whatever RCPT got
        return ["250 ok"]

    session = await open_session(await scripted.start(answer))
    refused = await session.send_mail(SENDER, b"bad@example.com", MESSAGE)
    assert (refused.code, refused.text) == (550, "5.1.1 no such user")
    assert "." in scripted.received  # the empty message was ended
    assert scripted.received[-1] == "RSET"  # and the refused transaction reset
    assert session.is_open
    assert (await session.send_mail(SENDER, b"good@example.com", MESSAGE)).code == 250
    session.close()


async def test_a_multi_line_reply_is_one_reply(scripted: ScriptedRelay) -> None:
    def answer(command: str) -> list[str] | None:
        if command.startswith("MAIL"):
            return ["452-4.5.3 too many messages", "452 4.5.3 try again later"]
        return ["503 5.5.1 no sender"] if command in ("DATA",) or command.startswith("RCPT") else ["250 ok"]

    session = await open_session(await scripted.start(answer))
    reply = await session.send_mail(SENDER, b"user@example.com", MESSAGE)
    assert (reply.code, reply.text) == (452, "4.5.3 too many messages\n4.5.3 try again later")
    session.close()


async def test_a_relay_that_hangs_up_mid_transaction_closes_the_session(scripted: ScriptedRelay) -> None:
    session = await open_session(await scripted.start(lambda command: None))
    with pytest.raises(SmtpSessionClosed):
        await session.send_mail(SENDER, b"user@example.com", MESSAGE)
    assert not session.is_open


async def test_a_relay_that_stops_answering_times_out(scripted: ScriptedRelay) -> None:
    session = await open_session(await scripted.start(lambda command: []), timeout=0.3)
    with pytest.raises(TimeoutError):
        await session.send_mail(SENDER, b"user@example.com", MESSAGE)
    session.close()


async def test_the_provider_turns_session_failures_into_retryable_results(scripted: ScriptedRelay) -> None:
    port = await scripted.start(lambda command: None if command.startswith("MAIL") else ["250 ok"])
    config = EmailChannelConfig(
        type="email", port=port, sender="News <news@itinerary.test>", timeout=timedelta(seconds=2)
    )
    provider = EmailProvider(config)
    payload = {"to": "user@example.com", "subject": "hi", "text": "hello"}
    result = await provider.deliver({"id": "j/i/n", "payload": payload})  # type: ignore[typeddict-item]
    assert result.retryable and not result.ok
    assert result.reason is not None and result.reason.startswith(f"smtp connection error: 127.0.0.1:{port}")
    await provider.close()


def test_the_provider_delivers_on_uvloop_as_ray_actors_run() -> None:
    """Ray runs async actors on uvloop, whose transports are not asyncio.Transport."""

    async def deliver_two() -> list[bool]:
        relay = SmtpReceiver()
        await relay.start()
        provider = EmailProvider(EmailChannelConfig(type="email", port=relay.port, sender="news@itinerary.test"))
        try:
            results = []
            for i in range(2):
                payload = {"to": f"user{i}@example.com", "subject": "hi", "text": "hello"}
                results.append((await provider.deliver({"id": f"j/i/{i}", "payload": payload})).ok)  # type: ignore[typeddict-item]
            assert await relay.wait_for(2, timeout=5.0)
            assert relay.sessions == 1
            return results
        finally:
            await provider.close()
            await relay.stop()

    assert uvloop.run(deliver_two()) == [True, True]


@pytest.mark.parametrize(
    ("answers", "why"),
    [
        ({"RCPT": "421 4.3.2 shutting down"}, "the relay is closing"),
        ({"RSET": "500 no"}, "RSET refused"),
        ({"RSET": None}, "the relay hangs up at RSET"),
    ],
)
async def test_a_session_that_cannot_go_on_after_a_refusal_is_closed(
    scripted: ScriptedRelay, answers: dict[str, str | None], why: str
) -> None:
    def answer(command: str) -> list[str] | None:
        verb = command.split(":")[0].split(" ")[0]
        if verb == "RCPT" and "RCPT" not in answers:
            return ["550 5.1.1 no such user"]
        if verb == "DATA":
            return ["503 5.5.1 no valid recipients"]
        reply = answers.get(verb, "250 ok")
        return None if reply is None else [reply]

    session = await open_session(await scripted.start(answer))
    reply = await session.send_mail(SENDER, b"user@example.com", MESSAGE)
    assert reply.code in (421, 550), why
    assert not session.is_open, why
