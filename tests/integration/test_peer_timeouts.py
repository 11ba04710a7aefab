"""A peer that does not offer its stream in time is refused quickly (the ingress's bound),
then not asked again for a moment, then asked again; without the bound, callers wait."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from itinerary.actors.peers import UNREACHABLE_PAUSE, PeerUnavailable, RayPeers


class SlowShard:
    """Stands in for a shard that is restarting: asked for its stream, it answers late."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.asked = 0

    async def wire_endpoint(self) -> None:
        self.asked += 1
        await asyncio.sleep(self.delay)
        return None  # no stream offered: callers fall back to Ray calls

    async def apply_batch(self, sender: str, seq: int, blob: bytes) -> int:
        return 7

    async def times_asked(self) -> int:
        return self.asked


@pytest.fixture
def namespace() -> str:
    return f"peer-timeouts-{uuid.uuid4().hex[:8]}"


def test_a_slow_peer_is_refused_within_the_bound_then_paused_then_asked_again(ray_session: Any, namespace: str) -> None:
    shard = ray_session.remote(SlowShard).options(name="profile-shard-00", namespace=namespace).remote(30.0)
    try:
        assert ray_session.get(shard.times_asked.remote(), timeout=60) == 0
        peers = RayPeers(namespace, open_timeout=0.5)

        async def scenario() -> tuple[float, float, float]:
            started = time.monotonic()
            with pytest.raises(PeerUnavailable, match=r"did not answer within 0\.5 s"):
                await peers.apply_batch(0, "s", 0, b"")
            first = time.monotonic() - started
            started = time.monotonic()
            with pytest.raises(PeerUnavailable, match="asked again shortly"):
                await peers.apply_batch(0, "s", 1, b"")
            paused = time.monotonic() - started
            await asyncio.sleep(UNREACHABLE_PAUSE + 0.1)
            started = time.monotonic()
            with pytest.raises(PeerUnavailable, match="did not answer within"):
                await peers.apply_batch(0, "s", 2, b"")
            return first, paused, time.monotonic() - started

        first, paused, again = asyncio.run(scenario())
        assert 0.4 < first < 5.0  # the bound, plus a Ray call's latency on a busy machine
        assert paused < 0.2  # refused without asking
        assert 0.4 < again < 5.0
        assert ray_session.get(shard.times_asked.remote(), timeout=60) == 2
    finally:
        ray_session.kill(shard)


def test_without_the_bound_a_caller_waits_for_the_peer(ray_session: Any, namespace: str) -> None:
    shard = ray_session.remote(SlowShard).options(name="profile-shard-00", namespace=namespace).remote(1.0)
    try:
        peers = RayPeers(namespace)  # what shards and gateways use
        applied = asyncio.run(asyncio.wait_for(peers.apply_batch(0, "s", 0, b""), 60))
        assert applied == 7  # it waited out the slow answer, then fell back to a Ray call
    finally:
        ray_session.kill(shard)
