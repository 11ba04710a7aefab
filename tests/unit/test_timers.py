"""TimerQueue: due order, ties by payload, the per-round limit, compaction."""

from __future__ import annotations

from itinerary.engine.timers import TimerQueue


def test_timers_pop_in_due_order_up_to_now_and_the_limit() -> None:
    queue: TimerQueue[tuple[str, str]] = TimerQueue()
    queue.push(3.0, ("b", "wait"))
    queue.push(1.0, ("a", "wait"))
    queue.push(2.0, ("c", "wait"))
    queue.push(2.0, ("a", "wait"))  # a tie: ordered by the payload
    assert queue.next_due() == 1.0
    assert queue.pop_due(2.5, limit=2) == [(1.0, ("a", "wait")), (2.0, ("a", "wait"))]
    assert queue.pop_due(2.5) == [(2.0, ("c", "wait"))]
    assert len(queue) == 1 and queue.pop_due(2.9) == []


def test_compact_drops_rejected_entries_and_keeps_the_order() -> None:
    queue: TimerQueue[tuple[str, str]] = TimerQueue()
    for due, key in ((5.0, "gone"), (1.0, "kept"), (3.0, "gone"), (2.0, "kept")):
        queue.push(due, (key, "wait"))
    assert queue.compact(lambda entry: entry[1] != "gone") == 2
    assert queue.pop_due(10.0) == [(1.0, ("kept", "wait")), (2.0, ("kept", "wait"))]
