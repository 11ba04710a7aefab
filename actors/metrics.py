"""Metrics exported through `ray.util.metrics`, so the Ray dashboard and Prometheus see them.

Counters are incremented per batch with the batch's totals, never per event: a metric
call costs microseconds and the hot path handles tens of thousands of events a second.
Outside Ray (unit tests, the single-process benchmark) the same calls do nothing.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

LATENCY_BOUNDARIES = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]


def _ray_metrics() -> Any | None:
    try:
        import ray
        from ray.util import metrics
    except ImportError:  # pragma: no cover - ray is a dependency
        return None
    return metrics if ray.is_initialized() else None


class ShardMetrics:
    """Events applied, journey steps per journey/node/kind, profiles and timers held."""

    def __init__(self, shard: str) -> None:
        m = _ray_metrics()
        self._on = m is not None
        if m is None:
            return
        self._tags = {"shard": shard}
        self._events = m.Counter(
            "itinerary_shard_events_total", "Events applied by a profile shard", tag_keys=("shard", "result")
        )
        self._steps = m.Counter(
            "itinerary_journey_steps_total", "Journey step events", tag_keys=("journey", "node", "kind")
        )
        self._profiles = m.Gauge("itinerary_shard_profiles", "Profiles held by a shard", tag_keys=("shard",))
        self._timers = m.Gauge("itinerary_shard_pending_timers", "Pending timers in a shard", tag_keys=("shard",))
        self._passivated = m.Gauge(
            "itinerary_shard_passivated_profiles",
            "Profiles a shard keeps packed until their next input",
            tag_keys=("shard",),
        )
        self._outcomes = m.Counter(
            "itinerary_shard_outcomes_total", "Message outcomes returned to profiles", tag_keys=("shard", "outcome")
        )
        self._recovery = m.Gauge(
            "itinerary_shard_recovery_seconds",
            "How long the shard took to load its snapshot and replay its log",
            tag_keys=("shard",),
        )
        self._log_entries = m.Counter(
            "itinerary_shard_log_entries_total", "Entries written to the shard's write-ahead log", tag_keys=("shard",)
        )
        self._snapshots = m.Counter("itinerary_shard_snapshots_total", "Snapshots written", tag_keys=("shard",))
        self._timer_lateness = m.Histogram(
            "itinerary_shard_timer_lateness_seconds",
            "How late the most overdue timer of each fired batch was, against its due time",
            boundaries=[0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 60],
            tag_keys=("shard",),
        )

    def batch(self, applied: int, duplicates: int, steps: Counter[tuple[str, str, str]]) -> None:
        if not self._on:
            return
        if applied:
            self._events.inc(applied, tags={**self._tags, "result": "applied"})
        if duplicates:
            self._events.inc(duplicates, tags={**self._tags, "result": "duplicate"})
        for (journey, node, kind), n in steps.items():
            self._steps.inc(n, tags={"journey": journey, "node": node, "kind": kind})

    def outcomes(self, counts: Counter[str]) -> None:
        if self._on:
            for outcome, n in counts.items():
                self._outcomes.inc(n, tags={**self._tags, "outcome": outcome})

    def recovered(self, seconds: float) -> None:
        if self._on:
            self._recovery.set(seconds, tags=self._tags)

    def logged(self, entries: int) -> None:
        if self._on:
            self._log_entries.inc(entries, tags=self._tags)

    def snapshot(self) -> None:
        if self._on:
            self._snapshots.inc(1, tags=self._tags)

    def timers_fired(self, worst_lateness: float) -> None:
        if self._on:
            self._timer_lateness.observe(max(0.0, worst_lateness), tags=self._tags)

    def gauges(self, profiles: int, timers: int, passivated: int) -> None:
        if self._on:
            self._profiles.set(profiles, tags=self._tags)
            self._timers.set(timers, tags=self._tags)
            self._passivated.set(passivated, tags=self._tags)


STALL_BOUNDARIES = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0]


class StallMetrics:
    """How long an actor's event loop could not run: loop lag and collector pauses."""

    def __init__(self, actor: str) -> None:
        m = _ray_metrics()
        self._on = m is not None
        if m is None:
            return
        self._tags = {"actor": actor}
        self._lag = m.Histogram(
            "itinerary_loop_lag_seconds",
            "How much later than asked an actor's event loop woke a sleeping task (sampled every 100 ms)",
            boundaries=STALL_BOUNDARIES,
            tag_keys=("actor",),
        )
        self._gc = m.Histogram(
            "itinerary_gc_pause_seconds",
            "How long each pass of an actor's garbage collector held the process",
            boundaries=STALL_BOUNDARIES,
            tag_keys=("actor",),
        )

    def loop_lag(self, seconds: float) -> None:
        if self._on:
            self._lag.observe(seconds, tags=self._tags)

    def gc_pause(self, seconds: float) -> None:
        if self._on:
            self._gc.observe(seconds, tags=self._tags)


class IngressMetrics:
    """Events accepted and rejected at the edge, request latency and queued events."""

    def __init__(self, ingress: str) -> None:
        m = _ray_metrics()
        self._on = m is not None
        if m is None:
            return
        self._tags = {"ingress": ingress}
        self._events = m.Counter(
            "itinerary_ingress_events_total", "Events received at the HTTP edge", tag_keys=("ingress", "result")
        )
        self._requests = m.Counter(
            "itinerary_ingress_requests_total", "HTTP requests by status", tag_keys=("ingress", "status")
        )
        self._fast = m.Counter(
            "itinerary_ingress_fast_path_requests_total",
            "Requests whose JSON body the compiled fast path read (runtime.ingress.fast_json)",
            tag_keys=("ingress",),
        )
        self._latency = m.Histogram(
            "itinerary_ingest_latency_seconds",
            "POST /v1/events latency",
            boundaries=LATENCY_BOUNDARIES,
            tag_keys=("ingress",),
        )
        self._queued = m.Gauge(
            "itinerary_ingress_queued_events", "Events waiting to reach shards", tag_keys=("ingress",)
        )

    def fast_path(self) -> None:
        """One request whose body the compiled fast path read."""
        if self._on:
            self._fast.inc(1, tags=self._tags)

    def request(self, status: int, accepted: int, rejected: int, seconds: float, queued: int) -> None:
        if not self._on:
            return
        self._requests.inc(1, tags={**self._tags, "status": str(status)})
        if accepted:
            self._events.inc(accepted, tags={**self._tags, "result": "accepted"})
        if rejected:
            self._events.inc(rejected, tags={**self._tags, "result": "rejected"})
        self._latency.observe(seconds, tags=self._tags)
        self._queued.set(queued, tags=self._tags)


class GatewayMetrics:
    """Messages per channel and outcome, queue depth, limiter delay, event-to-delivery latency,
    and the circuit breaker: whether it holds calls back, how often it opened, calls it held.

    Implements the gateway's observer protocol (with `on_circuit`). Outcomes and held calls
    are counted locally and exported at most once a second; histogram samples are capped
    per export so that a channel delivering thousands of messages a second pays a bounded
    cost for its metrics. Breaker state changes are rare and set the gauge at once.
    """

    EXPORT_PERIOD = 1.0
    MAX_SAMPLES = 256  # per histogram and export

    def __init__(self, clock: Any = None) -> None:
        import time

        m = _ray_metrics()
        self._on = m is not None
        self._clock = clock or time.monotonic
        self._last_export = self._clock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._delays: dict[str, list[float]] = {}
        self._latencies: dict[str, list[float]] = {}
        self._short_circuited: Counter[str] = Counter()
        if m is None:
            return
        self._messages = m.Counter(
            "itinerary_messages_total", "Messages by channel and outcome", tag_keys=("channel", "outcome")
        )
        self._depth = m.Gauge("itinerary_gateway_queue_depth", "Messages queued at a gateway", tag_keys=("channel",))
        self._delay = m.Histogram(
            "itinerary_limiter_delay_seconds",
            "Time a message waited for the rate limiter",
            boundaries=LATENCY_BOUNDARIES,
            tag_keys=("channel",),
        )
        self._latency = m.Histogram(
            "itinerary_event_to_delivery_seconds",
            "From event ingest to provider answer",
            boundaries=LATENCY_BOUNDARIES,
            tag_keys=("channel",),
        )
        self._circuit_open = m.Gauge(
            "itinerary_gateway_circuit_open",
            "1 while a channel's circuit breaker holds calls back (open or half-open), else 0",
            tag_keys=("channel",),
        )
        self._circuit_opened = m.Counter(
            "itinerary_gateway_circuit_opened_total", "Times a channel's circuit breaker opened", tag_keys=("channel",)
        )
        self._circuit_short = m.Counter(
            "itinerary_gateway_short_circuited_total",
            "Delivery attempts a channel's circuit breaker held back",
            tag_keys=("channel",),
        )

    def on_outcome(
        self, channel: str, outcome: dict[str, Any], limiter_delay: float, delivery_latency: float | None
    ) -> None:
        if not self._on:
            return
        self._counts[(channel, str(outcome.get("outcome")))] += 1
        if limiter_delay > 0:
            samples = self._delays.setdefault(channel, [])
            if len(samples) < self.MAX_SAMPLES:
                samples.append(limiter_delay)
        if delivery_latency is not None and outcome.get("outcome") == "sent":
            samples = self._latencies.setdefault(channel, [])
            if len(samples) < self.MAX_SAMPLES:
                samples.append(max(0.0, delivery_latency))
        if self._clock() - self._last_export >= self.EXPORT_PERIOD:
            self.export()

    def export(self) -> None:
        self._last_export = self._clock()
        counts, self._counts = self._counts, Counter()
        delays, self._delays = self._delays, {}
        latencies, self._latencies = self._latencies, {}
        short, self._short_circuited = self._short_circuited, Counter()
        for channel, n in short.items():
            self._circuit_short.inc(n, tags={"channel": channel})
        for (channel, outcome), n in counts.items():
            self._messages.inc(n, tags={"channel": channel, "outcome": outcome})
        for channel, values in delays.items():
            for value in values:
                self._delay.observe(value, tags={"channel": channel})
        for channel, values in latencies.items():
            for value in values:
                self._latency.observe(value, tags={"channel": channel})

    def on_queue_depth(self, channel: str, depth: int) -> None:
        if self._on:
            self._depth.set(depth, tags={"channel": channel})

    def on_circuit(self, channel: str, state: str, short_circuited: int) -> None:
        if not self._on:
            return
        if short_circuited:
            self._short_circuited[channel] += short_circuited
        else:  # a change of state (or the initial report at start)
            tags = {"channel": channel}
            self._circuit_open.set(0.0 if state == "closed" else 1.0, tags=tags)
            if state == "open":
                self._circuit_opened.inc(1, tags=tags)
        if self._clock() - self._last_export >= self.EXPORT_PERIOD:
            self.export()
