"""The load tool's SMTP server against real clients over real sockets.

Three clients: the standard library's smtplib (a blocking client in a thread),
aiosmtplib, and the e-mail gateway's own provider, which pipelines its transactions.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from email.message import EmailMessage

import aiosmtplib
import pytest

from itinerary.channels.email import EmailProvider
from itinerary.config.channels import EmailChannelConfig
from itinerary.load.receiver import idempotency_key_of_mail
from itinerary.load.smtp_server import ReceivedMessage, SmtpServer
from itinerary.receivers import wait_until


@pytest.fixture
async def server() -> AsyncIterator[tuple[SmtpServer, list[ReceivedMessage]]]:
    received: list[ReceivedMessage] = []
    smtp = SmtpServer("127.0.0.1", 0, on_message=received.append, clock=lambda: 42.0)
    await smtp.start()
    yield smtp, received
    await smtp.stop()


async def test_the_standard_library_client_sends_through_it(server: tuple[SmtpServer, list[ReceivedMessage]]) -> None:
    smtp, received = server

    def send() -> dict[str, tuple[int, bytes]]:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@a.test", "b@b.test", "hi"
        message.set_content(".a line with a leading dot\nand another\n")
        with smtplib.SMTP("127.0.0.1", smtp.port, timeout=10) as client:
            client.ehlo()
            assert client.has_extn("pipelining") and client.has_extn("8bitmime")
            return client.send_message(message, to_addrs=["b@b.test", "c@c.test"])

    assert await asyncio.to_thread(send) == {}  # no recipient refused
    [message] = received
    assert (message.mail_from, message.rcpt_tos, message.arrived) == ("a@a.test", ("b@b.test", "c@c.test"), 42.0)
    assert b"\r\n.a line with a leading dot\r\nand another\r\n" in message.content


async def test_aiosmtplib_sends_through_it(server: tuple[SmtpServer, list[ReceivedMessage]]) -> None:
    smtp, received = server
    errors, reply = await aiosmtplib.send(
        b"Subject: hi\r\n\r\nhello\r\n",
        sender="a@a.test",
        recipients=["b@b.test"],
        hostname="127.0.0.1",
        port=smtp.port,
    )
    assert errors == {} and reply.startswith("2.0.0 OK")
    assert [m.content for m in received] == [b"Subject: hi\r\n\r\nhello\r\n"]


async def test_the_email_gateway_pipelines_many_messages_over_few_sessions(
    server: tuple[SmtpServer, list[ReceivedMessage]],
) -> None:
    smtp, received = server
    provider = EmailProvider(EmailChannelConfig(type="email", port=smtp.port, sender="news@itinerary.test"))
    try:

        async def deliver(i: int) -> bool:
            payload = {"to": f"user{i}@example.com", "subject": f"hello {i}", "text": f".{i}\nbody"}
            return (await provider.deliver({"id": f"Email:u{i}/welcome/1/n/{i}", "payload": payload})).ok  # type: ignore[typeddict-item]

        assert all(await asyncio.gather(*(deliver(i) for i in range(200))))
    finally:
        await provider.close()
    assert await wait_until(lambda: len(received) == 200, timeout=10.0)
    keys = {idempotency_key_of_mail(m.content) for m in received}
    assert keys == {f"Email:u{i}/welcome/1/n/{i}" for i in range(200)}
    assert 1 <= smtp.sessions <= 20  # connections are reused, not one per message


async def test_stop_closes_open_sessions(server: tuple[SmtpServer, list[ReceivedMessage]]) -> None:
    smtp, _ = server
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp.port)
    await client.connect()
    await smtp.stop()
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await client.noop()
