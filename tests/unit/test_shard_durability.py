"""A shard on real stores, SQLite and Redis (no Ray): log before apply, snapshot, replay, durable timers.

Each test builds a shard, feeds it, throws it away without any goodbye (as a killed
process would) and builds a new one on the same database file.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from itinerary.actors.profile_shard import TRIM_ENTRIES
from itinerary.clock import ManualClock
from itinerary.engine.messages import outcome_for
from itinerary.store.base import ShardStore
from itinerary.store.redis import RedisShardStore
from itinerary.store.sqlite import SqliteShardStore
from tests.unit.test_shard_inprocess import KEY, blob, make_shard, record

StoreAt = Callable[[], ShardStore]


@pytest.fixture(params=["sqlite", "redis"])
def store_at(request: pytest.FixtureRequest, tmp_path: Path) -> StoreAt:
    """Opens the same store again each time it is called, as a restarted shard would."""
    if request.param == "sqlite":
        return lambda: SqliteShardStore(tmp_path / "shard.db")
    url = request.getfixturevalue("redis_url")
    prefix = f"test-{uuid.uuid4().hex[:8]}"  # one Redis serves every test: keys apart
    return lambda: RedisShardStore(url, "profile-shard-00", prefix=prefix)


def shard_on(store_at: StoreAt, clock: ManualClock) -> Any:
    return make_shard(clock, store_at())


async def registered_and_welcomed(shard: Any, clock: ManualClock, gateways: dict[str, Any]) -> None:
    """A registration whose welcome e-mail's outcome came back: the welcome journey ends."""
    await shard.apply_batch("s", 0, blob(record("registration", 0)))
    await shard.drain_sends()
    [welcome] = gateways["email"].requests
    await shard.deliver_outcomes(msgpack.packb([outcome_for(welcome, "sent", at=clock())]))


def test_events_logged_before_a_crash_are_applied_after_it(store_at: StoreAt) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        shard, _, _ = shard_on(store_at, clock)
        await shard.apply_batch("s", 0, blob(record("registration", 0), record("cart_add", 1)))
        before = await shard.get_profile(KEY)
        # no snapshot was taken: everything comes back from the log
        again, _, _ = shard_on(store_at, clock)
        assert again.recovery["replayed"] == 1 and again.recovery["profiles"] == 0
        assert await again.get_profile(KEY) == before
        status = await again.status()
        assert status["events_applied"] == 2

    asyncio.run(scenario())


def test_a_restarted_shard_knows_its_senders_and_ignores_a_retried_batch(store_at: StoreAt) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        shard, _, _ = shard_on(store_at, clock)
        await shard.apply_batch("s", 0, blob(record("cart_add", 1)))
        await shard.snapshot()
        await shard.apply_batch("s", 1, blob(record("purchase", 2)))
        again, _, _ = shard_on(store_at, clock)
        assert await again.apply_batch("s", 1, blob(record("purchase", 2))) == 0  # already applied
        assert await again.apply_batch("s", 2, blob(record("cart_add", 3))) == 1  # the next one goes on
        assert (await again.status())["events_applied"] == 3

    asyncio.run(scenario())


def test_snapshot_then_log_tail_gives_the_same_profile_and_timers(store_at: StoreAt) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        shard, _, gateways = shard_on(store_at, clock)
        await registered_and_welcomed(shard, clock, gateways)
        written = await shard.snapshot()
        assert written["profiles"] == 1
        await shard.apply_batch("s", 1, blob(record("cart_add", 1)))  # after the snapshot: log only
        before = await shard.get_profile(KEY)
        again, _, _ = shard_on(store_at, clock)
        assert again.recovery == {"seconds": again.recovery["seconds"], "profiles": 1, "replayed": 1, "resends": 0}
        assert await again.get_profile(KEY) == before
        # Only live timers come back: the welcome action's outcome timeout, stale once the
        # outcome arrived, stays behind; the cart wait is rebuilt from its instance.
        assert len(again.timers) == 1 and len(shard.timers) == 2

    asyncio.run(scenario())


def test_a_timer_that_fell_due_while_down_fires_once_on_recovery(store_at: StoreAt) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        shard, _, _ = shard_on(store_at, clock)
        await shard.apply_batch("s", 0, blob(record("cart_add", 1)))
        clock.advance(3600)  # the cart wait (30 min) fell due while no shard was running
        again, _, gateways = shard_on(store_at, clock)
        assert await again.fire_timers() == 1
        await again.drain_sends()
        [reminder] = gateways["push"].requests  # no e-mail address known: the push branch
        assert reminder["node"] == "push"
        assert await again.fire_timers() == 0
        # and once more after another crash: the firing is in the log, so it is not repeated
        third, _, gateways3 = shard_on(store_at, clock)
        assert await third.fire_timers() == 0
        await third.drain_sends()
        # the replay re-sends the reminder with the same message id; the gateway's outbox
        # recognises it and does not deliver it twice
        assert [r["id"] for r in gateways3["push"].requests] == [reminder["id"]]

    asyncio.run(scenario())


def test_replay_re_sends_messages_with_the_same_ids(store_at: StoreAt) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        shard, _, gateways = shard_on(store_at, clock)
        await shard.apply_batch("s", 0, blob(record("registration", 0)))
        await shard.drain_sends()
        first = [r["id"] for r in gateways["email"].requests]
        again, _, gateways2 = shard_on(store_at, clock)
        assert again.recovery["resends"] == 1
        await again.drain_sends()
        assert [r["id"] for r in gateways2["email"].requests] == first

    asyncio.run(scenario())


def test_inputs_applied_while_a_snapshot_packs_are_applied_once_after_recovery(
    store_at: StoreAt, monkeypatch: pytest.MonkeyPatch
) -> None:
    from itinerary.actors import profile_shard

    monkeypatch.setattr(profile_shard, "SNAPSHOT_SLICE", 1)  # yield after every profile

    async def scenario() -> None:
        clock = ManualClock()
        shard, _, _ = shard_on(store_at, clock)
        await shard.apply_batch("s", 0, blob(record("cart_add", 1)))
        # the purchase is applied between the snapshot's slices: the row may or may not
        # reflect it, and the log keeps it after `upto` either way
        written, applied = await asyncio.gather(
            shard.snapshot(), shard.apply_batch("s", 1, blob(record("purchase", 2)))
        )
        assert applied == 1 and written["upto"] == 1
        live = await shard.get_profile(KEY)
        again, _, _ = shard_on(store_at, clock)
        assert await again.get_profile(KEY) == live
        assert live is not None and live["history"]["cart"]["entries"] == 1 and live["journeys"] == []

    asyncio.run(scenario())


def test_a_snapshot_writes_passivated_profiles_as_they_are_and_recovery_keeps_them_packed(
    store_at: StoreAt,
) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        shard, _, _ = shard_on(store_at, clock)
        await shard.apply_batch("s", 0, blob(record("registration", 0), record("cart_add", 1)))
        await shard.passivate_idle()
        assert await shard.passivate_idle() == 1
        assert (await shard.snapshot())["profiles"] == 1  # dirty, and written in its packed form
        before = await shard.get_profile(KEY)
        again, _, _ = shard_on(store_at, clock)
        status = await again.status()
        assert status["profiles_passivated"] == 1 and len(again.timers) == len(shard.timers)
        assert status["active_instances"] == (await shard.status())["active_instances"]
        assert await again.get_profile(KEY) == before

    asyncio.run(scenario())


def test_a_version_1_shard_database_is_migrated_with_its_profiles(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(
        """
        CREATE TABLE log (seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL, at REAL NOT NULL, blob BLOB NOT NULL);
        CREATE TABLE profiles (key TEXT PRIMARY KEY, state BLOB NOT NULL) WITHOUT ROWID;
        CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;
        INSERT INTO profiles VALUES ('Email:a', x'81a16101');
        INSERT INTO meta VALUES ('snapshot_seq', '7');
        PRAGMA user_version=1;
        """
    )
    db.close()
    store = SqliteShardStore(path)
    store.write_profiles([("Email:a", b"\x81\xa1a\x02"), ("Email:b", b"\x80")])
    state = store.load()
    assert state.snapshot_seq == 7
    assert sorted(state.profiles) == [("Email:a", b"\x81\xa1a\x02"), ("Email:b", b"\x80")]
    store.close()
    assert SqliteShardStore(path).load().profiles  # version 2 opens as it is


def test_an_idle_profile_without_instances_is_evicted_and_read_back_by_its_next_event(store_at: StoreAt) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        shard, _, gateways = shard_on(store_at, clock)
        await registered_and_welcomed(shard, clock, gateways)
        before = await shard.get_profile(KEY)
        assert before is not None and before["journeys"] == []  # the welcome journey ended
        await shard.passivate_idle()
        assert await shard.passivate_idle() == 1
        assert (await shard.status())["profiles"] == 1  # not written yet: packed, kept
        await shard.snapshot()
        await shard.passivate_idle()  # now the store has it: dropped from memory
        status = await shard.status()
        assert status["profiles"] == 0 and status["passivation"]["evictions"] == 1
        assert len(shard.timers) == 0  # the welcome's stale outcome timeout went with it
        assert await shard.get_profile(KEY) == before  # read through from the store
        # its next events find it again: the old event id is still a duplicate, history holds
        assert await shard.apply_batch("s", 1, blob(record("registration", 0))) == 0
        assert await shard.apply_batch("s", 2, blob(record("cart_add", 1))) == 1
        after = await shard.get_profile(KEY)
        assert {j: h["entries"] for j, h in after["history"].items()} == {"welcome": 1, "cart": 1}
        assert (await shard.status())["passivation"]["reloads"] == 1

    asyncio.run(scenario())


def test_a_profile_with_a_waiting_instance_is_never_evicted(store_at: StoreAt) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        shard, _, _ = shard_on(store_at, clock)
        await shard.apply_batch("s", 0, blob(record("cart_add", 1)))  # the cart journey waits
        await shard.snapshot()
        for _ in range(3):
            await shard.passivate_idle()
        status = await shard.status()
        assert status["profiles"] == 1 and status["passivation"]["evictions"] == 0
        clock.advance(1800)
        assert await shard.fire_timers() == 1  # its timer still finds it

    asyncio.run(scenario())


def test_a_snapshot_drops_the_log_before_it_in_small_steps(store_at: StoreAt) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        shard, _, _ = shard_on(store_at, clock)
        for seq in range(20):
            await shard.apply_batch("s", seq, blob(record("cart_add", seq)))
        calls: list[int] = []
        trim = shard.store.trim_log

        def counted(upto: int, limit: int) -> int:
            dropped = trim(upto, limit)
            calls.append(dropped)
            return dropped

        shard.store.trim_log = counted
        await shard.snapshot()
        assert sum(calls) >= 20 and calls[-1] == 0
        if isinstance(shard.store, SqliteShardStore):  # Redis frees the entries in one call
            assert len(calls) > 2 and max(calls) <= TRIM_ENTRIES  # several small transactions
        assert shard.store.load().log == []
        again, _, _ = shard_on(store_at, clock)
        assert again.recovery["replayed"] == 0 and (await again.status())["events_applied"] == 20

    asyncio.run(scenario())


def test_log_entries_a_crash_left_before_the_snapshot_point_are_not_replayed(store_at: StoreAt) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        shard, _, _ = shard_on(store_at, clock)
        await shard.apply_batch("s", 0, blob(record("cart_add", 1)))
        shard.store.trim_log = lambda upto, limit: 0  # the process dies before it trims
        await shard.snapshot()
        await shard.apply_batch("s", 1, blob(record("purchase", 2)))
        before = await shard.get_profile(KEY)
        again, _, _ = shard_on(store_at, clock)
        assert again.recovery["replayed"] == 1  # the purchase only; the cart add is in the snapshot
        assert await again.get_profile(KEY) == before
        assert (await again.status())["events_applied"] == 2

    asyncio.run(scenario())
