"""Security at the edges, over real HTTP: API keys at the ingress (shards replaced by
in-process stand-ins, no Ray) and the destination policy of custom actions (a real
receiver on 127.0.0.1, host names resolved by a stand-in resolver instead of DNS)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import SecretStr

from itinerary.actors.ingress import Ingress
from itinerary.actors.peers import LocalPeers
from itinerary.channels.webhook import PolicyResolver, WebhookProvider
from itinerary.config.channels import WebhookChannelConfig
from itinerary.engine.messages import SendRequest
from itinerary.receivers import WebhookReceiver
from tests.unit.journey_helpers import WELCOME, catalog, event

INGEST = "ingest-" + "k" * 24
ADMIN = "admin-" + "a" * 24
TOKEN = "receiver-token"


class Shard:
    """A shard stand-in that applies every batch and knows one profile."""

    async def apply_batch(self, sender: str, seq: int, blob: bytes) -> int:
        return 1

    async def get_profile(self, key: str) -> dict[str, Any] | None:
        return {"key": key}

    async def status(self) -> dict[str, Any]:
        return {"name": "stand-in"}


@pytest.fixture
async def ingress_url() -> AsyncIterator[str]:
    security = {"ingest_keys": [SecretStr(INGEST)], "admin_keys": [SecretStr(ADMIN)]}
    app = catalog(WELCOME, shards=2, partitions=16, ingress={"port": 0}, security=security).config
    peers = LocalPeers()
    peers.shards.update({0: Shard(), 1: Shard()})
    ingress = Ingress(0, app, 0, peers=peers)
    address = await ingress.start()
    yield address["url"]
    await ingress.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def call(method: str, url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    body = json.dumps([event("registration", 1)]) if method == "POST" else None
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, url, data=body, headers={"Content-Type": "application/json", **(headers or {})}
        ) as response,
    ):
        return response.status, await response.json(), response.headers


async def test_events_need_an_ingest_or_admin_key(ingress_url: str) -> None:
    url = f"{ingress_url}/v1/events"
    for key in (INGEST, ADMIN):
        status, body, _ = await call("POST", url, bearer(key))
        assert status == 202 and body["accepted"] == 1
    answers = [await call("POST", url, headers) for headers in ({}, bearer("wrong"), {"Authorization": INGEST})]
    for status, body, headers in answers:
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
        assert body == answers[0][1] and "error" in body  # the same answer, whatever was wrong


async def test_status_and_profiles_need_an_admin_key(ingress_url: str) -> None:
    for path in ("/v1/status", "/v1/profiles/Email/ann@example.com"):
        status, body, headers = await call("GET", ingress_url + path)
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer" and body["error"]
        status, body, headers = await call("GET", ingress_url + path, bearer(INGEST))
        assert status == 403 and "admin" in body["error"] and "WWW-Authenticate" not in headers
        status, body, _ = await call("GET", ingress_url + path, bearer(ADMIN))
        assert status == 200, body


async def test_healthz_stays_open(ingress_url: str) -> None:
    status, body, _ = await call("GET", f"{ingress_url}/healthz")
    assert status == 200 and body["status"] == "ok"


async def test_an_unauthenticated_body_is_not_read(ingress_url: str) -> None:
    # Announce 16 MiB and send none of it: an ingress that read the body first would wait.
    host, port = ingress_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (16 * 1024 * 1024)
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        assert status_line.split()[1] == b"401"
    finally:
        writer.close()


class StaticResolver(AbstractResolver):
    """Resolves the names it is given to fixed addresses, instead of asking DNS."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.lookups = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups += 1
        address = self.names[host]
        return [ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)]

    async def close(self) -> None:
        pass


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = WebhookReceiver(token=TOKEN)
    await server.start()
    yield server
    await server.stop()


def request(i: int) -> SendRequest:
    return {
        "id": f"welcome/inst-{i}/send",
        "channel": "hook",
        "shard": 0,
        "profile": "Email:ann@example.com",
        "journey": "welcome",
        "instance": f"inst-{i}",
        "node": "send",
        "payload": {"n": i},
        "created": 0.0,
        "event_ts": None,
    }


def hook(url: str, **fields: Any) -> WebhookChannelConfig:
    return WebhookChannelConfig(type="webhook", url=url, token=SecretStr(TOKEN), **fields)


async def test_a_name_resolving_to_loopback_is_refused_at_delivery(receiver: WebhookReceiver) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    resolver = StaticResolver({"hooks.partner.test": "127.0.0.1"})
    provider = WebhookProvider(hook(f"http://hooks.partner.test:{port}/v1/send"), resolver=resolver)
    await provider.start()
    try:
        for i in range(3):
            result = await provider.deliver(request(i))
            assert not result.ok and not result.retryable
            assert result.reason is not None and result.reason.startswith("destination address not allowed")
            assert "127.0.0.1" in result.reason
        assert resolver.lookups == 1  # the refusal is remembered
        assert receiver.received == []
    finally:
        await provider.close()


async def test_allow_private_delivers_to_the_same_receiver(receiver: WebhookReceiver) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    resolver = StaticResolver({"hooks.partner.test": "127.0.0.1"})
    config = hook(f"http://hooks.partner.test:{port}/v1/send", allow_private=True)
    provider = WebhookProvider(config, resolver=resolver)
    await provider.start()
    try:
        result = await provider.deliver(request(1))
        assert result.ok, result.reason
        assert len(receiver.received) == 1
    finally:
        await provider.close()


async def test_a_config_that_skipped_validation_is_still_refused(receiver: WebhookReceiver) -> None:
    # model_construct skips the validators, as a hand-built config could.
    config = WebhookChannelConfig.model_construct(type="webhook", url=receiver.url, token=SecretStr(TOKEN))
    provider = WebhookProvider(config)
    await provider.start()
    try:
        result = await provider.deliver(request(1))
        assert not result.ok and not result.retryable and "loopback" in (result.reason or "")
        assert receiver.received == []
    finally:
        await provider.close()


async def test_the_policy_resolver_forgets_a_refusal_after_the_ttl() -> None:
    now = [0.0]
    inner = StaticResolver({"a.test": "169.254.169.254", "b.test": "93.184.216.34"})
    policy = PolicyResolver(inner, clock=lambda: now[0])
    for _ in range(2):
        with pytest.raises(OSError, match="cloud metadata"):
            await policy.resolve("a.test", 80)
    assert inner.lookups == 1
    now[0] = 61.0
    inner.names["a.test"] = "93.184.216.34"
    assert [r["host"] for r in await policy.resolve("a.test", 80)] == ["93.184.216.34"]
    assert [r["host"] for r in await policy.resolve("b.test", 80)] == ["93.184.216.34"]
