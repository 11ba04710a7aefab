"""The gateway's outbox on real SQLite and Redis with a real HTTP receiver (no Ray needed).

A gateway actor object is dropped without stopping (as a killed process would be) and a
new one is built on the same outbox file: pending messages are resumed, delivered ones
are not sent again, and a resend of a known message gets its recorded outcome back.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgpack
import pytest

from itinerary.actors.gateway_actor import GatewayActor
from itinerary.actors.peers import LocalPeers
from itinerary.config.app import AppConfig
from itinerary.receivers import WebhookReceiver, wait_until


class OutcomeRecorder:
    """Stands in for a profile shard: records the outcomes routed to it."""

    def __init__(self) -> None:
        self.outcomes: list[dict[str, Any]] = []

    async def deliver_outcomes(self, blob: bytes) -> None:
        self.outcomes.extend(msgpack.unpackb(blob, raw=False))


@pytest.fixture(params=["sqlite", "redis"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Runtime settings that put the outbox in a fresh SQLite file or under a fresh Redis prefix."""
    if request.param == "sqlite":
        return {"data_dir": str(tmp_path)}
    os.environ["OUTBOX_TEST_REDIS_URL"] = request.getfixturevalue("redis_url")
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    return {"storage": {"backend": "redis", "redis_url": {"env": "OUTBOX_TEST_REDIS_URL"}, "key_prefix": prefix}}


def app_for(
    url: str, storage: dict[str, Any], calls_per_s: int, queue_size: int = 10_000, period: str = "PT1S"
) -> AppConfig:
    return AppConfig.model_validate(
        {
            "runtime": {**storage, "outcome_flush": "PT0.01S"},
            "channels": {
                "hook": {
                    "type": "webhook",
                    "url": url,
                    "allow_private": True,
                    "token": {"env": "OUTBOX_TEST_TOKEN"},
                    "limit": {"calls": calls_per_s, "period": period, "burst": 1, "mode": "throttle"},
                    "queue_size": queue_size,
                }
            },
        },
        context={"env": {**os.environ, "OUTBOX_TEST_TOKEN": TOKEN}},
    )


TOKEN = secrets.token_urlsafe(8)


def request(n: int) -> dict[str, Any]:
    return {
        "id": f"Email:p{n}/j/1/call/1",
        "channel": "hook",
        "shard": 0,
        "profile": f"Email:p{n}",
        "journey": "j",
        "instance": f"Email:p{n}/j/1",
        "node": "call",
        "payload": {"n": n},
        "created": 0.0,
        "event_ts": None,
    }


def gateway(app: AppConfig) -> tuple[GatewayActor, OutcomeRecorder]:
    peers = LocalPeers()
    shard = OutcomeRecorder()
    peers.shards[0] = shard
    return GatewayActor("gateway-hook", app, peers=peers), shard


def test_a_restarted_gateway_resumes_its_outbox_and_never_sends_twice(storage: dict[str, Any]) -> None:
    async def scenario() -> None:
        hooks = WebhookReceiver(token=TOKEN)
        await hooks.start()
        try:
            app = app_for(f"{hooks.url}/hook", storage, calls_per_s=20)
            first, _ = gateway(app)
            await first.submit(msgpack.packb([request(n) for n in range(30)]))
            assert await wait_until(lambda: len(hooks.received) >= 5, timeout=10)
            # killed mid-delivery: its queue and in-flight calls vanish with it
            killed = first.channels["hook"].gateway
            for task in [*killed._deliveries, killed._dispatcher, killed._flusher]:
                if task is not None:
                    task.cancel()
            await asyncio.sleep(0.05)
            delivered_before = {r.idempotency_key for r in hooks.received}

            second, shard2 = gateway(app)
            [stats] = (await second.stats())["channels"]
            assert stats["outbox"]["resumed"] == 30 - stats["outbox"]["done"]
            assert await wait_until(lambda: len(hooks.unique_keys) == 30, timeout=20)
            # by idempotency key every message arrived exactly once; a message whose answer
            # was lost with the first gateway may arrive twice, which the key makes harmless
            assert hooks.unique_keys == {request(n)["id"] for n in range(30)}
            assert hooks.duplicates <= len(first.channels["hook"].gateway._deliveries) + 1
            assert delivered_before <= hooks.unique_keys

            # a shard replaying its log asks again: nothing is sent, the outcome comes back
            sent = len(hooks.received)
            answer = await second.submit(msgpack.packb([request(0), request(29)]))
            assert answer["known"] == 2 and answer["queued"] == 0
            await asyncio.sleep(0.2)
            assert len(hooks.received) == sent
            assert {o["id"] for o in shard2.outcomes if o["outcome"] == "sent"} >= {request(0)["id"]}
            await second.stop()
        finally:
            await hooks.stop()

    asyncio.run(scenario())


def test_failed_messages_stay_as_dead_letters_with_their_reason(storage: dict[str, Any]) -> None:
    async def scenario() -> None:
        hooks = WebhookReceiver(token="another-token")  # every call is refused with 401
        await hooks.start()
        try:
            app = app_for(f"{hooks.url}/hook", storage, calls_per_s=100)
            actor, shard = gateway(app)
            await actor.submit(msgpack.packb([request(1), request(2)]))
            assert await wait_until(lambda: sum(o["outcome"] == "failed" for o in shard.outcomes) == 2, timeout=10)
            dead = await actor.dead_letters()
            assert {d["id"] for d in dead} == {request(1)["id"], request(2)["id"]}
            assert all(d["outcome"] == "failed" and "401" in str(d["reason"]) + str(d["status"]) for d in dead)
            assert (await actor.stats())["channels"][0]["outbox"]["dead"] == 2
            await actor.stop()
        finally:
            await hooks.stop()

    asyncio.run(scenario())


def test_requests_over_the_queue_are_refused_without_an_outbox_row(storage: dict[str, Any]) -> None:
    async def scenario() -> None:
        hooks = WebhookReceiver(token=TOKEN)
        await hooks.start()
        try:
            # one call an hour: request(0) takes the burst, the rest stay queued for the test
            app = app_for(f"{hooks.url}/hook", storage, calls_per_s=1, queue_size=3, period="PT1H")
            actor, shard = gateway(app)
            await actor.submit(msgpack.packb([request(0)]))
            assert await wait_until(lambda: any(o["outcome"] == "sent" for o in shard.outcomes), timeout=10)
            # request(0) is done; the queue is empty again and takes 3 of the next 6
            answer = await actor.submit(msgpack.packb([request(n) for n in range(1, 7)]))
            assert answer["queued"] == 3 and answer["rejected"] == 3
            # a resend of a known message past the room gets its recorded outcome, not a refusal
            again = await actor.submit(msgpack.packb([request(7), request(0)]))
            assert again["known"] == 1 and again["rejected"] == 1
            refused = {request(n)["id"] for n in (4, 5, 6, 7)}
            assert await wait_until(
                lambda: {o["id"] for o in shard.outcomes if o["reason"] == "queue full"} == refused, timeout=10
            )
            assert sum(o["id"] == request(0)["id"] and o["outcome"] == "sent" for o in shard.outcomes) == 2
            [stats] = (await actor.stats())["channels"]
            assert stats["rejected"]["queue_full"] == 4
            # the refused ones left nothing behind: no dead letters, and a restart resumes only the queued
            assert stats["outbox"]["dead"] == 0 and stats["outbox"]["pending"] + stats["outbox"]["done"] == 4
            assert {d["id"] for d in await actor.dead_letters()} == set()
            await actor.stop()
        finally:
            await hooks.stop()

    asyncio.run(scenario())


def with_journey_on(app: AppConfig, event: str) -> AppConfig:
    """`app` plus a journey that starts on `event` and calls the channel."""
    journey = {
        "id": "notice",
        "nodes": {
            "start": {"type": "entry", "event": event, "next": "call"},
            "call": {"type": "action", "channel": "hook", "payload": {"n": "1"}, "next": "done"},
            "done": {"type": "end"},
        },
    }
    return AppConfig.model_validate({**app.model_dump(mode="python"), "journeys": [journey]})


@pytest.mark.parametrize("listener", [None, "message.throttled", "message.sent"])
def test_throttled_notices_reach_shards_only_when_a_journey_takes_them(tmp_path: Path, listener: str | None) -> None:
    async def scenario() -> None:
        hooks = WebhookReceiver(token=TOKEN)
        await hooks.start()
        try:
            app = app_for(f"{hooks.url}/hook", {"data_dir": str(tmp_path)}, calls_per_s=50)
            if listener is not None:
                app = with_journey_on(app, listener)
            actor, shard = gateway(app)
            await actor.submit(msgpack.packb([request(n) for n in range(6)]))
            assert await wait_until(lambda: sum(o["outcome"] == "sent" for o in shard.outcomes) == 6, timeout=10)
            [stats] = (await actor.stats())["channels"]
            assert stats["outcomes"]["throttled"] == 5  # burst 1: all but the first waited
            routed = [o["id"] for o in shard.outcomes if o["outcome"] == "throttled"]
            assert routed == ([request(n)["id"] for n in range(1, 6)] if listener == "message.throttled" else [])
            await actor.stop()
        finally:
            await hooks.stop()

    asyncio.run(scenario())


@pytest.fixture(params=["sqlite", "redis"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A fresh outbox store on SQLite or Redis."""
    from itinerary.store.redis import RedisOutboxStore
    from itinerary.store.sqlite import SqliteOutboxStore

    if request.param == "sqlite":
        return SqliteOutboxStore(tmp_path / "outbox.db")
    return RedisOutboxStore(request.getfixturevalue("redis_url"), "gateway-t", prefix=f"test-{uuid.uuid4().hex[:8]}")


def test_prune_forgets_delivered_messages_past_retention_in_slices(outbox: Any) -> None:
    outbox.add([(f"m{n}", b"request") for n in range(6)], 0.0)
    outbox.finish([(f"m{n}", "done", b"sent") for n in range(3)], 100.0)  # delivered long ago
    outbox.finish([("m3", "done", b"sent")], 500.0)  # delivered within the retention
    outbox.finish([("m4", "dead", b"failed")], 100.0)  # a dead letter stays
    assert [outbox.prune(200.0, 2) for _ in range(3)] == [2, 1, 0]
    assert outbox.counts() == {"pending": 1, "done": 1, "dead": 1}
    # a forgotten message is new again; the others are still known
    known = {message_id for message_id, _, _ in outbox.add([("m0", b"r"), ("m3", b"r"), ("m4", b"r")], 600.0)}
    assert known == {"m3", "m4"}
    outbox.close()


def test_a_shard_calling_with_sends_gets_its_waiting_outcomes_in_the_answer(tmp_path: Path) -> None:
    async def scenario() -> None:
        hooks = WebhookReceiver(token=TOKEN)
        await hooks.start()
        try:
            app = app_for(f"{hooks.url}/hook", {"data_dir": str(tmp_path)}, calls_per_s=1000)
            # Outcomes go back at most every 5 s on the gateway's own calls: plenty of time
            # for the shard's next call to find them waiting.
            app = app.model_copy(
                update={"runtime": app.runtime.model_copy(update={"outcome_flush": timedelta(seconds=5)})}
            )
            gw, shard = gateway(app)
            gw.channels["hook"].gateway._flush_interval = 0.01  # the same setting paces the gateway's own outcome flush
            await gw.submit(msgpack.packb([request(0)]), 0)
            assert await wait_until(lambda: len(shard.outcomes) == 1, timeout=10)  # an idle return path calls at once
            await gw.submit(msgpack.packb([request(n) for n in range(1, 6)]), 0)
            assert await wait_until(lambda: gw._returns[0].pending == 5, timeout=10)

            answer = await gw.submit(msgpack.packb([request(6)]), 0)
            carried = msgpack.unpackb(answer["outcomes"], raw=False)
            assert sorted(o["id"] for o in carried) == sorted(request(n)["id"] for n in range(1, 6))
            assert {o["outcome"] for o in carried} == {"sent"}
            assert len(shard.outcomes) == 1 and gw._returns[0].pending == 0  # none went twice

            # a caller that does not name its shard gets none (they are not its own)
            assert await wait_until(lambda: gw._returns[0].pending == 1, timeout=10)
            assert "outcomes" not in await gw.submit(msgpack.packb([]))
            stats = await gw.stats()
            assert stats["shard_calls"] == {"0": 1} and stats["outcomes_on_answers"] == {"0": 5}
        finally:
            await hooks.stop()

    asyncio.run(scenario())


def grouped_app(url: str, data_dir: str) -> AppConfig:
    """Two webhook channels served by one gateway actor, `gateway-both`: `fast` with room
    to spare (a burst of 50), `slow` throttled to 2 calls a second (a burst of 1)."""

    def hook(path: str, calls: int, burst: int) -> dict[str, Any]:
        return {
            "type": "webhook",
            "url": f"{url}/{path}",
            "allow_private": True,
            "token": {"env": "OUTBOX_TEST_TOKEN"},
            "limit": {"calls": calls, "period": "PT1S", "burst": burst, "mode": "throttle"},
        }

    return AppConfig.model_validate(
        {
            "runtime": {"data_dir": data_dir, "outcome_flush": "PT0.01S", "gateway_groups": {"both": ["fast", "slow"]}},
            "channels": {"fast": hook("fast", 1000, 50), "slow": hook("slow", 2, 1)},
        },
        context={"env": {**os.environ, "OUTBOX_TEST_TOKEN": TOKEN}},
    )


def test_one_actor_serves_a_group_of_channels_each_with_its_own_limit_and_outbox(tmp_path: Path) -> None:
    async def scenario() -> None:
        hooks = WebhookReceiver(token=TOKEN)
        await hooks.start()
        try:
            app = grouped_app(hooks.url, str(tmp_path))
            assert app.gateway_hosts() == {"gateway-both": ("fast", "slow")}
            peers = LocalPeers()
            shard = OutcomeRecorder()
            peers.shards[0] = shard
            actor = GatewayActor("gateway-both", app, peers=peers)
            fast = [{**request(n), "channel": "fast"} for n in range(5)]
            slow = [{**request(n), "id": f"slow-{n}", "channel": "slow"} for n in range(3)]
            stray = {**request(9), "id": "stray", "channel": "hook"}  # not served here
            answer = await actor.submit(msgpack.packb([*fast, *slow, stray]), 0)
            assert answer["queued"] == 8 and answer["rejected"] == 1
            # `slow` has a backlog, `fast` none: the next sends may not wait
            assert answer["backlog_s"] == 0.0

            def sent() -> set[str]:
                return {o["id"] for o in shard.outcomes if o["outcome"] == "sent"}

            assert await wait_until(lambda: len(sent()) == 8, timeout=10)
            paths = sorted(r.path for r in hooks.received)
            assert paths == ["/fast"] * 5 + ["/slow"] * 3
            stats = await actor.stats()
            assert stats["misrouted"] == 1
            by_channel = {c["name"]: c for c in stats["channels"]}
            assert by_channel["slow"]["outcomes"]["throttled"] == 2
            assert by_channel["fast"]["outbox"]["done"] == 5 and by_channel["slow"]["outbox"]["done"] == 3
            # each channel keeps the outbox it has when it runs alone
            outboxes = sorted(p.name for p in (tmp_path / "gateways").glob("*.db"))
            assert outboxes == ["gateway-fast.db", "gateway-slow.db"]
            await actor.stop()

            # A message that ends for good (here: past its deadline) is a dead letter in its
            # own channel's outbox only; the outcome reaches the shard after it is recorded.
            again = GatewayActor("gateway-both", app, peers=peers)
            await again.submit(msgpack.packb([{**request(20), "id": "lost", "channel": "fast", "deadline": 0.0}]), 0)
            assert await wait_until(lambda: any(o["id"] == "lost" for o in shard.outcomes), timeout=10)
            assert [d["id"] for d in await again.dead_letters(channel="fast")] == ["lost"]
            assert await again.dead_letters(channel="slow") == []
            assert [d["id"] for d in await again.dead_letters()] == ["lost"]
            with pytest.raises(ValueError, match="does not serve channel 'hook'"):
                await again.dead_letters(channel="hook")
            await again.stop()
        finally:
            await hooks.stop()

    asyncio.run(scenario())


def test_a_gateway_actor_refuses_a_name_the_config_does_not_give(tmp_path: Path) -> None:
    app = grouped_app("http://127.0.0.1:9", str(tmp_path))
    with pytest.raises(ValueError, match="no gateway 'gateway-fast' in the config"):
        GatewayActor("gateway-fast", app, peers=LocalPeers())
