"""Latency histograms and per-second timelines for the load tool, mergeable across processes
(actors use its histograms and percentiles for their `status` too).

Latencies are recorded in microseconds into HdrHistograms (`hdrh`), the structure wrk2 and
most load tools use: fixed memory, a few significant figures of precision at any value,
and an encoding that another process can decode and add, so K sender processes each send
their histograms once and the parent adds them into exact totals.

`SenderStats` is what one sender process measured (counters, histograms, timeline);
`DeliveryStats` is what the built-in receivers saw (see receiver.py).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = [
    "PERCENTILES",
    "DeliveryStats",
    "Second",
    "SenderStats",
    "decode_histogram",
    "encode_histogram",
    "new_histogram",
    "percentiles_ms",
]

HIGHEST_US = 3_600_000_000  # one hour: a latency above that is recorded as one hour
FINE = 3  # significant figures of the run's totals
COARSE = 2  # ... of each second of the timeline: 1 % precision, a tenth of the memory
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_histogram(significant_figures: int = FINE) -> HdrHistogram:
    """An empty latency histogram in microseconds, from 1 µs to one hour."""
    return HdrHistogram(1, HIGHEST_US, significant_figures)


def record(histogram: HdrHistogram, seconds: float) -> None:
    """Record a latency given in seconds (clamped to the histogram's range)."""
    histogram.record_value(min(HIGHEST_US, max(1, round(seconds * 1e6))))


def encode_histogram(histogram: HdrHistogram) -> str:
    """The compressed, base64 form (ASCII text, fits JSON and pickles)."""
    return histogram.encode().decode("ascii")  # type: ignore[no-any-return]


def decode_histogram(encoded: str | bytes) -> HdrHistogram:
    return HdrHistogram.decode(encoded.encode("ascii") if isinstance(encoded, str) else encoded)


def percentiles_ms(
    histogram: HdrHistogram, points: tuple[float, ...] = PERCENTILES, *, mean: bool = True
) -> dict[str, float]:
    """count, mean, the `points` percentiles (p50, p90, p99, p99.9) and max, in
    milliseconds (count as a number). Shards and actors use it for their `status` too."""
    count = histogram.get_total_count()
    if not count:
        return {"count": 0}
    out: dict[str, float] = {"count": count}
    if mean:
        out["mean"] = histogram.get_mean_value() / 1000
    for p in points:
        out[f"p{p:g}"] = histogram.get_value_at_percentile(p) / 1000
    out["max"] = histogram.get_max_value() / 1000
    return out


class Second:
    """One second of a run: counters and a coarse latency histogram."""

    __slots__ = ("counts", "latency")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.latency = new_histogram(COARSE)

    def to_wire(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "latency": encode_histogram(self.latency)}

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Second:
        second = cls()
        second.counts.update(wire["counts"])
        second.latency = decode_histogram(wire["latency"])
        return second

    def merge(self, other: Second) -> None:
        self.counts.update(other.counts)
        self.latency.add(other.latency)


def _timeline_to_wire(timeline: dict[int, Second]) -> dict[int, Any]:
    return {t: s.to_wire() for t, s in timeline.items()}


def _timeline_from_wire(wire: dict[Any, Any]) -> dict[int, Second]:
    return {int(t): Second.from_wire(s) for t, s in wire.items()}


def _merge_timelines(into: dict[int, Second], other: dict[int, Second]) -> None:
    for t, second in other.items():
        mine = into.get(t)
        if mine is None:
            into[t] = Second.from_wire(second.to_wire())  # a copy: `other` stays the caller's
        else:
            mine.merge(second)


class SenderStats:
    """What a sender measured: answer counters, latency histograms, a per-second timeline.

    Three latencies per answered request, all in µs:
      ingest   answer time - scheduled send time (the open-loop figure: includes waiting
               for a free connection, so a stalled server shows in full)
      service  answer time - actual send time (what a closed-loop tool would report)
      lag      actual send time - scheduled time (time spent waiting in the client)
    The ingest histogram holds 202 answers only; other answers are counted by status.

    Timeline keys are whole seconds from the start: answers by the second they arrived
    (throughput), latency by the second the batch was scheduled (so a stall shows where
    it began), offered and missed events by their scheduled second.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()  # requests per HTTP status or error kind
        self.ingest = new_histogram()
        self.service = new_histogram()
        self.lag = new_histogram()
        self.interval = new_histogram()  # ingest latency since the last progress snapshot
        self.timeline: dict[int, Second] = {}
        self.first_send: float | None = None
        self.last_answer: float | None = None
        self.cpu_seconds = 0.0  # this client's CPU (user + system) while it sent

    def _second(self, t: float) -> Second:
        key = int(t) if t >= 0 else -1
        second = self.timeline.get(key)
        if second is None:
            second = self.timeline[key] = Second()
        return second

    def offered(self, scheduled: float, events: int) -> None:
        """A batch became due (sent or not)."""
        self.counts["batches_offered"] += 1
        self.counts["events_offered"] += events
        self._second(scheduled).counts["offered"] += events

    def missed(self, scheduled: float, events: int) -> None:
        """A due batch was never sent: the client's backlog was full, or the run ended first."""
        self.counts["batches_missed"] += 1
        self.counts["events_missed"] += events
        self._second(scheduled).counts["missed"] += events

    def answered(
        self,
        scheduled: float,
        started: float,
        done: float,
        events: int,
        status: int,
        accepted: int,
        rejected: int,
    ) -> None:
        """An HTTP answer for a batch of `events` (times in seconds from the start)."""
        self._sent(started, events)
        self.statuses[str(status)] += 1
        self.counts["accepted"] += accepted
        self.counts["rejected"] += rejected
        answered_in = self._second(done)
        if accepted:
            answered_in.counts["accepted"] += accepted
        if rejected:
            answered_in.counts["rejected"] += rejected
        if status == 429:
            self.counts["events_429"] += events
            answered_in.counts["429"] += events
        elif status != 202 and accepted + rejected < events:
            self.counts["events_failed"] += events - accepted - rejected
            answered_in.counts["failed"] += events - accepted - rejected
        if status == 202:
            latency = done - scheduled
            record(self.ingest, latency)
            record(self.interval, latency)
            record(self.service, done - started)
            record(self.lag, started - scheduled)
            self._second(scheduled).latency.record_value(min(HIGHEST_US, max(1, round(latency * 1e6))))
        self.last_answer = done if self.last_answer is None else max(self.last_answer, done)

    def failed(self, scheduled: float, started: float, done: float, events: int, kind: str) -> None:
        """No HTTP answer (connection refused, reset, timeout): `kind` names the error."""
        self._sent(started, events)
        self.statuses[kind] += 1
        self.counts["events_failed"] += events
        self._second(done).counts["failed"] += events
        self.last_answer = done if self.last_answer is None else max(self.last_answer, done)

    def _sent(self, started: float, events: int) -> None:
        self.counts["batches_sent"] += 1
        self.counts["events_sent"] += events
        self._second(started).counts["sent"] += events
        if self.first_send is None or started < self.first_send:
            self.first_send = started

    def take_interval(self) -> str:
        """The encoded ingest latency since the previous call (for live progress), reset."""
        encoded = encode_histogram(self.interval)
        self.interval.reset()
        return encoded

    def snapshot(self) -> dict[str, Any]:
        """Cumulative counters and the latest interval's latencies, for live progress."""
        return {"counts": dict(self.counts), "statuses": dict(self.statuses), "interval": self.take_interval()}

    # -- crossing processes ---------------------------------------------------------------

    def to_wire(self) -> dict[str, Any]:
        """A plain, picklable form; `from_wire` rebuilds it and `merge` adds it up."""
        return {
            "counts": dict(self.counts),
            "statuses": dict(self.statuses),
            "ingest": encode_histogram(self.ingest),
            "service": encode_histogram(self.service),
            "lag": encode_histogram(self.lag),
            "timeline": _timeline_to_wire(self.timeline),
            "first_send": self.first_send,
            "last_answer": self.last_answer,
            "cpu_seconds": self.cpu_seconds,
        }

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> SenderStats:
        stats = cls()
        stats.counts.update(wire["counts"])
        stats.statuses.update(wire["statuses"])
        stats.ingest = decode_histogram(wire["ingest"])
        stats.service = decode_histogram(wire["service"])
        stats.lag = decode_histogram(wire["lag"])
        stats.timeline = _timeline_from_wire(wire["timeline"])
        stats.first_send = wire["first_send"]
        stats.last_answer = wire["last_answer"]
        stats.cpu_seconds = wire.get("cpu_seconds", 0.0)
        return stats

    def merge(self, other: SenderStats) -> None:
        """Add another sender's figures to these (the union of the two runs)."""
        self.counts.update(other.counts)
        self.statuses.update(other.statuses)
        self.ingest.add(other.ingest)
        self.service.add(other.service)
        self.lag.add(other.lag)
        _merge_timelines(self.timeline, other.timeline)
        firsts = [t for t in (self.first_send, other.first_send) if t is not None]
        lasts = [t for t in (self.last_answer, other.last_answer) if t is not None]
        self.first_send = min(firsts) if firsts else None
        self.last_answer = max(lasts) if lasts else None
        self.cpu_seconds += other.cpu_seconds

    @classmethod
    def merged(cls, parts: list[SenderStats]) -> SenderStats:
        total = cls()
        for part in parts:
            total.merge(part)
        return total


class DeliveryStats:
    """Event-to-delivery latency as the receivers saw it: overall, per channel, per journey.

    A message's latency is its arrival time minus the `X-Itinerary-Event-Time` it carries
    (when the ingress accepted the event that triggered it); both are epoch clocks, so on
    several machines they need NTP. Timeline keys are seconds from `start` by arrival;
    messages for events accepted before `start` are only counted (`before_run`).
    """

    def __init__(self, start: float) -> None:
        self.start = start
        self.overall = new_histogram()
        self.channels: dict[str, HdrHistogram] = {}
        self.journeys: dict[str, HdrHistogram] = {}
        self.messages: Counter[str] = Counter()  # per channel, with or without a latency
        self.journey_messages: Counter[str] = Counter()  # per journey, with or without a latency
        self.counts: Counter[str] = Counter()  # before_run, without_event_time, clock_skew
        self.timeline: dict[int, Second] = {}

    @property
    def total(self) -> int:
        return sum(self.messages.values())

    def delivered(self, channel: str, journey: str | None, arrived: float, event_ts: float | None) -> None:
        """One message arrived on `channel` at epoch `arrived`."""
        if event_ts is not None and event_ts < self.start:
            # Queued before this run (a deployment keeps its outboxes): not this run's work.
            self.counts["before_run"] += 1
            return
        self.messages[channel] += 1
        self.journey_messages[journey or "unknown"] += 1
        key = int(arrived - self.start)
        second = self.timeline.get(key)
        if second is None:
            second = self.timeline[key] = Second()
        second.counts["delivered"] += 1
        if event_ts is None:
            self.counts["without_event_time"] += 1
            return
        latency = arrived - event_ts
        if latency < 0:  # the ingress's clock is ahead of ours: count it, record 0
            self.counts["clock_skew"] += 1
            latency = 0.0
        record(self.overall, latency)
        second.latency.record_value(min(HIGHEST_US, max(1, round(latency * 1e6))))
        for table, name in ((self.channels, channel), (self.journeys, journey or "unknown")):
            histogram = table.get(name)
            if histogram is None:
                histogram = table[name] = new_histogram()
            record(histogram, latency)
