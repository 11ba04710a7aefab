"""ProfileShard: hosts many profiles as virtual actors and executes their journeys' effects.

A shard owns the profiles whose keys hash to its partitions. Events arrive in msgpack
batches from ingresses, outcomes in batches from gateways; timers live in the shard's
heap and are driven by an injected clock. Sends are gathered per channel and leave in one
call per channel per batch. The class is plain Python; `actors.runtime` binds it to Ray.

Durability: every input (an event batch, an outcome batch, the timers that fell due) is
appended to the shard's write-ahead log before it is applied, and applied with the time
written next to it; the answer to the caller goes out after both. Inputs that arrive
while a write is under way wait for the next one, so the log commits in groups. Dirty
profiles are snapshotted every `snapshot_interval` and the log up to the snapshot is
dropped. On start the shard loads the snapshot, replays the log tail through the same
code with the logged times, rebuilds its timers from the journey instances, and re-sends
what the replay asked for (gateways recognise a resend by its message id).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from functools import partial
from typing import Any

import msgpack

from itinerary.actors.coalescer import Coalescer
from itinerary.actors.metrics import ShardMetrics
from itinerary.actors.names import gateway_name, shard_name
from itinerary.actors.peers import Peers, offer_stream
from itinerary.actors.stalls import StallWatch, status_percentiles
from itinerary.actors.storeio import StoreCalls
from itinerary.actors.tuning import GC_SETTLE_SECONDS, settle_gc, tune_gc
from itinerary.actors.wire import WireServer
from itinerary.catalog import Catalog
from itinerary.clock import SystemClock
from itinerary.config.app import AppConfig
from itinerary.engine.effects import ScheduleTimer, Send, StepEvent
from itinerary.engine.messages import SendRequest
from itinerary.engine.profile_table import ProfileTable
from itinerary.engine.timers import TimerQueue
from itinerary.load.stats import COARSE, new_histogram
from itinerary.store.base import EVENTS, OUTCOMES, ShardStore
from itinerary.store.factory import open_shard_store
from itinerary.store.memory import MemoryShardStore

log = logging.getLogger(__name__)

HELD_BATCH_TIMEOUT = 30.0
TIMER_ROUND = 10_000  # timers popped, logged and applied at most per round
SNAPSHOT_SLICE = 100  # profiles packed and written per step of a snapshot (~2 ms of work)
TRIM_ENTRIES = 2  # log entries dropped per transaction after a snapshot (~0.5 MB, ~4 ms)
TIMERS = 3  # log entry kind: timers that fell due, as [[due, key, journey, instance, node], ...]
TimerKey = tuple[str, str, str, str]  # profile key, journey, instance, node
_pack = msgpack.Packer(use_bin_type=True).pack


class ProfileShard:
    """Holds profiles and their journey instances for a range of partitions.

    Per-profile order: batches from one sender carry a sequence number and are applied in
    that order even if they arrive out of order, so events of one profile never overtake.
    """

    def __init__(
        self,
        index: int,
        app: AppConfig,
        peers: Peers | None = None,
        clock: Any = None,
        start_timers: bool = True,
        store: ShardStore | None = None,
    ) -> None:
        tune_gc()
        self.index = index
        self.name = shard_name(index)
        self.catalog = Catalog.build(app)
        self.engine = self.catalog.engine()
        self.runtime = app.runtime
        if peers is None:
            from itinerary.actors.peers import RayPeers

            peers = RayPeers(app.runtime.ray_namespace, app.runtime.direct_streams)
        self.peers = peers
        streamed = {"apply_batch": self.apply_batch, "deliver_outcomes": self.deliver_outcomes}
        self._stream = WireServer(streamed, self.name)
        self.clock = clock if clock is not None else SystemClock()
        self.profiles = ProfileTable()
        self.timers: TimerQueue[TimerKey] = TimerQueue()
        self.pending_sends: dict[str, list[SendRequest]] = {}  # by gateway actor
        self.steps: Counter[tuple[str, str, str]] = Counter()
        # The last step events, kept as tuples: building a dict per step costs more than the step.
        self.recent_steps: deque[tuple[str, float, StepEvent]] = deque(maxlen=1000)
        self.counts: Counter[str] = Counter()
        # How late timers fire against their due time, in µs: the figure an operator of
        # waits cares about (a slow shard or a long GC shows up here first).
        self.timer_lateness = new_histogram(COARSE)
        self._stalls = StallWatch(self.name)
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self._next_seq: dict[str, int] = {}
        self._held: dict[str, dict[int, tuple[bytes, asyncio.Future[int], float]]] = {}
        self._metrics = ShardMetrics(self.name)
        self._senders: dict[str, Coalescer] = {}  # by gateway actor
        self._gateway_of = app.gateway_of()
        self._timer_task: asyncio.Task[None] | None = None
        self._full_timer_round = False
        self._start_timers = start_timers
        storage = app.runtime.storage
        self.store = store if store is not None else open_shard_store(storage, app.runtime.data_dir, self.name)
        # Memory stores are called inline; real ones from one I/O thread, in order.
        self._durable = not isinstance(self.store, MemoryShardStore)
        self._io = StoreCalls(self.name, inline=not self._durable)
        self._log_queue: list[tuple[int, bytes, asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._applied_seq = 0
        self._log_bytes = 0
        self._dirty: set[str] = set()
        self._snapshot_interval = storage.snapshot_interval.total_seconds()
        self._snapshot_log_bytes = storage.snapshot_log_bytes
        # Shards started together would snapshot together, every interval, and the whole
        # pipeline would feel it at once: each starts its cycle at its own offset.
        self._last_snapshot = time.monotonic() - self._snapshot_interval * ((index * 0.618) % 1.0)
        self._snapshotting = False
        self._snapshotting_task: asyncio.Task[dict[str, Any]] | None = None
        after = app.runtime.profile.passivate_after
        self._passivate_after = after.total_seconds() if after else None
        self._last_sweep = time.monotonic()
        self._passivating: asyncio.Task[int] | None = None
        # Idle profiles without instances are dropped once the store has them (see
        # passivate_idle); from then on, keys missing from memory are looked up in the store.
        self._evict = self._durable and app.runtime.profile.evict_to_store
        self._reloads = 0
        self._evictions_at_compaction = 0
        self.recovery: dict[str, Any] = {}
        self._recover()

    def __repr__(self) -> str:
        return f"ProfileShard({self.name}, profiles={len(self.profiles)})"

    # -- inputs -----------------------------------------------------------------------

    async def apply_batch(self, sender: str, seq: int, blob: bytes) -> int:
        """Log, then apply a batch of routed records (see itinerary.router.Record); returns how many."""
        self._ensure_timer_task()
        # Senders number their batches from 0 and start a new sender id after any failed
        # call, so a gap here is only ever a reordering in transit. The next number of
        # each sender is part of the log and the snapshot, so it survives a restart.
        expected = self._next_seq.get(sender, 0)
        if seq != expected:
            if seq < expected:
                return 0  # a batch we already applied (a retried call): nothing to do
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._held.setdefault(sender, {})[seq] = (blob, future, self.clock())
            return await future
        blobs = [blob]
        followers: list[asyncio.Future[int]] = []
        self._next_seq[sender] = seq + 1
        held = self._held.get(sender)
        while held and self._next_seq[sender] in held:
            next_blob, next_future, _ = held.pop(self._next_seq[sender])
            blobs.append(next_blob)
            followers.append(next_future)
            self._next_seq[sender] += 1
        try:
            results = await asyncio.gather(
                *(self._commit(EVENTS, _pack([sender, seq + i, b])) for i, b in enumerate(blobs))
            )
        except Exception as exc:
            for follower in followers:
                if not follower.done():
                    follower.set_exception(exc)
            raise
        for follower, applied in zip(followers, results[1:], strict=True):
            if not follower.done():
                follower.set_result(applied)
        await self.flush_sends()
        return int(results[0])

    # -- the write-ahead log ----------------------------------------------------------

    def _commit(self, kind: int, blob: bytes) -> asyncio.Future[Any]:
        """Queue an input for the log; the future resolves once it is logged and applied."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._log_queue.append((kind, blob, future))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_log())
        return future

    async def _write_log(self) -> None:
        try:
            while self._log_queue:
                group, self._log_queue = self._log_queue, []
                at = self.clock()
                entries = [(kind, at, blob) for kind, blob, _ in group]
                missing, decoded = self._missing_keys(group) if self.profiles.evictions else ([], {})
                try:
                    if missing:
                        last, found = await self._io(self._append_and_load, entries, missing)
                        self._reload(found)
                    else:
                        last = await self._io(self.store.append, entries)
                except Exception as exc:
                    log.error("%s: write-ahead log append failed: %s", self.name, exc)
                    for kind, blob, future in group:
                        if kind == TIMERS:
                            self._unpop_timers(blob)
                        if not future.done():
                            future.set_exception(RuntimeError(f"{self.name}: log write failed"))
                    continue
                self._metrics.logged(len(group))
                first = last - len(group) + 1
                for offset, (kind, blob, future) in enumerate(group):
                    try:
                        result = self._apply_entry(kind, blob, at, decoded.get(offset))
                    except Exception as exc:  # a bug in applying must not wedge the log
                        log.exception("%s: applying log entry %d failed", self.name, first + offset)
                        if not future.done():
                            future.set_exception(exc)
                    else:
                        if not future.done():
                            future.set_result(result)
                    self._applied_seq = first + offset
                    self._log_bytes += len(blob)
        finally:
            self._writer = None

    def _missing_keys(
        self, group: list[tuple[int, bytes, asyncio.Future[Any]]]
    ) -> tuple[list[str], dict[int, list[Any]]]:
        """Keys of the group's events that are not in memory (new profiles, or evicted
        ones), and the decoded records by position in the group, so they are decoded once."""
        profiles = self.profiles
        missing: set[str] = set()
        decoded: dict[int, list[Any]] = {}
        for offset, (kind, blob, _) in enumerate(group):
            if kind == EVENTS:
                records = decoded[offset] = msgpack.unpackb(msgpack.unpackb(blob, raw=False)[2], raw=False)
                missing.update(record[0] for record in records if record[0] not in profiles)
        return list(missing), decoded

    def _append_and_load(self, entries: list[tuple[int, float, bytes]], keys: list[str]) -> tuple[int, Any]:
        """On the I/O thread: read back the evicted profiles the group needs, then log it
        (in that order, so that a failed read leaves nothing logged and unapplied)."""
        found = self.store.load_profiles(keys)
        return self.store.append(entries), found

    def _reload(self, rows: list[tuple[str, bytes]]) -> None:
        for key, blob in rows:
            if key not in self.profiles:
                self.profiles.add_passivated(key, blob, ())  # no instances: it was evicted
                self._reloads += 1

    def _apply_entry(self, kind: int, blob: bytes, at: float, decoded: list[Any] | None = None) -> Any:
        if kind == EVENTS:
            sender, seq, records = msgpack.unpackb(blob, raw=False)
            if decoded is not None:
                records = decoded
            if self._next_seq.get(sender, 0) <= seq:  # only when replaying: live calls set it first
                self._next_seq[sender] = seq + 1
            return self._apply_records(records, at)
        if kind == OUTCOMES:
            return self._apply_outcomes(blob, at)
        if kind == TIMERS:
            return self._apply_timers(blob, at)
        raise ValueError(f"unknown log entry kind {kind}")

    def _recover(self) -> None:
        """Load the snapshot, replay the log after it, rebuild the timers."""
        started = time.perf_counter()
        state = self.store.load()
        unpack = msgpack.unpackb
        for key, packed in state.profiles:
            # Loaded passivated: the next input unpacks a profile, idle ones stay compact.
            self.profiles.add_passivated(key, packed, ())
        if state.meta:
            meta = unpack(state.meta, raw=False)
            self.counts.update(meta.get("counts", {}))
            self.steps.update({(j, n, k): c for j, n, k, c in meta.get("steps", [])})
            self.outcomes.update({(ch, o): c for ch, o, c in meta.get("outcomes", [])})
            self._next_seq.update(meta.get("next_seq", {}))
        self._applied_seq = state.snapshot_seq
        for seq, kind, at, blob in state.log:
            try:
                self._apply_entry(kind, blob, at)
            except Exception:
                log.exception("%s: replaying log entry %d failed; skipped", self.name, seq)
            self._applied_seq = seq
            self._log_bytes += len(blob)
        self.timers = TimerQueue()
        for key, profile in self.profiles.recount():
            if self._evict and not profile["journeys"]:
                self.profiles.evict_when_written(key)
            for instance in profile["journeys"].values():
                if instance.get("due") is not None:
                    self.timers.push(instance["due"], (key, instance["j"], instance["id"], instance["n"]))
        seconds = time.perf_counter() - started
        self.recovery = {
            "seconds": round(seconds, 3),
            "profiles": len(state.profiles),
            "replayed": len(state.log),
            "resends": sum(len(v) for v in self.pending_sends.values()),
        }
        self._metrics.recovered(seconds)
        if state.profiles or state.log:
            log.info(
                "%s recovered %d profiles and replayed %d log entries in %.2fs",
                self.name,
                len(state.profiles),
                len(state.log),
                seconds,
            )

    async def snapshot(self, paced: bool = False) -> dict[str, Any]:
        """Write the profiles changed since the last snapshot and drop the log before them.

        The snapshot is fuzzy, so that packing tens of thousands of profiles never stalls
        the shard: profiles are packed and written in slices, each its own transaction,
        between which inputs keep being applied and logged,
        so a row may already reflect log entries after `upto`. Replaying those is harmless:
        an event is a duplicate by its id, an outcome finds its action no longer waiting, a
        timer finds its instance moved on. Before the rows are committed, the sends of
        everything they reflect are handed to the gateways' outboxes (`drain_sends`): a
        send that only the snapshot remembered would otherwise be lost with the process.

        `paced` (the periodic snapshot): after each slice, rest as long as the slice took,
        so a snapshot takes at most half of the shard's time while it runs; unpaced, ten
        thousand dirty profiles cost the events arriving meanwhile 200-400 ms of latency.
        """
        if self._snapshotting:
            return {"skipped": True}
        self._snapshotting = True
        try:
            upto = self._applied_seq
            log_bytes = self._log_bytes
            meta = _pack(
                {
                    "counts": dict(self.counts),
                    "steps": [[j, n, k, c] for (j, n, k), c in self.steps.items()],
                    "outcomes": [[ch, o, c] for (ch, o), c in self.outcomes.items()],
                    "next_seq": dict(self._next_seq),
                }
            )
            dirty, self._dirty = list(self._dirty), set()
            profiles = self.profiles
            try:
                # Slice by slice: pack on the loop (the state is the loop's), write on the
                # I/O thread; log appends that arrive meanwhile go between the slices.
                for start in range(0, len(dirty), SNAPSHOT_SLICE):
                    began = time.perf_counter()
                    rows = [(key, profiles.packed(key)) for key in dirty[start : start + SNAPSHOT_SLICE]]
                    await self._io(self.store.write_profiles, rows)
                    if paced:
                        await asyncio.sleep(time.perf_counter() - began)
                await self.drain_sends()
                await self._io(self.store.mark_snapshot, upto, meta)
                # The log before the point goes in small transactions, between appends.
                while await self._io(self.store.trim_log, upto, TRIM_ENTRIES):
                    pass
            except Exception:
                self._dirty.update(dirty)  # written next time
                raise
            self._log_bytes = max(0, self._log_bytes - log_bytes)
            self._last_snapshot = time.monotonic()
            self.counts["snapshots"] += 1
            self._metrics.snapshot()
            return {"upto": upto, "profiles": len(dirty)}
        finally:
            self._snapshotting = False

    def _start_snapshot(self) -> None:
        """Run a snapshot beside the timer loop, so timers keep firing while it writes."""

        def done(task: asyncio.Task[dict[str, Any]]) -> None:
            if not task.cancelled() and task.exception() is not None:
                log.error("%s: snapshot failed: %s", self.name, task.exception())

        self._snapshotting_task = asyncio.get_running_loop().create_task(self.snapshot(paced=True))
        self._snapshotting_task.add_done_callback(done)

    def _snapshot_due(self) -> bool:
        if not self._durable or self._snapshotting:
            return False
        if self._log_bytes >= self._snapshot_log_bytes:
            return True
        return bool(self._dirty) and time.monotonic() - self._last_snapshot >= self._snapshot_interval

    def _apply_records(self, blob: bytes | list[Any], now: float | None = None) -> int:
        records: list[Any] = msgpack.unpackb(blob, raw=False) if isinstance(blob, bytes) else blob
        unpack = msgpack.unpackb
        now = self.clock() if now is None else now
        engine = self.engine
        profiles = self.profiles
        applied = duplicates = 0
        payload_events = engine.payload_events
        touch = self._dirty.add if self._durable else None
        for key, name, packed, ingest_ts, event_id, identity_map in records:
            if touch is not None:
                touch(key)
            profile = profiles.get(key)
            if profile is None:
                profile = engine.new_profile(key, now)
                profiles.add(key, profile)
            if name not in payload_events:
                if engine.observe(profile, event_id, identity_map, now):
                    applied += 1
                else:
                    duplicates += 1
                continue
            effects = engine.apply_record(profile, name, unpack(packed, raw=False), event_id, identity_map, now)
            if effects is None:
                duplicates += 1
                continue
            applied += 1
            if effects:
                self._execute(key, effects, now, ingest_ts)
        self.counts["events"] += applied
        self.counts["duplicates"] += duplicates
        self._metrics.batch(applied, duplicates, Counter())
        return applied

    async def deliver_outcomes(self, blob: bytes) -> None:
        """Outcomes from a gateway resume the journeys that wait for them (logged first)."""
        self._ensure_timer_task()
        await self._commit(OUTCOMES, blob)
        await self.flush_sends()

    def _apply_outcomes(self, blob: bytes, now: float) -> int:
        per_outcome: Counter[str] = Counter()
        outcomes = msgpack.unpackb(blob, raw=False)
        for outcome in outcomes:
            per_outcome[outcome["outcome"]] += 1
            self.outcomes[(outcome["channel"], outcome["outcome"])] += 1
            key = outcome["profile"]
            profile = self.profiles.get(key)
            if profile is None:
                continue
            if self._durable:
                self._dirty.add(key)
            effects = self.engine.apply_outcome(profile, outcome, now)
            if effects:
                self._execute(key, effects, now, outcome.get("event_ts"))
        self._metrics.outcomes(per_outcome)
        return len(outcomes)

    async def fire_timers(self, now: float | None = None) -> int:
        """Log and run every timer due by `now`; returns how many moved a journey on."""
        due = self.timers.pop_due(self.clock() if now is None else now, TIMER_ROUND)
        self._full_timer_round = len(due) == TIMER_ROUND
        if not due:
            return 0
        blob = _pack([[at, key, journey, instance, node] for at, (key, journey, instance, node) in due])
        return int(await self._commit(TIMERS, blob))

    def _apply_timers(self, blob: bytes, now: float) -> int:
        fired = 0
        latest_due = now
        lateness = self.timer_lateness
        for due, key, journey, instance, node in msgpack.unpackb(blob, raw=False):
            lateness.record_value(min(3_600_000_000, max(1, round((now - due) * 1e6))))
            latest_due = min(latest_due, due)
            profile = self.profiles.get(key)
            if profile is None:
                continue
            effects = self.engine.apply_timer(profile, journey, instance, node, due, now)
            if effects:
                fired += 1
                if self._durable:
                    self._dirty.add(key)
                # A message sent when a wait ends is late from its due time, not its event's.
                self._execute(key, effects, now, due)
        self.counts["timers_fired"] += fired
        self._metrics.timers_fired(now - latest_due)
        return fired

    def _unpop_timers(self, blob: bytes) -> None:
        """Timers whose log write failed go back on the heap to be tried again."""
        for due, key, journey, instance, node in msgpack.unpackb(blob, raw=False):
            self.timers.push(due, (key, journey, instance, node))

    # -- effects ----------------------------------------------------------------------

    def _execute(self, key: str, effects: list[Any], now: float, event_ts: float | None) -> None:
        for effect in effects:
            kind = type(effect)
            if kind is StepEvent:
                self.steps[(effect.journey, effect.node, effect.kind)] += 1
                self.counts["decisions"] += 1
                self.recent_steps.append((key, now, effect))
            elif kind is ScheduleTimer:
                self.timers.push(effect.due, (key, effect.journey, effect.instance, effect.node))
            elif kind is Send:
                gateway = self._gateway_of.get(effect.channel) or gateway_name(effect.channel)
                self.pending_sends.setdefault(gateway, []).append(
                    {
                        "id": effect.message_id,
                        "channel": effect.channel,
                        "shard": self.index,
                        "profile": key,
                        "journey": effect.journey,
                        "instance": effect.instance,
                        "node": effect.node,
                        "payload": effect.payload,
                        "created": now,
                        "deadline": effect.deadline,
                        "event_ts": event_ts,
                    }
                )
            else:
                raise TypeError(f"unknown effect {kind.__name__}")

    async def flush_sends(self) -> None:
        """Hand gathered sends to their gateway actors: one call in flight per actor (which
        may serve several channels), the rest coalesced into the next call (see Coalescer)."""
        if not self.pending_sends:
            return
        pending, self.pending_sends = self.pending_sends, {}
        for gateway, requests in pending.items():
            self.counts["sends"] += len(requests)
            coalescer = self._senders.get(gateway)
            if coalescer is None:
                coalescer = self._senders[gateway] = Coalescer(
                    f"{self.name}->{gateway}",
                    partial(self._submit_sends, gateway),
                    min_interval=self.runtime.send_flush.total_seconds(),
                )
            # Refused sends (gateway unreachable for long) end on their action's timeout.
            self.counts["sends_refused"] += coalescer.add(requests)

    async def _submit_sends(self, gateway: str, requests: list[SendRequest]) -> float:
        """One call to a gateway actor; returns how long the next call may wait.

        Half the backlog the actor answers (the shortest of its channels'): its queues
        still hold that much work when the next sends arrive, so holding them back delays
        no delivery (see Coalescer). The answer may carry outcomes for this shard (the
        gateway saves a call of its own): they are applied as if `deliver_outcomes` had
        been called, before the next call goes."""
        answer = await self.peers.submit_sends(gateway, requests, self.index)
        outcomes = answer.get("outcomes")
        if outcomes:
            self.counts["outcome_batches_on_send_answers"] += 1
            await self.deliver_outcomes(outcomes)
        return float(answer.get("backlog_s") or 0.0) / 2

    async def drain_sends(self) -> None:
        await self.flush_sends()
        for coalescer in list(self._senders.values()):
            await coalescer.drain()

    # -- timers -----------------------------------------------------------------------

    def _ensure_timer_task(self) -> None:
        if self._timer_task is None and self._start_timers:
            self._timer_task = asyncio.get_running_loop().create_task(self._timer_loop())
            self._stalls.start()

    async def _timer_loop(self) -> None:
        tick = self.runtime.timer_tick.total_seconds()
        settled = time.monotonic()
        while True:
            # A round that popped a full round of timers may have left due ones behind: go on at once.
            await asyncio.sleep(0 if self._full_timer_round else tick)
            try:
                self._expire_held(HELD_BATCH_TIMEOUT)
                await self.fire_timers()
                await self.flush_sends()
                if self._snapshot_due():
                    self._start_snapshot()
                if self._passivation_due():
                    self._passivating = asyncio.get_running_loop().create_task(self.passivate_idle())
                self._metrics.batch(0, 0, self._drain_step_deltas())
                self._metrics.gauges(len(self.profiles), len(self.timers), self.profiles.passivated)
                if time.monotonic() - settled >= GC_SETTLE_SECONDS:
                    settled = time.monotonic()
                    settle_gc()
            except Exception:  # a control loop logs and goes on; it must not die
                log.exception("%s: timer loop error", self.name)

    # -- passivation ------------------------------------------------------------------

    def _passivation_due(self) -> bool:
        if self._passivate_after is None or (self._passivating is not None and not self._passivating.done()):
            return False
        return time.monotonic() - self._last_sweep >= self._passivate_after

    async def passivate_idle(self) -> int:
        """Pack the profiles untouched since the previous call; returns how many.

        Slice by slice, so inputs keep being applied between slices; a profile touched
        meanwhile is skipped (see ProfileTable).
        """
        self._last_sweep = time.monotonic()
        keys = self.profiles.idle_keys()
        packed = 0
        for start in range(0, len(keys), SNAPSHOT_SLICE):
            evictable = self._evictable if self._may_evict_now() else None
            packed += self.profiles.passivate(keys[start : start + SNAPSHOT_SLICE], evictable)
            await asyncio.sleep(0)
        if self._may_evict_now():
            packed += self.profiles.evict_later(self._evictable)
        # An evicted profile held no instance, so its timers are stale; once they are a
        # quarter of the queue, drop them rather than keep them (and their keys) until due.
        evicted = self.profiles.evictions - self._evictions_at_compaction
        if evicted * 2 > len(self.timers) // 4:  # about two timers per profile left stale
            profiles = self.profiles
            self.timers.compact(lambda entry: entry[1] in profiles)
            self._evictions_at_compaction = self.profiles.evictions
        return packed

    def _may_evict_now(self) -> bool:
        # Not while a snapshot is writing (a profile it has not written yet is no longer
        # in _dirty) nor while a log group is in flight (its missing keys were looked up
        # before its write; a profile evicted since would be applied as a new one).
        return self._evict and not self._snapshotting and self._writer is None

    def _evictable(self, key: str) -> bool:
        return key not in self._dirty

    def _expire_held(self, max_age: float) -> None:
        """A batch whose predecessor never came (its sender failed) is refused, not kept."""
        now = self.clock()
        for sender, held in list(self._held.items()):
            for seq, (_, future, since) in list(held.items()):
                if now - since > max_age:
                    del held[seq]
                    if not future.done():
                        future.set_exception(RuntimeError(f"batch {seq} of {sender} arrived after a gap"))
            if not held:
                del self._held[sender]

    _reported_steps: Counter[tuple[str, str, str]] | None = None

    def _drain_step_deltas(self) -> Counter[tuple[str, str, str]]:
        last = self._reported_steps or Counter()
        delta = self.steps - last
        self._reported_steps = Counter(self.steps)
        return delta

    # -- queries and control ----------------------------------------------------------

    async def ready(self) -> str:
        self._ensure_timer_task()
        return self.name

    async def wire_endpoint(self) -> dict[str, Any] | None:
        """Where ingresses and gateways reach this shard's direct stream (actors/wire.py)."""
        return await offer_stream(self._stream, self.runtime.direct_streams)

    async def connect_peers(self) -> list[str]:
        """Reach every gateway actor once, at start (see Peers.connect); returns the ones
        not reached."""
        return await self.peers.connect(gateways=self.catalog.config.gateway_hosts())

    async def get_profile(self, key: str) -> dict[str, Any] | None:
        profile = self.profiles.peek(key)
        if profile is None and self.profiles.evictions:
            rows = await self._io(self.store.load_profiles, [key])
            profile = msgpack.unpackb(rows[0][1], raw=False) if rows else None
        if profile is None:
            return None
        return {
            "key": profile["key"],
            "identities": profile["ids"],
            "attributes": {k: v for k, v in profile["attrs"].items() if k != "identities"},
            "journeys": [
                {
                    "journey": i["j"],
                    "version": i["v"],
                    "instance": i["id"],
                    "node": i["n"],
                    "status": i["st"],
                    "entered_at": i["t0"],
                    "due": i["due"],
                }
                for i in profile["journeys"].values()
            ],
            "history": {j: {"entries": h[0], "last_exit": h[1]} for j, h in profile["hist"].items()},
            "created": profile["created"],
            "updated": profile["updated"],
        }

    async def advance_clock(self, seconds: float) -> float:
        """Move this shard's clock forward (test mode and operators' time travel)."""
        self.clock.advance(seconds)
        await self.fire_timers()
        await self.drain_sends()
        return float(self.clock())

    async def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "profiles": len(self.profiles),
            "profiles_passivated": self.profiles.passivated,
            "pending_timers": len(self.timers),
            "active_instances": dict(self.profiles.instance_counts()),
            "events_applied": self.counts["events"],
            "duplicates": self.counts["duplicates"],
            "decisions": self.counts["decisions"],
            "sends": self.counts["sends"],
            "outcome_batches_on_send_answers": self.counts["outcome_batches_on_send_answers"],
            "timers_fired": self.counts["timers_fired"],
            "timer_lateness_ms": status_percentiles(self.timer_lateness),
            "stalls": self._stalls.summary(),
            "storage": {
                "backend": type(self.store).__name__,
                "applied_seq": self._applied_seq,
                "log_bytes": self._log_bytes,
                "dirty_profiles": len(self._dirty),
                "snapshots": self.counts["snapshots"],
            },
            "passivation": {
                "after_s": self._passivate_after,
                "active": self.profiles.active,
                "passivated": self.profiles.passivated,
                "activations": self.profiles.activations,
                "passivations": self.profiles.passivations,
                "evictions": self.profiles.evictions,
                "reloads": self._reloads,
            },
            "recovery": self.recovery,
            # Calls to each gateway actor so far, and how many the gateway answered with a hold
            # (a backlog to work through): ~60 us of CPU on each side on a direct stream,
            # ~1 ms as a Ray call.
            "gateway_calls": {gw: {"calls": c.calls, "held": c.held} for gw, c in sorted(self._senders.items())},
            # Calls served on the direct stream (batches, outcomes), and connections refused.
            "stream": self._stream.summary(),
            "steps": [[j, n, k, c] for (j, n, k), c in sorted(self.steps.items())],
            "outcomes": [[ch, o, c] for (ch, o), c in sorted(self.outcomes.items())],
            "clock": self.clock(),
        }

    async def recent_step_events(self, limit: int = 100) -> list[dict[str, Any]]:
        return [{"profile": key, "at": at, **step._asdict()} for key, at, step in list(self.recent_steps)[-limit:]]
