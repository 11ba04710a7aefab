"""The profile shard and the ingress batcher in one process (LocalPeers, no Ray):
per-sender ordering, duplicates, timers with an injected clock, sends and outcomes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgpack

from itinerary.actors.batcher import QUIET_DELAYS, ShardBatcher
from itinerary.actors.peers import LocalPeers
from itinerary.actors.profile_shard import ProfileShard
from itinerary.clock import ManualClock
from itinerary.engine.messages import outcome_for
from itinerary.store.base import ShardStore
from itinerary.store.memory import MemoryShardStore
from tests.unit.journey_helpers import CART, WELCOME, catalog, event

KEY = "Email:ann@example.com"


class RecordingGateway:
    """Stands in for a channel gateway: records what it is asked to send."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def submit(self, requests: list[dict[str, Any]]) -> dict[str, int]:
        self.requests.extend(requests)
        return {"queued": len(requests), "rejected": 0}


def make_shard(
    clock: ManualClock, store: ShardStore | None = None, **runtime: Any
) -> tuple[ProfileShard, LocalPeers, dict[str, RecordingGateway]]:
    app = catalog(WELCOME, CART, **runtime).config
    peers = LocalPeers()
    gateways = {"email": RecordingGateway(), "push": RecordingGateway()}
    peers.gateways.update(gateways)
    store = store if store is not None else MemoryShardStore()
    shard = ProfileShard(0, app, peers=peers, clock=clock, start_timers=False, store=store)
    peers.shards[0] = shard
    return shard, peers, gateways


def record(kind: str, n: int) -> list[Any]:
    body = event(kind, n)
    body["_ts"] = 0.0
    return [KEY, kind, msgpack.packb(body), 0.0, body["_id"], body["identityMap"]]


def blob(*records: list[Any]) -> bytes:
    return msgpack.packb(list(records))


def packed(*numbers: int) -> list[bytes]:
    """Stand-ins for packed records, as the router makes them: `[n]` encoded."""
    return [msgpack.packb([n]) for n in numbers]


async def welcomed_with_a_cart(shard: ProfileShard, clock: ManualClock, gateways: dict[str, RecordingGateway]) -> None:
    """Registration and a cart add; the welcome e-mail's outcome comes back, the cart waits."""
    await shard.apply_batch("s", 0, blob(record("registration", 0), record("cart_add", 1)))
    await shard.drain_sends()
    [welcome] = gateways["email"].requests
    assert welcome["node"] == "send"  # the welcome email
    await shard.deliver_outcomes(msgpack.packb([outcome_for(welcome, "sent", at=clock())]))


def test_a_shards_calls_to_a_gateway_actor_are_at_least_send_flush_apart() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        shard, _, gateways = make_shard(clock, send_flush="PT60S")
        mail = gateways["email"].requests
        await shard.apply_batch("s", 0, blob(record("registration", 0)))
        deadline = time.monotonic() + 10
        while not mail and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        assert len(mail) == 1  # an idle shard sends at once
        other = record("registration", 1)
        other[0] = "Email:bob@example.com"
        await shard.apply_batch("s", 1, blob(other))
        for _ in range(50):
            await asyncio.sleep(0.001)
        assert len(mail) == 1  # the next call waits for send_flush (here a minute)...
        await shard.drain_sends()
        assert [r["profile"] for r in mail] == [KEY, "Email:bob@example.com"]  # ...unless drained
        assert (await shard.status())["gateway_calls"] == {"gateway-email": {"calls": 2, "held": 0}}

    asyncio.run(scenario())


def test_batches_that_arrive_out_of_order_are_applied_in_sequence() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        shard, _, _ = make_shard(clock)
        # batch 1 (the purchase) arrives before batch 0 (the cart add): it must wait for it
        early = asyncio.ensure_future(shard.apply_batch("ingress-0#1", 1, blob(record("purchase", 2))))
        await asyncio.sleep(0)
        assert not early.done()
        assert await shard.apply_batch("ingress-0#1", 0, blob(record("cart_add", 1))) == 1
        assert await early == 1
        profile = await shard.get_profile(KEY)
        assert profile is not None and profile["journeys"] == []  # entered, then left on the purchase
        assert profile["history"]["cart"]["entries"] == 1

    asyncio.run(scenario())


def test_a_replayed_batch_and_duplicate_events_are_not_applied_twice() -> None:
    async def scenario() -> None:
        shard, _, _ = make_shard(ManualClock())
        assert await shard.apply_batch("s", 0, blob(record("cart_add", 1))) == 1
        assert await shard.apply_batch("s", 0, blob(record("cart_add", 1))) == 0  # same seq again
        assert await shard.apply_batch("s", 1, blob(record("cart_add", 1))) == 0  # same event id
        status = await shard.status()
        assert status["events_applied"] == 1 and status["duplicates"] == 1

    asyncio.run(scenario())


def test_timer_fires_on_the_injected_clock_and_the_send_reaches_the_gateway() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        shard, _, gateways = make_shard(clock)
        await welcomed_with_a_cart(shard, clock, gateways)
        clock.advance(1799)
        assert await shard.fire_timers() == 0
        clock.advance(1)
        assert await shard.fire_timers() == 1
        await shard.drain_sends()
        reminder = gateways["email"].requests[-1]
        assert reminder["node"] == "mail" and reminder["profile"] == KEY and reminder["shard"] == 0
        # the outcome comes back and the journey ends
        outcome = outcome_for(reminder, "sent", at=clock())
        await shard.deliver_outcomes(msgpack.packb([outcome]))
        profile = await shard.get_profile(KEY)
        assert profile is not None and profile["journeys"] == []
        assert {j: h["entries"] for j, h in profile["history"].items()} == {"welcome": 1, "cart": 1}
        last = (await shard.recent_step_events(limit=2))[-1]
        assert last["profile"] == KEY and last["journey"] == "cart" and last["kind"] == "exited"

    asyncio.run(scenario())


def test_batcher_flushes_on_size_and_on_delay_with_ordered_sequence_numbers() -> None:
    async def scenario() -> None:
        calls: list[tuple[str, int, int]] = []
        seen: list[Any] = []  # the records of every batch, which must arrive whole and in order

        async def send(shard: int, sender: str, seq: int, data: bytes) -> int:
            records = msgpack.unpackb(data)
            assert records == [[n] for n in range(len(seen) + 1, len(seen) + 1 + len(records))]
            seen.extend(records)
            calls.append((sender, seq, len(records)))
            return len(records)

        batcher = ShardBatcher(0, send, sender="ingress-0", max_events=3, max_delay=0.01, max_inflight=2)
        first = batcher.add(packed(1, 2, 3))  # full: leaves at once
        second = batcher.add(packed(4))  # waits for the delay
        assert await first == 3
        assert await second == 1
        assert [(seq, n) for _, seq, n in calls] == [(0, 3), (1, 1)]
        assert batcher.queued == 0

    asyncio.run(scenario())


def test_a_quiet_shard_gets_events_at_once_and_a_steady_stream_is_gathered() -> None:
    async def scenario() -> None:
        calls: list[tuple[int, int]] = []

        async def send(shard: int, sender: str, seq: int, data: bytes) -> int:
            calls.append((seq, len(msgpack.unpackb(data))))
            return calls[-1][1]

        delay = 0.2  # long enough that no stall of the test machine passes for it
        batcher = ShardBatcher(0, send, sender="ingress-0", max_events=100, max_delay=delay, max_inflight=2)
        assert await batcher.add(packed(1)) == 1  # nothing sent before: the shard is quiet, no delay
        assert calls == [(0, 1)]
        # Right after a batch the shard is not quiet: the next events wait for the delay,
        # and what arrives meanwhile leaves with them.
        second, third = batcher.add(packed(2)), batcher.add(packed(3, 4))
        await asyncio.sleep(0)
        assert calls == [(0, 1)] and batcher.queued == 3
        assert await second == 3 and await third == 3
        assert calls == [(0, 1), (1, 3)]
        await asyncio.sleep(QUIET_DELAYS * delay)  # nothing sent for long enough: quiet again
        fourth = batcher.add(packed(5))
        await asyncio.sleep(0)
        assert calls[-1] == (2, 1) and await fourth == 1

    asyncio.run(scenario())


def test_batcher_starts_a_new_sender_after_a_failed_call() -> None:
    async def scenario() -> None:
        senders: list[tuple[str, int]] = []

        async def send(shard: int, sender: str, seq: int, data: bytes) -> int:
            senders.append((sender, seq))
            if len(senders) == 1:
                raise RuntimeError("shard restarting")
            return 1

        batcher = ShardBatcher(0, send, sender="ingress-0", max_events=1, max_delay=0.01, max_inflight=1)
        failed = batcher.add(packed(1))
        try:
            await failed
        except RuntimeError:
            pass
        assert await batcher.add(packed(2)) == 1
        (first, seq0), (second, seq1) = senders
        assert first != second and seq0 == 0 and seq1 == 0

    asyncio.run(scenario())


def test_a_passivated_profile_wakes_for_its_event_and_its_timer_as_if_never_packed() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        shard, _, gateways = make_shard(clock)
        await welcomed_with_a_cart(shard, clock, gateways)
        await shard.passivate_idle()  # starts a period: the profile was just touched
        assert await shard.passivate_idle() == 1
        status = await shard.status()
        assert status["profiles_passivated"] == 1
        assert status["active_instances"] == {"cart": 1}  # counted without unpacking
        assert (await shard.get_profile(KEY))["history"]["cart"]["entries"] == 1  # a read leaves it packed
        assert (await shard.status())["profiles_passivated"] == 1
        # the cart wait fires on a packed profile: it is unpacked and moves on
        clock.advance(1800)
        assert await shard.fire_timers() == 1
        await shard.drain_sends()
        assert gateways["email"].requests[-1]["node"] == "mail"
        status = await shard.status()
        assert status["profiles_passivated"] == 0 and status["passivation"]["activations"] == 1
        # and an event for a packed profile applies once, duplicates still recognised
        await shard.passivate_idle()
        await shard.passivate_idle()
        assert await shard.apply_batch("s", 1, blob(record("cart_add", 1), record("purchase", 2))) == 1

    asyncio.run(scenario())
