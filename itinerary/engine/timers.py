"""The shard's timer queue: a binary heap of (due, sequence, payload), driven by `now`."""

from __future__ import annotations

import heapq
from typing import Generic, TypeVar

T = TypeVar("T")


class TimerQueue(Generic[T]):
    """Holds pending timers; `pop_due(now)` returns those due at or before `now`, in order.

    Cancelled timers are not removed (that would cost O(n)); the owner checks on firing
    whether the timer still matters, which is how journey instances ignore stale ones.
    """

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._seq = 0

    def push(self, due: float, payload: T) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, payload))

    def pop_due(self, now: float, limit: int = 10_000) -> list[tuple[float, T]]:
        out: list[tuple[float, T]] = []
        heap = self._heap
        while heap and heap[0][0] <= now and len(out) < limit:
            due, _, payload = heapq.heappop(heap)
            out.append((due, payload))
        return out

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)
