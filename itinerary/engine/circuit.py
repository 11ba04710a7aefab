"""A circuit breaker: stop calling an endpoint whose calls get no answer; probe it later.

Pure logic: no clock reads, no asyncio, no Ray. Every method that depends on time takes
`now` (seconds, any epoch), so the state machine can be tested at exact instants.

The rules:

* closed    - calls go through. The outcomes of the last `window` calls are kept; once at
              least `min_calls` of them are known and the share that got *no answer* (a
              timeout or a connection that could not be made or broke) is at least
              `failure_ratio`, the breaker opens. A call that got any protocol answer,
              even 500 or 429, is not such a failure: the endpoint is reachable and
              retries with backoff are the right medicine for it.
* open      - no call goes through for `open_for` seconds from the moment it opened.
* half-open - from then on, `probes` calls may go through; as soon as one of them gets no
              answer the breaker opens again (for another `open_for`); once all of them
              were answered it closes, with an empty window.

A call is represented by the `Permit` it was let through with. A permit remembers the
breaker's epoch (bumped on every state change), so the outcome of a call that started
before a change (a slow call finishing after the breaker opened) is ignored: it cannot
close a breaker it did not probe nor count in a window it was not part of.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)


@dataclass(frozen=True, slots=True)
class CircuitSettings:
    """When a breaker opens (window, min_calls, failure_ratio), for how long, how it probes."""

    window: int = 20
    min_calls: int = 10
    failure_ratio: float = 0.5
    open_for: float = 30.0
    probes: int = 1

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if not 1 <= self.min_calls <= self.window:
            raise ValueError(f"need 1 <= min_calls <= window, got min_calls={self.min_calls} window={self.window}")
        if not 0.0 < self.failure_ratio <= 1.0:
            raise ValueError(f"failure_ratio must be in (0, 1], got {self.failure_ratio}")
        if not (self.open_for > 0 and math.isfinite(self.open_for)):
            raise ValueError(f"open_for must be a positive number of seconds, got {self.open_for}")
        if self.probes < 1:
            raise ValueError(f"probes must be >= 1, got {self.probes}")


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to make one call; hand it back with `record` (judged) or `release` (not judged)."""

    epoch: int
    probe: bool


class CircuitBreaker:
    """The state of one endpoint's breaker; see the module docstring for the rules."""

    def __init__(self, settings: CircuitSettings | None = None) -> None:
        self.settings = settings if settings is not None else CircuitSettings()
        self._state = CLOSED
        self._epoch = 0
        self._window: deque[bool] = deque(maxlen=self.settings.window)  # True: no answer
        self._failures = 0  # True entries in _window
        self._opened_at = 0.0
        self._probes_out = 0  # probe permits handed out and not yet returned
        self._probes_ok = 0  # probes answered in this half-open period
        self.opened = 0  # times the breaker opened (a failed probe re-opens: counted too)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self._state}, {self._failures}/{len(self._window)} recent calls unanswered)"

    # -- queries (never change anything) ----------------------------------------------------

    def state(self, now: float) -> str:
        """CLOSED, OPEN or HALF_OPEN as of `now` (an open breaker whose time is up is half-open)."""
        if self._state == OPEN and now >= self.open_until:
            return HALF_OPEN
        return self._state

    @property
    def open_until(self) -> float:
        """When the current (or last) open period ends."""
        return self._opened_at + self.settings.open_for

    @property
    def recent(self) -> tuple[int, int]:
        """(calls, calls without an answer) in the window; empty unless closed."""
        return len(self._window), self._failures

    def wait(self, now: float) -> float | None:
        """Seconds until `acquire` may succeed: 0.0 now, >0 while open, None while every
        probe is out (only a probe's outcome can change that)."""
        state = self.state(now)
        if state == CLOSED:
            return 0.0
        if state == OPEN:
            return self.open_until - now
        if self._state == OPEN:  # half-open by the clock; no probe was handed out yet
            return 0.0
        return 0.0 if self._probes_left() > 0 else None

    # -- transitions ------------------------------------------------------------------------

    def acquire(self, now: float) -> Permit | None:
        """A permit to make one call now, or None when the breaker holds calls back."""
        self._advance(now)
        if self._state == CLOSED:
            return Permit(self._epoch, probe=False)
        if self._state == HALF_OPEN and self._probes_left() > 0:
            self._probes_out += 1
            return Permit(self._epoch, probe=True)
        return None

    def record(self, permit: Permit, now: float, *, answered: bool) -> None:
        """The call made with `permit` got an answer (`answered`) or none (timeout, connection)."""
        self._advance(now)
        if permit.epoch != self._epoch:
            return  # started before the last change of state: says nothing about this one
        if self._state == CLOSED:
            self._count(not answered)
            if len(self._window) >= self.settings.min_calls and self._tripped():
                self._open(now)
        elif self._state == HALF_OPEN and permit.probe:
            self._probes_out -= 1
            if not answered:
                self._open(now)
                return
            self._probes_ok += 1
            if self._probes_ok >= self.settings.probes:
                self._close()

    def release(self, permit: Permit) -> None:
        """Give back a permit whose call was not made or says nothing about the endpoint."""
        if permit.epoch == self._epoch and self._state == HALF_OPEN and permit.probe:
            self._probes_out -= 1

    # -- internals --------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        if self._state == OPEN and now >= self.open_until:
            self._change(HALF_OPEN)
            self._probes_out = self._probes_ok = 0

    def _probes_left(self) -> int:
        return self.settings.probes - self._probes_out - self._probes_ok

    def _tripped(self) -> bool:
        # Compared as a product so that e.g. 5 of 10 is exactly 0.5, with no float division.
        return self._failures >= self.settings.failure_ratio * len(self._window)

    def _count(self, failed: bool) -> None:
        if len(self._window) == self._window.maxlen and self._window[0]:
            self._failures -= 1  # the oldest outcome is about to fall out of the window
        self._window.append(failed)
        self._failures += failed

    def _open(self, now: float) -> None:
        self._change(OPEN)
        self._opened_at = now
        self.opened += 1
        self._window.clear()
        self._failures = 0

    def _close(self) -> None:
        # A fresh start: failures from before the outage must not re-open it at once.
        self._change(CLOSED)
        self._window.clear()
        self._failures = 0

    def _change(self, state: str) -> None:
        self._state = state
        self._epoch += 1
