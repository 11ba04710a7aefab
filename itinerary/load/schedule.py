"""Rate schedules for the open-loop load tool: when each batch is due, as pure arithmetic.

A schedule is a target send rate over the run, r(t) events per second for 0 <= t < D,
made of segments in which the rate is constant or changes linearly. Batch k (0-based) of
B events is due at the moment the cumulative target reaches k * B events, so batch 0 is
due at t = 0 and, at a constant rate R, batch k at k * B / R. These times are what the
sender measures latency from (see sender.py), whatever the server does.

Spec strings (the `--schedule` option):

    constant               the --rate for the whole run (also `constant:5000`)
    step:5000,10000,20000@10s
                           each level for 10 s, the last one until the end; without `@`,
                           the levels share the duration equally; a level may be 0 (pause)
    ramp:1000..20000       linear from 1,000 to 20,000 events/s over the whole duration
    ramp:1000..20000@20s   the same over 20 s, then 20,000 events/s until the end

Rates accept a `k` suffix (`20k` = 20,000); durations `ms`, `s` (default) or `m`.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise

__all__ = ["Schedule", "Segment", "parse_duration", "parse_rate", "parse_schedule"]


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of the run [start, end) in which the rate goes linearly from `r0` to `r1`."""

    start: float
    end: float
    r0: float
    r1: float

    @property
    def length(self) -> float:
        return self.end - self.start

    @property
    def events(self) -> float:
        """Target events in the whole segment (the area under the rate)."""
        return (self.r0 + self.r1) / 2 * self.length

    def events_after(self, tau: float) -> float:
        """Target events from the segment's start to `start + tau`."""
        slope = (self.r1 - self.r0) / self.length
        return self.r0 * tau + slope * tau * tau / 2

    def time_for(self, events: float) -> float:
        """Seconds after the segment's start at which `events` (<= self.events) are due."""
        if events <= 0:
            return 0.0
        a = (self.r1 - self.r0) / (2 * self.length)
        b = self.r0
        # The root of a*tau^2 + b*tau - events = 0 in the form that stays exact when a is 0
        # (constant rate) and when b is 0 (a ramp from zero).
        return 2 * events / (b + math.sqrt(b * b + 4 * a * events))


class Schedule:
    """A target send rate over a run of `duration` seconds, and the due time of each batch."""

    def __init__(self, segments: list[Segment], *, name: str = "custom") -> None:
        if not segments:
            raise ValueError("a schedule needs at least one segment")
        for before, after in pairwise(segments):
            if not math.isclose(before.end, after.start):
                raise ValueError("schedule segments must follow each other without gaps")
        for segment in segments:
            if segment.length <= 0 or segment.r0 < 0 or segment.r1 < 0:
                raise ValueError(f"bad segment {segment}: need a positive length and rates >= 0")
        self.segments = tuple(segments)
        self.name = name
        self.duration = segments[-1].end
        self._starts = [s.start for s in segments]
        cumulative = [0.0]
        for segment in segments:
            cumulative.append(cumulative[-1] + segment.events)
        self._cumulative = cumulative  # target events before each segment, then the total
        self.total_events = round(cumulative[-1])
        if self.total_events < 1:
            raise ValueError("the schedule sends no events: give a positive rate")

    def __repr__(self) -> str:
        return f"Schedule({self.name}, {self.duration:g} s, {self.total_events:,} events)"

    @classmethod
    def constant(cls, rate: float, duration: float) -> Schedule:
        return cls([Segment(0.0, duration, rate, rate)], name=f"constant {rate:g}/s")

    @property
    def peak_rate(self) -> float:
        return max(max(s.r0, s.r1) for s in self.segments)

    def rate_at(self, t: float) -> float:
        """The target rate (events/s) at `t` seconds into the run; 0 outside it."""
        if t < 0 or t >= self.duration:
            return 0.0
        segment = self.segments[bisect_right(self._starts, t) - 1]
        return segment.r0 + (segment.r1 - segment.r0) * (t - segment.start) / segment.length

    def events_by(self, t: float) -> float:
        """Target events due in [0, t] (not rounded)."""
        if t <= 0:
            return 0.0
        if t >= self.duration:
            return self._cumulative[-1]
        i = bisect_right(self._starts, t) - 1
        segment = self.segments[i]
        return self._cumulative[i] + segment.events_after(t - segment.start)

    def time_of_event(self, n: float) -> float | None:
        """When the cumulative target reaches `n` events; None when the run never does."""
        if n <= 0:
            return 0.0
        if n > self._cumulative[-1] + 1e-9:
            return None
        # The last segment whose start has a cumulative target <= n: after a pause (rate 0)
        # this is where the target grows again, so nothing is due inside the pause.
        i = min(bisect_right(self._cumulative, n) - 1, len(self.segments) - 1)
        segment = self.segments[i]
        return segment.start + min(segment.length, segment.time_for(n - self._cumulative[i]))

    def batch_count(self, batch: int) -> int:
        """Batches of `batch` events the run sends (the last one may be smaller)."""
        return -(-self.total_events // batch)

    def batch_size(self, k: int, batch: int) -> int:
        """Events in batch k: `batch`, except for a short last batch."""
        return max(0, min(batch, self.total_events - k * batch))

    def batch_time(self, k: int, batch: int) -> float | None:
        """When batch k (0-based) of `batch` events is due, in seconds from the start."""
        if k < 0 or k >= self.batch_count(batch):
            return None
        return self.time_of_event(k * batch)

    def batches_due(self, t: float, batch: int) -> int:
        """How many batches are due by `t` (those with a due time <= t)."""
        if t < 0:
            return 0
        # The last batch whose first event the target has reached, unless a pause puts its
        # due time after t; the epsilons keep a batch due exactly at t from rounding away.
        last = min(self.batch_count(batch) - 1, math.floor(self.events_by(t) / batch + 1e-9))
        due = self.batch_time(last, batch)
        return last + 1 if due is not None and due <= t + 1e-9 else last

    def plan(self, batch: int, process: int = 0, processes: int = 1) -> Iterator[tuple[int, float, int]]:
        """(batch index, due time, events) for the share of sender `process` of `processes`.

        The run's batches are dealt out in turn (process i sends batches i, i + K, ...), so
        K processes together follow the schedule exactly and interleave rather than burst.
        """
        if batch < 1:
            raise ValueError("batch: need at least one event per batch")
        if not 0 <= process < processes:
            raise ValueError(f"process {process} is not in 0..{processes - 1}")
        for k in range(process, self.batch_count(batch), processes):
            due = self.batch_time(k, batch)
            if due is None:  # pragma: no cover - k < batch_count always has a time
                return
            yield k, due, self.batch_size(k, batch)


def parse_rate(text: str) -> float:
    """`20000`, `20k` or `2.5k` events per second."""
    value = text.strip().lower()
    scale = 1000.0 if value.endswith("k") else 1.0
    try:
        rate = float(value.removesuffix("k")) * scale
    except ValueError:
        raise ValueError(f"not a rate: {text!r} (events per second, e.g. 20000 or 20k)") from None
    if not rate >= 0 or math.isinf(rate):
        raise ValueError(f"not a rate: {text!r} (must be >= 0)")
    return rate


def parse_duration(text: str) -> float:
    """`10`, `10s`, `500ms` or `2m`, in seconds."""
    value = text.strip().lower()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if value.endswith(suffix):
            value, unit = value[: -len(suffix)], scale
            break
    else:
        unit = 1.0
    try:
        seconds = float(value) * unit
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (e.g. 10s, 500ms, 2m)") from None
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"not a duration: {text!r} (must be > 0)")
    return seconds


def parse_schedule(spec: str | None, rate: float, duration: float) -> Schedule:
    """The schedule a `--schedule` spec describes (see the module docstring)."""
    if not duration > 0:
        raise ValueError(f"duration must be positive, not {duration}")
    text = (spec or "constant").strip()
    kind, _, args = text.partition(":")
    kind = kind.lower()
    if kind == "constant":
        level = parse_rate(args) if args else rate
        return Schedule.constant(level, duration)
    body, _, period_text = args.partition("@")
    period = parse_duration(period_text) if period_text else None
    if kind == "step":
        levels = [parse_rate(x) for x in body.split(",") if x.strip()]
        if not levels:
            raise ValueError(f"{text!r}: give the levels, e.g. step:5000,10000,20000@10s")
        step = period if period is not None else duration / len(levels)
        segments: list[Segment] = []
        for i, level in enumerate(levels):
            start = i * step
            if start >= duration:
                break
            end = duration if i == len(levels) - 1 else min(duration, start + step)
            segments.append(Segment(start, end, level, level))
        if segments[-1].end < duration:  # pragma: no cover - the last level runs to the end
            segments.append(Segment(segments[-1].end, duration, levels[-1], levels[-1]))
        return Schedule(segments, name=text)
    if kind == "ramp":
        low, sep, high = body.partition("..")
        if not sep:
            raise ValueError(f"{text!r}: give the two ends, e.g. ramp:1000..20000")
        r0, r1 = parse_rate(low), parse_rate(high)
        ramp = min(duration, period) if period is not None else duration
        segments = [Segment(0.0, ramp, r0, r1)]
        if ramp < duration:
            segments.append(Segment(ramp, duration, r1, r1))
        return Schedule(segments, name=text)
    raise ValueError(f"unknown schedule {text!r}: use constant, step:A,B,C@10s or ramp:A..B")
