"""Clocks handed to the runtime; logic never reads time itself, it is given `now`."""

from __future__ import annotations

import time


class SystemClock:
    """Wall-clock time plus an offset that operators and tests can advance (time travel)."""

    __slots__ = ("offset",)

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.offset += seconds


class ManualClock:
    """A clock that moves only when told to: for tests of time-dependent behaviour."""

    __slots__ = ("now",)

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.now += seconds
