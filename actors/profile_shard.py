"""ProfileShard: hosts many profiles as virtual actors and executes their journeys' effects.

A shard owns the profiles whose keys hash to its partitions. Events arrive in msgpack
batches from ingresses, outcomes in batches from gateways; timers live in the shard's
heap and are driven by an injected clock. Sends are gathered per channel and leave in one
call per channel per batch. The class is plain Python; `actors.runtime` binds it to Ray.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from functools import partial
from typing import Any

import msgpack

from itinerary.actors.coalescer import Coalescer
from itinerary.actors.metrics import ShardMetrics
from itinerary.actors.names import shard_name
from itinerary.actors.peers import Peers
from itinerary.actors.tuning import tune_gc
from itinerary.catalog import Catalog
from itinerary.clock import SystemClock
from itinerary.config.app import AppConfig
from itinerary.engine.effects import ScheduleTimer, Send, StepEvent
from itinerary.engine.messages import SendRequest
from itinerary.engine.timers import TimerQueue

log = logging.getLogger(__name__)

HELD_BATCH_TIMEOUT = 30.0
TimerKey = tuple[str, str, str, str]  # profile key, journey, instance, node


class ProfileShard:
    """Holds profiles and their journey instances for a range of partitions.

    Per-profile order: batches from one sender carry a sequence number and are applied in
    that order even if they arrive out of order, so events of one profile never overtake.
    """

    def __init__(
        self, index: int, app: AppConfig, peers: Peers | None = None, clock: Any = None, start_timers: bool = True
    ) -> None:
        tune_gc()
        self.index = index
        self.name = shard_name(index)
        self.catalog = Catalog.build(app)
        self.engine = self.catalog.engine()
        self.runtime = app.runtime
        if peers is None:
            from itinerary.actors.peers import RayPeers

            peers = RayPeers(app.runtime.ray_namespace)
        self.peers = peers
        self.clock = clock if clock is not None else SystemClock()
        self.profiles: dict[str, dict[str, Any]] = {}
        self.timers: TimerQueue[TimerKey] = TimerQueue()
        self.pending_sends: dict[str, list[SendRequest]] = {}
        self.steps: Counter[tuple[str, str, str]] = Counter()
        # The last step events, kept as tuples: building a dict per step costs more than the step.
        self.recent_steps: deque[tuple[str, float, StepEvent]] = deque(maxlen=1000)
        self.counts: Counter[str] = Counter()
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self._next_seq: dict[str, int] = {}
        self._held: dict[str, dict[int, tuple[bytes, asyncio.Future[int], float]]] = {}
        self._metrics = ShardMetrics(self.name)
        self._senders: dict[str, Coalescer] = {}
        self._timer_task: asyncio.Task[None] | None = None
        self._start_timers = start_timers

    def __repr__(self) -> str:
        return f"ProfileShard({self.name}, profiles={len(self.profiles)})"

    # -- inputs -----------------------------------------------------------------------

    async def apply_batch(self, sender: str, seq: int, blob: bytes) -> int:
        """Apply a batch of routed records (see itinerary.router.Record); returns how many."""
        self._ensure_timer_task()
        # Senders number their batches from 0 and start a new sender id after any failed
        # call, so a gap here is only ever a reordering in transit.
        expected = self._next_seq.get(sender, 0)
        if seq != expected:
            if seq < expected:
                return 0  # a batch we already applied (a retried call): nothing to do
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._held.setdefault(sender, {})[seq] = (blob, future, self.clock())
            return await future
        applied = self._apply_records(blob)
        self._next_seq[sender] = seq + 1
        held = self._held.get(sender)
        while held and self._next_seq[sender] in held:
            next_blob, next_future, _ = held.pop(self._next_seq[sender])
            next_future.set_result(self._apply_records(next_blob))
            self._next_seq[sender] += 1
        await self.flush_sends()
        return applied

    def _apply_records(self, blob: bytes) -> int:
        records = msgpack.unpackb(blob, raw=False)
        unpack = msgpack.unpackb
        now = self.clock()
        engine = self.engine
        profiles = self.profiles
        applied = duplicates = 0
        payload_events = engine.payload_events
        for key, name, packed, ingest_ts, event_id, identity_map in records:
            profile = profiles.get(key)
            if profile is None:
                profile = profiles[key] = engine.new_profile(key, now)
            if name not in payload_events:
                if engine.observe(profile, event_id, identity_map, now):
                    applied += 1
                else:
                    duplicates += 1
                continue
            effects = engine.apply_event(profile, name, unpack(packed, raw=False), now)
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
        """Outcomes from a gateway resume the journeys that wait for them."""
        self._ensure_timer_task()
        now = self.clock()
        per_outcome: Counter[str] = Counter()
        for outcome in msgpack.unpackb(blob, raw=False):
            per_outcome[outcome["outcome"]] += 1
            self.outcomes[(outcome["channel"], outcome["outcome"])] += 1
            profile = self.profiles.get(outcome["profile"])
            if profile is None:
                continue
            effects = self.engine.apply_outcome(profile, outcome, now)
            if effects:
                self._execute(outcome["profile"], effects, now, outcome.get("event_ts"))
        self._metrics.outcomes(per_outcome)
        await self.flush_sends()

    def fire_timers(self, now: float | None = None) -> int:
        """Run every timer due by `now`; returns how many fired."""
        now = self.clock() if now is None else now
        fired = 0
        for due, (key, journey, instance, node) in self.timers.pop_due(now):
            profile = self.profiles.get(key)
            if profile is None:
                continue
            effects = self.engine.apply_timer(profile, journey, instance, node, due, now)
            if effects:
                fired += 1
                self._execute(key, effects, now, None)
        self.counts["timers_fired"] += fired
        return fired

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
                self.pending_sends.setdefault(effect.channel, []).append(
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
                        "event_ts": event_ts,
                    }
                )
            else:
                raise TypeError(f"unknown effect {kind.__name__}")

    async def flush_sends(self) -> None:
        """Hand gathered sends to their gateways: one call in flight per channel, the rest
        coalesced into the next call (see Coalescer)."""
        if not self.pending_sends:
            return
        pending, self.pending_sends = self.pending_sends, {}
        for channel, requests in pending.items():
            self.counts["sends"] += len(requests)
            coalescer = self._senders.get(channel)
            if coalescer is None:
                coalescer = self._senders[channel] = Coalescer(
                    f"{self.name}->gateway-{channel}", partial(self.peers.submit_sends, channel)
                )
            # Refused sends (gateway unreachable for long) end on their action's timeout.
            self.counts["sends_refused"] += coalescer.add(requests)

    async def drain_sends(self) -> None:
        await self.flush_sends()
        for coalescer in list(self._senders.values()):
            await coalescer.drain()

    # -- timers -----------------------------------------------------------------------

    def _ensure_timer_task(self) -> None:
        if self._timer_task is None and self._start_timers:
            self._timer_task = asyncio.get_running_loop().create_task(self._timer_loop())

    async def _timer_loop(self) -> None:
        tick = self.runtime.timer_tick.total_seconds()
        while True:
            await asyncio.sleep(tick)
            try:
                self._expire_held(HELD_BATCH_TIMEOUT)
                self.fire_timers()
                await self.flush_sends()
                self._metrics.batch(0, 0, self._drain_step_deltas())
                self._metrics.gauges(len(self.profiles), len(self.timers))
            except Exception:  # a control loop logs and goes on; it must not die
                log.exception("%s: timer loop error", self.name)

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

    async def get_profile(self, key: str) -> dict[str, Any] | None:
        profile = self.profiles.get(key)
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
        self.fire_timers()
        await self.drain_sends()
        return float(self.clock())

    async def status(self) -> dict[str, Any]:
        active: Counter[str] = Counter()
        for profile in self.profiles.values():
            for journey_id in profile["journeys"]:
                active[journey_id] += 1
        return {
            "name": self.name,
            "profiles": len(self.profiles),
            "pending_timers": len(self.timers),
            "active_instances": dict(active),
            "events_applied": self.counts["events"],
            "duplicates": self.counts["duplicates"],
            "decisions": self.counts["decisions"],
            "sends": self.counts["sends"],
            "timers_fired": self.counts["timers_fired"],
            "steps": [[j, n, k, c] for (j, n, k), c in sorted(self.steps.items())],
            "outcomes": [[ch, o, c] for (ch, o), c in sorted(self.outcomes.items())],
            "clock": self.clock(),
        }

    async def recent_step_events(self, limit: int = 100) -> list[dict[str, Any]]:
        return [{"profile": key, "at": at, **step._asdict()} for key, at, step in list(self.recent_steps)[-limit:]]
