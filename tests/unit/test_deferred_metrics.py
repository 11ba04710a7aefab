"""MetricBuffer and MetricsExporter: what the actors' metric calls become, without Ray."""

from __future__ import annotations

import logging
import random
import threading
import time
from bisect import bisect_left
from collections import Counter

import pytest

from itinerary.actors.deferred_metrics import MetricBuffer, MetricsExporter

BOUNDARIES = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0]


class RecordingMetric:
    """Stands in for a Ray metric: remembers every call it gets."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, float, dict[str, str]]] = []
        self.fail = fail

    def _record(self, method: str, value: float, tags: dict[str, str] | None) -> None:
        if self.fail:
            raise RuntimeError("recorder down")
        self.calls.append((method, value, dict(tags or {})))

    def inc(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._record("inc", value, tags)

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._record("set", value, tags)

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._record("observe", value, tags)


def test_counters_are_summed_per_series_and_gauges_keep_their_last_value() -> None:
    buffer, counter, gauge = MetricBuffer(), RecordingMetric(), RecordingMetric()
    for n in (3, 4, 5):
        buffer.inc(counter, n, {"shard": "s0", "result": "applied"})
    buffer.inc(counter, 2, {"shard": "s0", "result": "duplicate"})
    buffer.inc(counter, 0, {"shard": "s1", "result": "applied"})  # nothing to add: no call
    for depth in (10, 30, 20):
        buffer.set(gauge, depth, {"channel": "email"})
    exporter = MetricsExporter(buffer)
    assert exporter.flush() == 3
    assert sorted(counter.calls, key=lambda c: c[2]["result"]) == [
        ("inc", 12, {"shard": "s0", "result": "applied"}),
        ("inc", 2, {"shard": "s0", "result": "duplicate"}),
    ]
    assert gauge.calls == [("set", 20, {"channel": "email"})]
    assert buffer.pending == 0 and exporter.flush() == 0  # handed over once


def test_histograms_replay_the_same_bucket_counts_and_sum_as_direct_observations() -> None:
    rng = random.Random(7)
    values = [rng.expovariate(20) for _ in range(5000)] + [0.0, 2.0, 100.0]
    buffer, histogram = MetricBuffer(), RecordingMetric()
    for value in values:
        buffer.observe(histogram, BOUNDARIES, value, {"channel": "push"})
    MetricsExporter(buffer).flush()
    replayed = [value for method, value, tags in histogram.calls if method == "observe" and tags == {"channel": "push"}]
    assert len(replayed) == len(values)
    assert Counter(bisect_left(BOUNDARIES, v) for v in replayed) == Counter(bisect_left(BOUNDARIES, v) for v in values)
    assert sum(replayed) == pytest.approx(sum(values), rel=1e-9)
    # memory is per bucket, not per observation
    buffer.observe(histogram, BOUNDARIES, 0.003, None)
    buffer.observe(histogram, BOUNDARIES, 0.004, None)
    assert buffer.pending == 1


def test_the_exporter_thread_hands_updates_over_and_stop_flushes_the_rest() -> None:
    buffer, counter = MetricBuffer(), RecordingMetric()
    exporter = MetricsExporter(buffer, period=0.01).start()
    buffer.inc(counter, 5, {"ingress": "i0"})
    deadline = time.monotonic() + 10
    while not counter.calls and time.monotonic() < deadline:
        time.sleep(0.005)
    assert counter.calls == [("inc", 5, {"ingress": "i0"})]
    buffer.inc(counter, 7, {"ingress": "i0"})
    exporter.stop()
    assert counter.calls[-1] == ("inc", 7, {"ingress": "i0"})
    assert sum(call[1] for call in counter.calls) == 12


def test_a_failing_metric_is_logged_once_and_the_others_still_go(caplog: pytest.LogCaptureFixture) -> None:
    buffer, broken, working = MetricBuffer(), RecordingMetric(fail=True), RecordingMetric()
    exporter = MetricsExporter(buffer)
    with caplog.at_level(logging.WARNING, logger="itinerary.actors.deferred_metrics"):
        for _ in range(3):
            buffer.inc(broken, 1, None)
            buffer.inc(working, 1, None)
            exporter.flush()
    assert exporter.failed == 3
    assert len(working.calls) == 3
    assert len([r for r in caplog.records if "recorder down" in r.getMessage()]) == 1


def test_updates_from_many_threads_are_all_counted() -> None:
    buffer, counter = MetricBuffer(), RecordingMetric()
    exporter = MetricsExporter(buffer)

    def work() -> None:
        for _ in range(20_000):
            buffer.inc(counter, 1, {"actor": "a"})

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        exporter.flush()  # drains while the others write
    for thread in threads:
        thread.join()
    exporter.flush()
    assert sum(value for _, value, _ in counter.calls) == 80_000
