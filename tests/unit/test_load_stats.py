"""Histograms and timelines survive the trip between processes and add up exactly."""

from __future__ import annotations

import pickle
import random

import pytest

from itinerary.load.stats import DeliveryStats, SenderStats, new_histogram, percentiles_ms, record


def fill(stats: SenderStats, rng: random.Random, n: int, offset: float) -> list[float]:
    latencies = []
    for i in range(n):
        scheduled = offset + i * 0.01
        latency = rng.expovariate(1 / 0.02)
        latencies.append(latency)
        stats.offered(scheduled, 10)
        stats.answered(scheduled, scheduled + latency / 2, scheduled + latency, 10, 202, 10, 0)
    return latencies


def test_merging_encoded_histograms_equals_recording_everything_in_one() -> None:
    rng = random.Random(7)
    parts = [SenderStats() for _ in range(3)]
    everything = new_histogram()
    for i, part in enumerate(parts):
        for latency in fill(part, rng, 500, offset=i * 0.003):
            record(everything, latency)
    # What the sender processes send through the multiprocessing queue: pickled wire forms.
    wires = [pickle.loads(pickle.dumps(part.to_wire())) for part in parts]
    merged = SenderStats.merged([SenderStats.from_wire(w) for w in wires])
    assert merged.ingest.get_total_count() == 1500
    for p in (50, 90, 99, 99.9, 100):
        assert merged.ingest.get_value_at_percentile(p) == everything.get_value_at_percentile(p)
    assert merged.counts["accepted"] == 15000 and merged.counts["batches_sent"] == 1500
    assert merged.statuses["202"] == 1500


def test_timelines_merge_second_by_second() -> None:
    a, b = SenderStats(), SenderStats()
    a.offered(0.5, 10)
    a.answered(0.5, 0.5, 0.6, 10, 202, 10, 0)
    b.offered(0.7, 10)
    b.answered(0.7, 0.7, 1.2, 10, 429, 0, 0)
    b.offered(1.5, 10)
    b.missed(1.5, 10)
    a.cpu_seconds, b.cpu_seconds = 1.25, 0.5
    merged = SenderStats.merged([SenderStats.from_wire(a.to_wire()), SenderStats.from_wire(b.to_wire())])
    assert merged.cpu_seconds == 1.75  # the senders' CPU adds up
    assert merged.timeline[0].counts == {"offered": 20, "sent": 20, "accepted": 10}
    assert merged.timeline[1].counts == {"429": 10, "offered": 10, "missed": 10}
    assert merged.timeline[0].latency.get_total_count() == 1  # the 429 has no ingest latency
    assert merged.first_send == 0.5 and merged.last_answer == 1.2
    # the inputs are left alone
    assert a.timeline[0].counts["offered"] == 10


def test_percentiles_are_in_milliseconds_and_empty_is_just_a_count() -> None:
    histogram = new_histogram()
    for ms in range(1, 101):
        record(histogram, ms / 1000)
    figures = percentiles_ms(histogram)
    assert figures["count"] == 100
    assert figures["p50"] == pytest.approx(50, rel=0.01) and figures["max"] == pytest.approx(100, rel=0.01)
    assert figures["p99.9"] == pytest.approx(100, rel=0.01)
    assert percentiles_ms(new_histogram()) == {"count": 0}


def test_delivery_stats_per_channel_and_journey_ignoring_older_events() -> None:
    stats = DeliveryStats(start=1000.0)
    stats.delivered("email", "welcome", arrived=1002.0, event_ts=1001.5)
    stats.delivered("email", "cart-abandonment", arrived=1005.0, event_ts=1001.0)
    stats.delivered("store-push", None, arrived=1003.0, event_ts=None)
    stats.delivered("email", "welcome", arrived=1001.0, event_ts=999.0)  # from before the run
    stats.delivered("email", "welcome", arrived=1001.0, event_ts=1001.2)  # clocks disagree
    assert dict(stats.messages) == {"email": 3, "store-push": 1}
    assert stats.counts == {"before_run": 1, "without_event_time": 1, "clock_skew": 1}
    assert stats.journeys["cart-abandonment"].get_max_value() == pytest.approx(4_000_000, rel=0.001)
    assert stats.channels["email"].get_total_count() == 3
    assert stats.timeline[2].counts["delivered"] == 1 and stats.timeline[1].counts["delivered"] == 1
