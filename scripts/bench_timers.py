"""1,000,000 pending timers: memory and firing accuracy of a profile shard's wait timers.

Target (the issue): "1,000,000 pending timers fire within 1 s of their due time."

One process, no Ray: a `ProfileShard` on the memory store, with its timer loop running on
the real clock (`start_timers=True`, tick `runtime.timer_tick`), inside an asyncio loop.
The config has one journey: entry on `registration` (the demo's sign-up definition), a
`wait` of W seconds, then `end` (no channel, so nothing is sent).

Phase 1, memory: N profiles each enter the journey once. Their events are the traffic
generator's registration event re-keyed per profile (own `_id`, identities, email), then
validated, routed and packed by the ingress's functions (`validate_events`,
`EventRouter.route`, msgpack) and applied with `shard._apply_records`, in batches of
`--batch`, yielding to the event loop between batches so the timer loop runs as it would
between calls. Only the JSON encode/parse of the ceiling (itinerary/bench.py) is skipped:
it is the ingress's work, not the shard's, and halves the feed rate. Process RSS is read
before and after: bytes per profile (its dict, its waiting instance, its timer). The
timer's own share is measured apart: the exclusive bytes of a sample of the shard's real
heap entries (what is not shared with the instance), and N entries pushed into a fresh
`TimerQueue` the same way the shard pushes them (strings and due times created
beforehand, as in the shard they belong to the profile), by tracemalloc and by RSS.

Phase 2, firing accuracy: each timer falls due W seconds after its profile entered, so
timers fall due at the rate profiles were fed. With the default W = 60 s and a feed of
1M taking less than that, feeding has ended before the first timer is due (the run says
whether feeding and firing overlapped; a smaller `--wait` makes them overlap, as in
production where events keep coming while timers fire). The benchmark waits until every
timer fired, then reads the shard's lateness histogram (`shard.timer_lateness`: firing
time minus due time) and reports p50/p99/p99.9/max and the share fired within 1 s. While
timers fire it samples the backlog (timers due but not fired) and the CPU of this and
of other processes (to tell whether the run was disturbed). To explain late timers it
also records garbage-collector pauses, event-loop stalls, the longest feed batch and each
round of fired timers (`Probe`; it wraps `_apply_timers` on the shard instance), and at
the end times one full `gc.collect()` with the N profiles still held.

Usage: `python scripts/bench_timers.py [--profiles 1000000] [--wait 60] [--batch 1000]
[--out results/bench_timers.json]`; `run(profiles, wait_s)` returns the results as a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import yaml
from rich.console import Console
from rich.table import Table

from itinerary.actors.peers import LocalPeers
from itinerary.actors.profile_shard import ProfileShard
from itinerary.aio import run as aio_run
from itinerary.benchio import write_report
from itinerary.catalog import Catalog
from itinerary.config.app import AppConfig
from itinerary.engine.ingest import validate_events
from itinerary.engine.routing import RoutingTable
from itinerary.engine.timers import TimerQueue
from itinerary.router import EventRouter, pack_batch
from itinerary.store.memory import MemoryShardStore
from itinerary.traffic import TrafficGenerator, iso

REPO = Path(__file__).resolve().parents[1]
JOURNEY = "signup-wait"
WAIT_NODE = "pause"
SAMPLE = 5_000  # heap entries and profiles inspected one by one
WITHIN_S = 1.0  # the target: fired within this long of the due time
POP_LIMIT = TimerQueue.pop_due.__defaults__[0] if TimerQueue.pop_due.__defaults__ else 0  # timers per round

CONFIG = """
runtime:
  shards: 1
  partitions: 4096
events:
  registration:          # as in config/examples/demo.yaml
    event_type: web.formFilledOut
    rule: "event.web.webPageDetails.name == 'Registration'"
    namespace: Email
    profile_fields:
      firstName: event.person.name.firstName
      lastName: event.person.name.lastName
      email: event.personalEmail.address
journeys:
  - id: signup-wait
    name: Wait after sign-up
    nodes:
      start: {type: entry, event: registration, next: pause}
      pause: {type: wait, duration: PT60S, next: done}
      done: {type: end}
"""


def make_app(wait_s: float) -> AppConfig:
    """The benchmark's deployment: one shard, the sign-up event, entry -> wait W -> end."""
    data = yaml.safe_load(CONFIG)
    data["journeys"][0]["nodes"][WAIT_NODE]["duration"] = f"PT{wait_s:g}S"
    return AppConfig.model_validate(data)


class Feeder:
    """Registration events for profiles p, p+1, ..., as the routed records a shard receives."""

    def __init__(self, app: AppConfig) -> None:
        self.generator = TrafficGenerator(profiles=1, seed=1)
        self.template = self.generator.registration(0, time.time())
        self.router = EventRouter(Catalog.build(app), RoutingTable(app.runtime.partitions, app.runtime.shards))
        self.namespace_codes = app.runtime.identity.namespace_codes

    def events(self, first: int, count: int, ts: float) -> list[dict[str, Any]]:
        template, generator, stamp = self.template, self.generator, iso(ts)
        out = []
        for p in range(first, first + count):
            event = dict(template)
            event["_id"] = f"{p:08x}-b7e5-4c1d-9a0e-{p:012x}"  # a UUID's length, as real ids
            event["timestamp"] = stamp
            event["identityMap"] = generator.identity_map(p)
            event["personalEmail"] = {"address": generator.email(p)}
            out.append(event)
        return out

    def blobs(self, first: int, count: int) -> list[bytes]:
        """Validated, routed and packed as an ingress does (one blob per shard: here one)."""
        now = time.time()
        valid, rejected = validate_events(self.events(first, count, now), now=now, namespace_codes=self.namespace_codes)
        per_shard, unrouted = self.router.route(valid, now)
        if rejected or unrouted:
            raise RuntimeError(f"events refused: {(rejected or unrouted)[:2]}")
        return [pack_batch(records) for records in per_shard.values()]


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


class CpuMeter:
    """CPU seconds used by this process and by every other process, between two reads."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.wall, self.mine, self.total = self._read()

    def _read(self) -> tuple[float, float, float]:
        mine = self.me.cpu_times()
        system = psutil.cpu_times()
        busy = system.user + system.system + getattr(system, "nice", 0.0) + getattr(system, "irq", 0.0)
        busy += getattr(system, "softirq", 0.0) + getattr(system, "steal", 0.0)
        return time.monotonic(), mine.user + mine.system, busy

    def read(self) -> dict[str, float]:
        wall, mine, total = self._read()
        seconds = max(wall - self.wall, 1e-9)
        return {
            "seconds": seconds,
            "cpu_s": mine - self.mine,
            "cores": (mine - self.mine) / seconds,
            "other_cores": max(0.0, (total - self.total) - (mine - self.mine)) / seconds,
        }


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of `obj` and everything it holds (dicts, lists, tuples), each object once."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set):
        size += sum(deep_size(v, seen) for v in obj)
    return size


async def inspect_sample(shard: ProfileShard) -> dict[str, Any]:
    """Look at a sample of the real heap entries and their profiles, one by one (yielding
    to the loop every few hundred, so that timers falling due meanwhile are not held up)."""
    heap: list[tuple[Any, ...]] = shard.timers._heap  # flat entries: (due, key, journey, instance, node)
    profiles = shard.profiles
    peek: Callable[[str], dict[str, Any] | None] = getattr(profiles, "peek", profiles.get)
    step = max(1, len(heap) // SAMPLE)
    entries = heap[::step][:SAMPLE]
    exclusive = shared_due = shared_key = shared_instance = 0
    profile_bytes = instance_bytes = 0
    seen: set[int] = set()  # across the sample: what profiles share (interned names) counts once
    for index, entry in enumerate(entries):
        if index % 250 == 0:
            await asyncio.sleep(0)
        due, key, journey, instance_id, _node = entry
        profile = peek(key)
        instance = profile["journeys"].get(journey) if profile else None
        size = sys.getsizeof(entry) + 8  # + its list slot
        if instance is not None and instance["due"] is due:
            shared_due += 1
        else:
            size += sys.getsizeof(due)
        if profile is not None and profile["key"] is key:
            shared_key += 1
        else:
            size += sys.getsizeof(key)
        if instance is not None and instance["id"] is instance_id:
            shared_instance += 1
        else:
            size += sys.getsizeof(instance_id)
        exclusive += size
        if profile is not None and instance is not None:
            instance_bytes += deep_size(instance, seen)
            profile_bytes += deep_size(profile, seen)  # the rest of it: the instance is seen
    n = max(1, len(entries))
    return {
        "entries": len(entries),
        "heap_entry_exclusive_bytes": exclusive / n,
        "shared_with_instance": {"due": shared_due / n, "key": shared_key / n, "instance_id": shared_instance / n},
        "profile_deep_bytes": (profile_bytes + instance_bytes) / n,
        "instance_deep_bytes": instance_bytes / n,
        "example_entry": repr(entries[0]) if entries else None,
    }


def synthetic_heap(n: int) -> dict[str, float]:
    """N timers pushed into a fresh TimerQueue as the shard pushes them: the payload
    strings and the due floats exist beforehand (in the shard they belong to the profile
    and its instance), so what is measured is what the heap itself adds."""
    t0 = time.time()
    keys = [f"Email:user{p}@example.com" for p in range(n)]
    instances = [f"{key}/{JOURNEY}/1" for key in keys]
    dues = [t0 + 60.0 + p * 1e-5 for p in range(n)]
    out: dict[str, float] = {}
    gc.collect()
    before = rss()
    queue: TimerQueue[tuple[str, str, str, str]] = TimerQueue()
    for key, instance, due in zip(keys, instances, dues, strict=True):
        queue.push(due, (key, JOURNEY, instance, WAIT_NODE))
    out["rss_bytes_per_timer"] = (rss() - before) / n
    del queue
    gc.collect()
    tracemalloc.start()
    queue = TimerQueue()
    for key, instance, due in zip(keys, instances, dues, strict=True):
        queue.push(due, (key, JOURNEY, instance, WAIT_NODE))
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out["traced_bytes_per_timer"] = traced / n
    out["list_bytes_per_timer"] = sys.getsizeof(queue._heap) / n
    return out


class Probe:
    """Where the time goes while timers fire, for explaining late ones: garbage collector
    pauses, event-loop stalls, the feed's batches and each round of fired timers.

    `shard._apply_timers` is wrapped on the instance (the class is untouched) to time each
    round; the loop-lag sampler sleeps `LAG_PERIOD` and records how much later it woke.
    """

    LAG_PERIOD = 0.05
    STALL = 0.2  # loop stalls and GC pauses longer than this are listed with their times

    def __init__(self, shard: ProfileShard) -> None:
        self.shard = shard
        self.t0 = time.time()
        self.gc: dict[int, list[float]] = {0: [], 1: [], 2: []}  # generation -> pause seconds
        self.long_gc: list[tuple[float, int, float]] = []  # (time, generation, seconds)
        self.stalls: list[tuple[float, float]] = []  # (time, seconds late)
        self.max_lag = 0.0
        self.rounds: list[tuple[float, int, float]] = []  # (time, timers, seconds) per round
        self.batch_max = 0.0
        self.samples: list[tuple[float, int, int]] = []  # (time, timers fired, pending)
        self._gc_started = 0.0
        self._task: asyncio.Task[None] | None = None
        apply = shard._apply_timers
        histogram = shard.timer_lateness

        def timed_apply(blob: bytes, now: float) -> int:
            before, started = histogram.get_total_count(), time.perf_counter()
            try:
                return apply(blob, now)
            finally:
                self.rounds.append((time.time(), histogram.get_total_count() - before, time.perf_counter() - started))

        shard._apply_timers = timed_apply  # type: ignore[method-assign]

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        pause = time.perf_counter() - self._gc_started
        self.gc[info["generation"]].append(pause)
        if pause >= self.STALL:
            self.long_gc.append((time.time(), info["generation"], pause))

    async def _lag(self) -> None:
        period, every, n = self.LAG_PERIOD, max(1, round(0.25 / self.LAG_PERIOD)), 0
        shard = self.shard
        while True:
            started = time.perf_counter()
            await asyncio.sleep(period)
            lag = time.perf_counter() - started - period
            self.max_lag = max(self.max_lag, lag)
            if lag >= self.STALL:
                self.stalls.append((time.time(), lag))
            n += 1
            if n % every == 0:
                self.samples.append((time.time(), shard.counts["timers_fired"], len(shard.timers)))

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.get_running_loop().create_task(self._lag())

    def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()

    def report(self, first_due: float, limit: int) -> dict[str, Any]:
        """Times are seconds after the first timer fell due."""
        rounds = [r for r in self.rounds if r[1]]
        slowest = max(rounds, key=lambda r: r[2], default=(first_due, 0, 0.0))
        largest = max((r[1] for r in rounds), default=0)
        return {
            "gc": {
                str(gen): {"count": len(p), "total_s": sum(p), "max_s": max(p, default=0.0)}
                for gen, p in self.gc.items()
            },
            "long_gc": [[round(t - first_due, 2), g, round(s, 3)] for t, g, s in self.long_gc],
            "loop_max_lag_s": self.max_lag,
            "loop_stalls": [[round(t - first_due, 2), round(s, 3)] for t, s in self.stalls],
            "feed_batch_max_s": self.batch_max,
            "fire_rounds": len(rounds),
            "fire_round_max_timers": largest,
            "fire_rounds_at_limit": sum(1 for r in rounds if r[1] >= limit),
            "fire_round_max_s": slowest[2],
            "fire_round_max_at_s": round(slowest[0] - first_due, 2),
            "fire_us_per_timer": sum(r[2] for r in rounds) / max(1, sum(r[1] for r in rounds)) * 1e6,
        }


def lateness_summary(shard: ProfileShard) -> dict[str, Any]:
    histogram = shard.timer_lateness
    count = histogram.get_total_count()
    within = 0
    for item in histogram.get_recorded_iterator():
        if item.value_iterated_to <= WITHIN_S * 1e6:  # the bucket's highest value: conservative
            within += item.count_at_value_iterated_to
    return {
        "count": count,
        "p50_ms": histogram.get_value_at_percentile(50.0) / 1000,
        "p99_ms": histogram.get_value_at_percentile(99.0) / 1000,
        "p99.9_ms": histogram.get_value_at_percentile(99.9) / 1000,
        "max_ms": histogram.get_max_value() / 1000,
        "mean_ms": histogram.get_mean_value() / 1000,
        "within_1s": within / count if count else 0.0,
    }


async def _bench(profiles: int, wait_s: float, batch: int, console: Console | None) -> dict[str, Any]:
    say = console.print if console is not None else (lambda *_: None)
    app = make_app(wait_s)
    feeder = Feeder(app)
    shard = ProfileShard(0, app, peers=LocalPeers(), start_timers=True, store=MemoryShardStore())
    await shard.ready()  # starts the timer loop
    feeder.blobs(10**12, 10)  # warm the ingress-side code paths (these blobs are not applied)
    gc.collect()
    rss0 = rss()

    # -- phase 1: feed -----------------------------------------------------------------
    say(f"phase 1: feeding {profiles:,} sign-ups in batches of {batch:,} (timers due {wait_s:g} s after each)...")
    fed_at: list[float] = []  # shard clock when each batch was applied
    fed_total: list[int] = []  # profiles entered up to and including that batch
    ingress_s = shard_s = 0.0
    cpu = CpuMeter()
    started = time.perf_counter()
    probe = Probe(shard)
    probe.start()
    entered = 0
    for first in range(0, profiles, batch):
        t0 = time.perf_counter()
        blobs = feeder.blobs(first, min(batch, profiles - first))
        t1 = time.perf_counter()
        fed_at.append(shard.clock())
        for blob in blobs:
            entered += shard._apply_records(blob)
        fed_total.append(entered)
        t2 = time.perf_counter()
        ingress_s += t1 - t0
        shard_s += t2 - t1
        probe.batch_max = max(probe.batch_max, t2 - t0)
        await asyncio.sleep(0)  # let the timer loop in, as between two calls to the actor
    feed_seconds = time.perf_counter() - started
    feed_cpu = cpu.read()
    pending_after_feed = len(shard.timers)
    fired_during_feed = shard.counts["timers_fired"]
    rss1 = rss()
    first_due = fed_at[0] + wait_s
    last_due = fed_at[-1] + wait_s
    overlap = fired_during_feed > 0 or first_due < time.time()
    sample = await inspect_sample(shard)
    shard_kind = type(shard.profiles).__name__
    passivated = getattr(shard.profiles, "passivated", None)
    say(
        f"  fed in {feed_seconds:.1f} s ({entered / feed_seconds:,.0f}/s); RSS +{(rss1 - rss0) / 2**20:,.0f} MiB; "
        f"{pending_after_feed:,} timers pending; first due in {first_due - time.time():.1f} s"
    )

    # -- phase 2: fire -----------------------------------------------------------------
    say(f"phase 2: waiting for the timers to fire (last due in {last_due - time.time():.1f} s)...")
    deadline = last_due + max(60.0, wait_s)
    # Memory as the first timer falls due: profiles idle for long may have been passivated
    # by then (runtime.profile.passivate_after), which a long wait shows.
    if first_due - time.time() > 1.0:
        await asyncio.sleep(first_due - time.time() - 0.5)
        rss_due = rss()
        passivated_due = getattr(shard.profiles, "passivated", None)
    else:
        rss_due, passivated_due = rss1, passivated
    cpu = CpuMeter()
    while (len(shard.timers) or shard.counts["timers_fired"] < profiles) and time.time() < deadline:
        await asyncio.sleep(0.1)
    fire_end = time.time()
    fire_cpu = cpu.read()
    probe.stop()
    complete = len(shard.timers) == 0 and shard.counts["timers_fired"] >= profiles
    rss2 = rss()
    status = await shard.status()
    lateness = lateness_summary(shard)
    if shard._timer_task is not None:
        shard._timer_task.cancel()
    # What one full collection would cost this shard now (the profiles are still held,
    # their instances have ended): the pause a generation-2 collection adds to every
    # timer due meanwhile. The thresholds of actors/tuning.py make it rare, not impossible.
    started_gc = time.perf_counter()
    gc.collect()
    full_gc_s = time.perf_counter() - started_gc

    # backlog: timers due (entered more than W ago) but not fired yet, per sample
    backlog_max = 0
    backlog_at = 0.0
    for at, fired, _pending in probe.samples:
        due_by = bisect.bisect_right(fed_at, at - wait_s)
        due = fed_total[due_by - 1] if due_by else 0
        if due - fired > backlog_max:
            backlog_max, backlog_at = due - fired, at - first_due
    fired = shard.counts["timers_fired"]
    result: dict[str, Any] = {
        "profiles": profiles,
        "wait_s": wait_s,
        "batch": batch,
        "timer_tick_ms": app.runtime.timer_tick.total_seconds() * 1000,
        "shard_profiles_kind": shard_kind,
        "feed": {
            "method": "template registration events -> validate_events -> EventRouter.route -> msgpack "
            "-> ProfileShard._apply_records (no JSON)",
            "seconds": feed_seconds,
            "events_per_s": entered / feed_seconds,
            "shard_apply_s": shard_s,
            "shard_events_per_s": entered / shard_s if shard_s else 0.0,
            "ingress_side_s": ingress_s,
            "entered": entered,
            "cpu": feed_cpu,
        },
        "memory": {
            "rss_before": rss0,
            "rss_after_feed": rss1,
            "rss_after_firing": rss2,
            "bytes_per_profile_and_timer": (rss1 - rss0) / max(1, profiles),
            "rss_at_first_due": rss_due,
            "bytes_per_profile_and_timer_at_first_due": (rss_due - rss0) / max(1, profiles),
            "passivated_at_first_due": passivated_due,
            "pending_timers_after_feed": pending_after_feed,
            "passivated_profiles": passivated,
            "sample": sample,
        },
        "firing": {
            "complete": complete,
            "timers_fired": fired,
            "pending": len(shard.timers),
            "overlapped_feeding": overlap,
            "fired_during_feed": fired_during_feed,
            "first_due_minus_feed_end_s": first_due - fed_at[-1],
            "due_span_s": last_due - first_due,
            "seconds_after_last_due": fire_end - last_due,
            "backlog_max": backlog_max,
            "backlog_max_at_s": backlog_at,
            "cpu": fire_cpu,
            "cpu_us_per_timer": fire_cpu["cpu_s"] / max(1, fired - fired_during_feed) * 1e6,
            "lateness": lateness,
            "status_timer_lateness_ms": status.get("timer_lateness_ms"),
            "probe": probe.report(first_due, POP_LIMIT),
            "full_gc_after_firing_s": full_gc_s,
        },
    }
    return result


def run(profiles: int, wait_s: float, batch: int = 1000, console: Console | None = None) -> dict[str, Any]:
    """Both phases plus the synthetic heap measurement; returns everything measured."""
    result = aio_run(_bench(profiles, wait_s, batch, console))
    gc.collect()
    if console is not None:
        console.print(f"measuring {profiles:,} bare heap entries (RSS, then tracemalloc)...")
    # In a fresh process: here the freed shard's memory would be reused and hide the growth.
    child = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--heap-only", str(profiles)],
        capture_output=True,
        text=True,
        check=True,
    )
    result["memory"]["heap"] = json.loads(child.stdout)
    return result


def tables(result: dict[str, Any]) -> list[Table]:
    memory, feed, firing = result["memory"], result["feed"], result["firing"]
    sample, heap, late = memory["sample"], memory["heap"], firing["lateness"]
    mem = Table(
        title=f"Timer benchmark: {result['profiles']:,} profiles, wait {result['wait_s']:g} s, "
        f"tick {result['timer_tick_ms']:g} ms, one shard (memory store), real clock"
    )
    mem.add_column("memory / feed", justify="left")
    mem.add_column("value", justify="right")
    mem.add_row(
        "RSS before -> after feed",
        f"{memory['rss_before'] / 2**20:,.0f} -> {memory['rss_after_feed'] / 2**20:,.0f} MiB",
    )
    mem.add_row("bytes per profile + waiting instance + timer (RSS)", f"{memory['bytes_per_profile_and_timer']:,.0f}")
    if memory["passivated_at_first_due"]:
        mem.add_row(
            f"  the same as the first timer falls due ({memory['passivated_at_first_due']:,} profiles passivated)",
            f"{memory['bytes_per_profile_and_timer_at_first_due']:,.0f}",
        )
    mem.add_row("  profile dict, deep (sample)", f"{sample['profile_deep_bytes']:,.0f}")
    mem.add_row("    of which the journey instance", f"{sample['instance_deep_bytes']:,.0f}")
    mem.add_row(
        "bytes per pending timer: real heap entry, exclusive (sample)", f"{sample['heap_entry_exclusive_bytes']:,.0f}"
    )
    mem.add_row("bytes per pending timer: bare TimerQueue, tracemalloc", f"{heap['traced_bytes_per_timer']:,.0f}")
    mem.add_row("bytes per pending timer: bare TimerQueue, RSS", f"{heap['rss_bytes_per_timer']:,.0f}")
    mem.add_row("feed: events/s (all in this process)", f"{feed['events_per_s']:,.0f}")
    mem.add_row("feed: shard apply only, events/s", f"{feed['shard_events_per_s']:,.0f}")
    mem.add_row("feed: seconds", f"{feed['seconds']:,.1f}")
    fire = Table(title="Firing accuracy (lateness = firing time - due time)")
    fire.add_column("firing", justify="left")
    fire.add_column("value", justify="right")
    fire.add_row("timers fired / expected", f"{firing['timers_fired']:,} / {result['profiles']:,}")
    fire.add_row("fired while feeding (overlap)", f"{firing['fired_during_feed']:,} ({firing['overlapped_feeding']})")
    for key in ("p50_ms", "p99_ms", "p99.9_ms", "max_ms"):
        fire.add_row(f"lateness {key[:-3]}", f"{late[key]:,.1f} ms")
    ok = late["within_1s"] >= 1.0 and firing["complete"]
    fire.add_row("fired within 1 s of due", f"[{'green' if ok else 'red'}]{late['within_1s'] * 100:.3f} %[/]")
    fire.add_row("max backlog (due, not fired)", f"{firing['backlog_max']:,} at +{firing['backlog_max_at_s']:.1f} s")
    fire.add_row("CPU per fired timer", f"{firing['cpu_us_per_timer']:.1f} µs")
    probe = firing["probe"]
    gc_max = max(probe["gc"].values(), key=lambda g: g["max_s"])
    gen2 = probe["gc"]["2"]
    fire.add_row("GC: longest pause; full collections", f"{gc_max['max_s'] * 1000:,.0f} ms; {gen2['count']}")
    fire.add_row(
        "GC: one full collection now (measured after firing)", f"{firing['full_gc_after_firing_s'] * 1000:,.0f} ms"
    )
    fire.add_row("event loop: longest stall", f"{probe['loop_max_lag_s'] * 1000:,.0f} ms")
    fire.add_row("longest feed batch (blocks the loop)", f"{probe['feed_batch_max_s'] * 1000:,.0f} ms")
    fire.add_row(
        "fire rounds: largest; at the pop limit; slowest",
        f"{probe['fire_round_max_timers']:,}; {probe['fire_rounds_at_limit']}; "
        f"{probe['fire_round_max_s'] * 1000:,.0f} ms",
    )
    fire.add_row(
        "other processes' CPU (feed / fire)",
        f"{feed['cpu']['other_cores']:.2f} / {firing['cpu']['other_cores']:.2f} cores",
    )
    return [mem, fire]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--wait", type=float, default=60.0, help="the journey's wait, seconds")
    parser.add_argument("--batch", type=int, default=1000, help="events per batch applied to the shard")
    parser.add_argument("--out", default=str(REPO / "results/bench_timers.json"))
    parser.add_argument("--heap-only", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.heap_only is not None:  # the bare-heap measurement, run in a fresh process by `run`
        print(json.dumps(synthetic_heap(args.heap_only)))
        return 0
    console = Console(width=max(Console().width, 110))
    result = run(args.profiles, args.wait, args.batch, console)
    for table in tables(result):
        console.print(table)
    console.print(f"wrote {write_report(args.out, vars(args), 'result', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
