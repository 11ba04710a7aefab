"""Metric updates gathered in memory and handed to Ray by a thread of their own.

Why: a `ray.util.metrics` call releases the GIL inside Ray's recorder, and then has to win
it back. On an actor's event loop that wait falls on every request the loop holds: behind
the log's or the outbox's I/O thread it lasts up to the interpreter's switch interval
(5 ms). Measured in a Ray actor: a counter's `inc` took 2.1 µs at the median and 4.2 µs at
p99 alone, and 5.3 µs at the median but 5.2 ms at p90 with one busy Python thread beside
it. The shards, gateways and ingresses make hundreds of such calls a second.

So the actors record into a `MetricBuffer` (a dict update under a lock, no GIL release),
and a `MetricsExporter` thread hands what gathered to Ray every `period`: counter sums,
the last value of each gauge, and histogram observations. The waits for the GIL then fall
on that thread. Nothing here imports Ray: the metrics are any objects with Ray's
`inc` / `set` / `observe` methods.

Histograms are kept per bucket as a count and a sum, so memory stays bounded at any rate,
and are replayed as that many observations of the bucket's mean: the bucket counts and
the sum come out as if each value had been observed (a value exactly on a boundary may be
counted in the bucket below, where Ray's recorder would have put it in the one above).
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

Tags = tuple[tuple[str, str], ...]


def _tags(tags: dict[str, str] | None) -> Tags:
    return tuple(tags.items()) if tags else ()


class MetricBuffer:
    """Metric updates not yet handed over: counter sums, last gauge values, and histogram
    counts and sums per bucket, keyed by metric and tags. Safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[Any, Tags], float] = {}
        self._gauges: dict[tuple[Any, Tags], float] = {}
        self._buckets: dict[tuple[Any, Tags, int], list[float]] = {}  # [count, sum]

    def inc(self, metric: Any, value: float, tags: dict[str, str] | None) -> None:
        key = (metric, _tags(tags))
        with self._lock:
            self._counts[key] = self._counts.get(key, 0.0) + value

    def set(self, metric: Any, value: float, tags: dict[str, str] | None) -> None:
        with self._lock:
            self._gauges[(metric, _tags(tags))] = value

    def observe(self, metric: Any, boundaries: Sequence[float], value: float, tags: dict[str, str] | None) -> None:
        key = (metric, _tags(tags), bisect_left(boundaries, value))
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                self._buckets[key] = [1.0, value]
            else:
                bucket[0] += 1.0
                bucket[1] += value

    @property
    def pending(self) -> int:
        """Series with updates waiting (not observations: a bucket counts once)."""
        return len(self._counts) + len(self._gauges) + len(self._buckets)

    def drain(self) -> list[tuple[str, Any, float, dict[str, str], int]]:
        """Take everything gathered, as calls to make: (method, metric, value, tags, times)."""
        with self._lock:
            counts, self._counts = self._counts, {}
            gauges, self._gauges = self._gauges, {}
            buckets, self._buckets = self._buckets, {}
        calls: list[tuple[str, Any, float, dict[str, str], int]] = []
        calls.extend(("inc", metric, total, dict(tags), 1) for (metric, tags), total in counts.items() if total)
        calls.extend(("set", metric, value, dict(tags), 1) for (metric, tags), value in gauges.items())
        for (metric, tags, _), (count, total) in buckets.items():
            calls.append(("observe", metric, total / count, dict(tags), int(count)))
        return calls


class MetricsExporter:
    """A daemon thread that hands a `MetricBuffer`'s updates to the metrics every `period`
    seconds. A failing metric call is logged (once per kind of error) and dropped."""

    def __init__(self, buffer: MetricBuffer, period: float = 1.0) -> None:
        self.buffer = buffer
        self.period = period
        self.exported = 0  # calls made
        self.failed = 0
        self._reported: set[str] = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="itinerary-metrics", daemon=True)

    def start(self) -> MetricsExporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Hand over what is left, then end the thread."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self.flush()

    def _run(self) -> None:
        while not self._stopping.wait(self.period):
            self.flush()

    def flush(self) -> int:
        """Hand over everything gathered so far; returns the metric calls made."""
        made = 0
        for method, metric, value, tags, times in self.buffer.drain():
            call = getattr(metric, method)
            try:
                for _ in range(times):
                    call(value, tags=tags)
                    made += 1
            except Exception as exc:  # a metric must never take the actor down
                self.failed += 1
                kind = f"{method}:{type(exc).__name__}"
                if kind not in self._reported:
                    self._reported.add(kind)
                    log.warning("metrics: %s failed (%s); such updates are dropped", method, exc)
        self.exported += made
        return made
