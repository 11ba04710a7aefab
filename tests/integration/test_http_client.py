"""The webhook client on real sockets: WebhookProvider and Http1Client against real servers
on 127.0.0.1 (no Ray): the project's aiohttp WebhookReceiver, a TLS server with a
certificate made for the test, and a raw asyncio server that answers exactly the bytes a
test scripts (chunked bodies, bodies ended by closing, connections closed between
requests, garbage, slowness)."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from itinerary.channels.http_client import Http1Client
from itinerary.channels.webhook import EVENT_TIME_HEADER, WebhookProvider
from itinerary.config.channels import WebhookChannelConfig
from itinerary.engine.messages import SendRequest
from itinerary.receivers import WebhookReceiver, wait_until

TOKEN = "client-test-token"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Seen:
    """One request as the scripted server read it."""

    connection: int
    head: str
    body: bytes

    def header(self, name: str) -> str | None:
        for line in self.head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.lower() == name.lower():
                return value.strip()
        return None


Answer = Callable[[Seen, int], tuple[bytes, bool]]  # (request, index) -> (bytes, close after)


@dataclass
class ScriptedServer:
    """Reads requests framed by Content-Length and answers what `answer` returns."""

    answer: Answer
    delay: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/send"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        number = self.connections
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                try:
                    head = (await reader.readuntil(b"\r\n\r\n")).decode()
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                seen = Seen(number, head, b"")
                length = int(seen.header("Content-Length") or 0)
                seen.body = await reader.readexactly(length)
                self.seen.append(seen)
                if self.delay:
                    await asyncio.sleep(self.delay)
                data, close = self.answer(seen, len(self.seen) - 1)
                writer.write(data)
                await writer.drain()
                if close:
                    return
        finally:
            self.open_now -= 1
            writer.close()


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Answer], Any]]:
    servers: list[ScriptedServer] = []

    async def make(answer: Answer, delay: float = 0.0) -> ScriptedServer:
        server = ScriptedServer(answer, delay)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


def config(url: str, **fields: Any) -> WebhookChannelConfig:
    fields.setdefault("allow_private", True)
    fields.setdefault("timeout", "PT1S")
    return WebhookChannelConfig(type="webhook", url=url, token=SecretStr(TOKEN), **fields)


def request(i: int, **fields: Any) -> SendRequest:
    return {
        "id": f"Email:p{i}@example.com/welcome/1/send/1",
        "channel": "hook",
        "shard": 0,
        "profile": f"Email:p{i}@example.com",
        "journey": "welcome",
        "instance": f"Email:p{i}@example.com/welcome/1",
        "node": "send",
        "payload": {"n": i, "name": "Zoë"},
        "created": 0.0,
        "event_ts": 1765000000.25,
        **fields,
    }


@pytest.fixture
async def provider() -> AsyncIterator[Callable[..., Any]]:
    started: list[WebhookProvider] = []

    async def make(channel: WebhookChannelConfig, **kwargs: Any) -> WebhookProvider:
        p = WebhookProvider(channel, **kwargs)
        await p.start()
        started.append(p)
        return p

    yield make
    for p in started:
        await p.close()


async def test_calls_reach_the_aiohttp_receiver_with_every_header_on_one_connection(
    provider: Callable[..., Any],
) -> None:
    receiver = WebhookReceiver(token=TOKEN)
    await receiver.start()
    try:
        hook = await provider(config(f"{receiver.url}/v1/push?tenant=acme", headers={"X-Tenant": "acme"}))
        for i in range(20):
            result = await hook.deliver(request(i))
            assert result.ok and result.status == 200, result.reason
        assert [r.body for r in receiver.received] == [{"n": i, "name": "Zoë"} for i in range(20)]
        assert receiver.received[0].path == "/v1/push"
        assert receiver.received[0].idempotency_key == "Email:p0@example.com/welcome/1/send/1"
        assert hook._client.connections == 1  # kept alive and reused
    finally:
        await receiver.stop()


async def test_the_request_on_the_wire(scripted: Callable[..., Any], provider: Callable[..., Any]) -> None:
    server = await scripted(lambda seen, i: (OK, False))
    hook = await provider(config(server.url.replace("/v1/send", "/v1/send?a=1&b=2"), headers={"X-Tenant": "acme"}))
    assert (await hook.deliver(request(1))).ok
    seen = server.seen[0]
    assert seen.head.startswith("POST /v1/send?a=1&b=2 HTTP/1.1\r\n")
    assert seen.header("Host") == f"127.0.0.1:{server.port}"
    assert seen.header("Authorization") == f"Bearer {TOKEN}"
    assert seen.header("Content-Type") == "application/json"
    assert seen.header("X-Tenant") == "acme"
    assert seen.header(EVENT_TIME_HEADER) == "1765000000.250000"
    assert json.loads(seen.body) == {"n": 1, "name": "Zoë"}


async def test_chunked_and_close_delimited_answers(scripted: Callable[..., Any], provider: Callable[..., Any]) -> None:
    chunked = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"
    until_close = b"HTTP/1.1 200 OK\r\n\r\nbody that ends when the connection does"
    server = await scripted(lambda seen, i: (chunked, False) if i % 2 == 0 else (until_close, True))
    hook = await provider(config(server.url))
    statuses = [(await hook.deliver(request(i))).status for i in range(6)]
    assert statuses == [201, 200] * 3
    # a chunked answer keeps the connection; one ended by closing cannot
    assert server.connections == 3


async def test_a_kept_connection_the_server_dropped_is_replaced_without_losing_the_call(
    scripted: Callable[..., Any], provider: Callable[..., Any]
) -> None:
    # The server says nothing about closing (keep-alive) but closes after every answer:
    # the next call finds the connection gone and must go out on a new one.
    server = await scripted(lambda seen, i: (OK, True))
    hook = await provider(config(server.url))
    for i in range(5):
        result = await hook.deliver(request(i))
        assert result.ok, result.reason
        await asyncio.sleep(0.01)  # let the close arrive, or not: both paths must work
    assert [s.body for s in server.seen] == [
        json.dumps(request(i)["payload"], ensure_ascii=False, separators=(",", ":")).encode() for i in range(5)
    ]
    assert server.connections == 5


async def test_a_retry_after_header_reaches_the_result(
    scripted: Callable[..., Any], provider: Callable[..., Any]
) -> None:
    server = await scripted(
        lambda seen, i: (b"HTTP/1.1 429 Slow Down\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n", False)
    )
    hook = await provider(config(server.url))
    result = await hook.deliver(request(1))
    assert not result.ok and result.retryable and result.retry_after == 3.0


async def test_a_redirect_is_final_and_not_followed(scripted: Callable[..., Any], provider: Callable[..., Any]) -> None:
    answer = b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.example/\r\nContent-Length: 0\r\n\r\n"
    server = await scripted(lambda seen, i: (answer, False))
    hook = await provider(config(server.url))
    result = await hook.deliver(request(1))
    assert not result.ok and result.status == 302
    assert len(server.seen) == 1


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "http error: bad response: bad status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "http error: server closed the connection in the"),
        (b"", "http error: server closed the connection without answering"),
    ],
)
async def test_broken_answers_are_transient_failures(
    scripted: Callable[..., Any], provider: Callable[..., Any], answer: bytes, reason: str
) -> None:
    server = await scripted(lambda seen, i: (answer, True))
    hook = await provider(config(server.url))
    result = await hook.deliver(request(1))
    assert not result.ok and result.retryable
    assert result.reason is not None and result.reason.startswith(reason), result.reason
    # a fresh connection that failed is not retried behind the gateway's back
    assert len(server.seen) == 1


async def test_a_slow_answer_times_out_and_its_connection_is_not_reused(
    scripted: Callable[..., Any], provider: Callable[..., Any]
) -> None:
    server = await scripted(lambda seen, i: (OK, False), delay=1.5)
    hook = await provider(config(server.url))
    result = await hook.deliver(request(1))
    assert not result.ok and result.retryable and result.reason == "timeout after 1.0s"
    assert hook._client.connections == 0


async def test_no_more_than_max_connections_are_opened(
    scripted: Callable[..., Any], provider: Callable[..., Any]
) -> None:
    server = await scripted(lambda seen, i: (OK, False), delay=0.05)
    hook = await provider(config(server.url, max_connections=4))
    results = await asyncio.gather(*(hook.deliver(request(i)) for i in range(20)))
    assert all(r.ok for r in results)
    assert server.most_open == 4 and server.connections == 4


async def test_a_message_id_that_would_inject_a_header_is_refused(
    scripted: Callable[..., Any], provider: Callable[..., Any]
) -> None:
    server = await scripted(lambda seen, i: (OK, False))
    hook = await provider(config(server.url))
    result = await hook.deliver(request(1, id="Email:a@b.c\r\nX-Injected: 1/j/1/n/1"))
    assert not result.ok and not result.retryable and "line break" in (result.reason or "")
    assert server.seen == []


async def test_a_token_with_a_line_break_is_refused_without_showing_it(
    scripted: Callable[..., Any], provider: Callable[..., Any]
) -> None:
    server = await scripted(lambda seen, i: (OK, False))
    channel = config(server.url).model_copy(update={"token": SecretStr("secret-value\r\nX-Injected: 1")})
    hook = await provider(channel)
    result = await hook.deliver(request(1))
    assert not result.ok and not result.retryable
    assert result.reason == "header Authorization contains a line break or NUL"
    assert server.seen == []


async def test_a_payload_that_is_not_json_fails_for_good(
    scripted: Callable[..., Any], provider: Callable[..., Any]
) -> None:
    server = await scripted(lambda seen, i: (OK, False))
    hook = await provider(config(server.url))
    result = await hook.deliver(request(1, payload={"when": object()}))
    assert not result.ok and not result.retryable and (result.reason or "").startswith("bad payload")


async def test_a_closed_client_fails_calls_in_flight(scripted: Callable[..., Any]) -> None:
    server = await scripted(lambda seen, i: (OK, False), delay=0.5)
    client = Http1Client("127.0.0.1", server.port, tls=None, resolver=_NoResolver(), max_connections=2)
    call = asyncio.create_task(client.request(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"))
    assert await wait_until(lambda: len(server.seen) == 1, timeout=5)
    await client.close()
    with pytest.raises(ConnectionError):
        await call
    assert client.connections == 0


class _NoResolver:
    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[Any]:
        raise AssertionError("an address literal is not looked up")

    async def close(self) -> None:
        pass


# -- TLS ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made with the openssl tool."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl command is needed to make the TLS test's certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
async def tls_receiver(certificate: tuple[Path, Path]) -> AsyncIterator[ScriptedServer]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = ScriptedServer(lambda seen, i: (OK, False))
    server._server = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=context)
    server.port = server._server.sockets[0].getsockname()[1]
    yield server
    await server.stop()


async def test_https_with_a_trusted_certificate(
    tls_receiver: ScriptedServer, certificate: tuple[Path, Path], provider: Callable[..., Any]
) -> None:
    trusted = ssl.create_default_context(cafile=str(certificate[0]))
    hook = await provider(config(f"https://127.0.0.1:{tls_receiver.port}/v1/send"), tls=trusted)
    for i in range(3):
        result = await hook.deliver(request(i))
        assert result.ok, result.reason
    assert tls_receiver.connections == 1
    assert tls_receiver.seen[0].header("Authorization") == f"Bearer {TOKEN}"


async def test_https_refuses_a_certificate_it_does_not_trust(
    tls_receiver: ScriptedServer, provider: Callable[..., Any]
) -> None:
    hook = await provider(config(f"https://127.0.0.1:{tls_receiver.port}/v1/send"))
    result = await hook.deliver(request(1))
    assert not result.ok and result.retryable
    assert result.reason is not None and "certificate" in result.reason, result.reason
    assert tls_receiver.seen == []
