"""GCRA rate limiting as a pure function: the state (one float) goes in and comes out.

The Generic Cell Rate Algorithm keeps a single number per limiter, the *theoretical arrival
time* (TAT): the instant at which the limiter would be idle again if every admitted call
had arrived exactly at the configured rate. A call is admitted when it does not push the TAT
further than `tolerance` (the burst allowance) beyond the next emission interval. The caller
owns the state and the clock; nothing here reads the time, so decisions are exact and
testable at chosen instants.

    tat = 0.0
    decision, tat = admit(tat, now, rate)
"""

from __future__ import annotations

from dataclasses import dataclass

# Instants are epoch seconds (~1.7e9), where adjacent floats are 2.4e-7 s apart, so sums
# like tat + interval can land a few ulps past the exact boundary and refuse a call at the
# very instant the limiter promised it. A microsecond of slack absorbs that; it is far
# below any interval a provider enforces, and makes "sleep the returned wait, then ask
# again" always succeed.
_EPSILON = 1e-6


@dataclass(frozen=True, slots=True)
class Rate:
    """A throughput limit: `calls` per `period` seconds, of which up to `burst` at once."""

    calls: int
    period: float
    burst: int = 1

    def __post_init__(self) -> None:
        if self.calls <= 0:
            raise ValueError(f"calls must be > 0, got {self.calls}")
        if not self.period > 0:
            raise ValueError(f"period must be > 0 seconds, got {self.period}")
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {self.burst}")

    @property
    def interval(self) -> float:
        """Seconds between two calls at the sustained rate (the emission interval)."""
        return self.period / self.calls

    @property
    def tolerance(self) -> float:
        """How far ahead of the sustained rate the limiter lets calls run (the burst)."""
        return self.interval * (self.burst - 1)

    @property
    def per_second(self) -> float:
        """The sustained rate in calls per second."""
        return self.calls / self.period


@dataclass(frozen=True, slots=True)
class Decision:
    """The limiter's answer: admitted, or refused with the seconds to wait before asking again."""

    admitted: bool
    wait: float


ADMITTED = Decision(admitted=True, wait=0.0)


def admit(tat: float, now: float, rate: Rate, cost: int = 1) -> tuple[Decision, float]:
    """Ask to spend `cost` calls at `now`; return the decision and the new TAT.

    The TAT is unchanged when the call is refused, so a refused caller may ask again after
    `decision.wait` seconds and will then be admitted (if nobody else spent the slot).
    A `cost` larger than `rate.burst` can never be admitted and raises ValueError.
    """
    if cost < 1:
        raise ValueError(f"cost must be >= 1, got {cost}")
    if cost > rate.burst:
        raise ValueError(f"cost {cost} exceeds the burst {rate.burst}; it could never be admitted")
    # An idle limiter does not bank unused slots: the TAT never lags behind the present.
    new_tat = max(tat, now) + rate.interval * cost
    allowed_at = new_tat - rate.interval - rate.tolerance
    if allowed_at > now + _EPSILON:
        return Decision(admitted=False, wait=allowed_at - now), tat
    return ADMITTED, new_tat


def next_free(tat: float, now: float, rate: Rate) -> float:
    """Seconds from `now` until one call would be admitted (0.0 when one would be now)."""
    wait = tat - rate.tolerance - now
    return wait if wait > _EPSILON else 0.0


def available(tat: float, now: float, rate: Rate) -> int:
    """How many unit calls `admit` would let through one after another at `now` (0 .. burst)."""
    room = now + _EPSILON + rate.tolerance - max(tat, now)
    return 0 if room < 0 else int(room // rate.interval) + 1


def describe(rate: Rate) -> str:
    """A short human form of `rate`, e.g. "100/1s burst 10" or "50000/1h burst 1"."""
    return f"{rate.calls}/{_period_text(rate.period)} burst {rate.burst}"


def _period_text(seconds: float) -> str:
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
