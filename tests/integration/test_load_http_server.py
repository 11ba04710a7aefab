"""The load tool's webhook receiver on a real socket, called by the webhook gateway's
provider and by an independent client (aiohttp), and inside DeliveryReceivers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from pydantic import SecretStr

from itinerary.channels.webhook import EVENT_TIME_HEADER, WebhookProvider
from itinerary.config.channels import WebhookChannelConfig
from itinerary.load.http_server import HttpReceiver, ReceivedCall
from itinerary.load.receiver import ChannelNames, DeliveryReceivers
from itinerary.load.stats import DeliveryStats
from itinerary.receivers import free_port

TOKEN = "receiver-test-token"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[HttpReceiver, list[ReceivedCall]]]:
    calls: list[ReceivedCall] = []
    server = HttpReceiver("127.0.0.1", 0, token=TOKEN, on_call=calls.append, event_time_header=EVENT_TIME_HEADER)
    await server.start()
    yield server, calls
    await server.stop()


def request(i: int) -> dict[str, object]:
    return {
        "id": f"ECID:{i}/cart-abandonment/1/remind_push/1",
        "channel": "store-push",
        "shard": 0,
        "profile": f"ECID:{i}",
        "journey": "cart-abandonment",
        "instance": f"ECID:{i}/cart-abandonment/1",
        "node": "remind_push",
        "payload": {"identity": str(i), "title": "Still thinking it over?"},
        "created": 0.0,
        "event_ts": 1765000000.0 + i,
    }


async def test_the_gateway_provider_delivers_many_calls_on_few_connections(
    receiver: tuple[HttpReceiver, list[ReceivedCall]],
) -> None:
    server, calls = receiver
    config = WebhookChannelConfig(
        type="webhook",
        url=f"{server.url}/v1/push/send",
        allow_private=True,
        token=SecretStr(TOKEN),
        max_connections=4,
    )
    provider = WebhookProvider(config)
    await provider.start()
    try:
        results = await asyncio.gather(*(provider.deliver(request(i)) for i in range(200)))  # type: ignore[arg-type]
    finally:
        await provider.close()
    assert all(r.ok and r.status == 200 for r in results)
    assert sorted(c.event_time for c in calls if c.event_time) == [1765000000.0 + i for i in range(200)]
    assert {c.path for c in calls} == {"/v1/push/send"}
    assert server.connections <= 4


async def test_an_independent_client_gets_the_same_answers(receiver: tuple[HttpReceiver, list[ReceivedCall]]) -> None:
    server, calls = receiver
    async with aiohttp.ClientSession() as session:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with session.post(f"{server.url}/hook", json={"a": 1}, headers=auth) as answer:
            assert answer.status == 200 and await answer.json() == {"ok": True}
        async with session.post(f"{server.url}/hook", json={"a": 1}) as answer:
            assert answer.status == 401
        async with session.get(f"{server.url}/hook", headers=auth) as answer:
            assert answer.status == 405
        async with session.put(f"{server.url}/hook", data=b"{not json", headers=auth) as answer:
            assert answer.status == 400 and "error" in await answer.json()

        # a body sent in chunks cannot be framed here: refused, and the client told to close
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"a":'
            yield b"1}"

        async with session.post(f"{server.url}/hook", data=chunks(), headers=auth) as answer:
            assert answer.status == 501
    assert [c.path for c in calls] == ["/hook"]


async def test_delivery_receivers_count_resent_calls_as_duplicates() -> None:
    receivers = DeliveryReceivers(
        "127.0.0.1",
        free_port(),
        0,
        token=TOKEN,
        names=ChannelNames(http={"/v1/push/send": "store-push"}),
        stats=DeliveryStats(start=0.0),
    )
    await receivers.start()
    try:
        config = WebhookChannelConfig(
            type="webhook", url=f"{receivers.http.url}/v1/push/send", allow_private=True, token=SecretStr(TOKEN)
        )
        provider = WebhookProvider(config)
        await provider.start()
        try:
            for i in (1, 2, 1):  # the third is a resend of the first
                assert (await provider.deliver(request(i))).ok  # type: ignore[arg-type]
        finally:
            await provider.close()
        assert receivers.duplicates == 1
        assert receivers.stats.messages == {"store-push": 3}
        assert receivers.stats.journey_messages == {"cart-abandonment": 3}
    finally:
        await receivers.stop()
