"""The ingress's answers under overload and shard failure, over real HTTP, with the shards
replaced by in-process stand-ins (LocalPeers): no Ray needed to hold a shard back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from itinerary.actors.ingress import Ingress
from itinerary.actors.peers import LocalPeers
from tests.unit.journey_helpers import WELCOME, catalog, event


class StuckShard:
    """A shard that takes batches but answers only when released (or fails them)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.fail = False
        self.batches = 0

    async def apply_batch(self, sender: str, seq: int, blob: bytes) -> int:
        self.batches += 1
        await self.release.wait()
        if self.fail:
            raise RuntimeError("shard process died")
        return 1


async def start_ingress(**ingress: Any) -> tuple[Ingress, dict[int, StuckShard], str]:
    app = catalog(WELCOME, shards=2, partitions=16, ingress={"port": 0, **ingress}).config
    peers = LocalPeers()
    shards = {0: StuckShard(), 1: StuckShard()}
    peers.shards.update(shards)
    ingress_actor = Ingress(0, app, 0, peers=peers)
    address = await ingress_actor.start()
    return ingress_actor, shards, address["url"]


async def test_a_full_queue_answers_429_with_retry_after_and_recovers() -> None:
    ingress, shards, url = await start_ingress(max_queued_events=5, retry_after=2)
    try:
        async with aiohttp.ClientSession() as session:
            body = json.dumps([event("registration", i) for i in range(5)])
            first = asyncio.ensure_future(
                session.post(f"{url}/v1/events", data=body, headers={"Content-Type": "application/json"})
            )
            for _ in range(200):  # wait (bounded) until the 5 events are queued at the ingress
                if ingress.queued >= 5:
                    break
                await asyncio.sleep(0.01)
            assert ingress.queued == 5
            async with session.post(
                f"{url}/v1/events", data=body, headers={"Content-Type": "application/json"}
            ) as refused:
                assert refused.status == 429
                assert refused.headers["Retry-After"] == "2"
                assert "queue full" in (await refused.json())["error"]
            for shard in shards.values():
                shard.release.set()
            response = await first
            assert response.status == 202
            assert ingress.queued == 0
    finally:
        await ingress.stop()


async def test_a_failing_shard_gives_503_and_the_next_batches_still_flow() -> None:
    ingress, shards, url = await start_ingress()
    try:
        for shard in shards.values():
            shard.fail = True
            shard.release.set()
        async with aiohttp.ClientSession() as session:
            body = json.dumps(event("registration", 1))
            async with session.post(
                f"{url}/v1/events", data=body, headers={"Content-Type": "application/json"}
            ) as failed:
                assert failed.status == 503 and failed.headers["Retry-After"]
            for shard in shards.values():
                shard.fail = False
            async with session.post(f"{url}/v1/events", data=body, headers={"Content-Type": "application/json"}) as ok:
                assert ok.status == 202
    finally:
        await ingress.stop()
