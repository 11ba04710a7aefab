"""The shard's timer queue: a binary heap of flat (due, *payload) tuples, driven by `now`."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any, Generic, TypeVar

P = TypeVar("P", bound=tuple[Any, ...])


class TimerQueue(Generic[P]):
    """Holds pending timers; `pop_due(now)` returns those due at or before `now`, in order.

    Each timer is one flat tuple `(due, *payload)`: a million pending timers are a million
    small tuples (~90 bytes each with the list slot, the strings belong to the profiles),
    not a tuple holding a sequence number and another tuple (~176 bytes). Timers due at the
    same instant are ordered by their payload, so a payload's items must compare (strings
    and numbers do); the order among equal timers does not matter to their owner.

    Cancelled timers are not removed (that would cost O(n)); the owner checks on firing
    whether the timer still matters, which is how journey instances ignore stale ones.
    """

    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap: list[tuple[Any, ...]] = []

    def push(self, due: float, payload: P) -> None:
        heapq.heappush(self._heap, (due, *payload))

    def pop_due(self, now: float, limit: int = 10_000) -> list[tuple[float, P]]:
        out: list[tuple[float, P]] = []
        heap = self._heap
        while heap and heap[0][0] <= now and len(out) < limit:
            entry = heapq.heappop(heap)
            out.append((entry[0], entry[1:]))  # type: ignore[arg-type]
        return out

    def compact(self, keep: Callable[[tuple[Any, ...]], bool]) -> int:
        """Drop the timers whose entry `keep` rejects (entry = (due, *payload)); returns
        how many were dropped. O(n): for an owner that knows many timers went stale at
        once, e.g. those of profiles it no longer holds."""
        before = len(self._heap)
        self._heap = [entry for entry in self._heap if keep(entry)]
        heapq.heapify(self._heap)
        return before - len(self._heap)

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return len(self._heap)
