"""The Coalescer: one call in flight, items gathered meanwhile, failed calls retried."""

from __future__ import annotations

import asyncio
from typing import Any

from itinerary.actors.coalescer import Coalescer


class FlakyPeer:
    """Fails its first `failures` calls, then records what it is given."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.batches: list[list[Any]] = []

    async def call(self, items: list[Any]) -> None:
        await asyncio.sleep(0)
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("peer restarting")
        self.batches.append(list(items))


def test_items_added_during_a_call_leave_together_in_the_next() -> None:
    async def scenario() -> None:
        peer = FlakyPeer(0)
        coalescer = Coalescer("t", peer.call, min_interval=0.0)
        coalescer.add([1])
        coalescer.add([2, 3])
        coalescer.add([4])
        await coalescer.drain()
        assert [x for b in peer.batches for x in b] == [1, 2, 3, 4]
        assert len(peer.batches) <= 2

    asyncio.run(scenario())


def test_a_failed_call_is_retried_first_in_line_and_nothing_is_lost() -> None:
    async def scenario() -> None:
        peer = FlakyPeer(3)
        coalescer = Coalescer("t", peer.call, min_interval=0.0, backoff=0.001)
        coalescer.add([1, 2])
        await asyncio.sleep(0)
        coalescer.add([3])
        await coalescer.drain()
        assert [x for b in peer.batches for x in b] == [1, 2, 3]  # order kept
        assert coalescer.failures == 3 and coalescer.lost == 0

    asyncio.run(scenario())


def test_items_are_given_up_after_max_retries_failures_in_a_row() -> None:
    async def scenario() -> None:
        peer = FlakyPeer(3)
        coalescer = Coalescer("t", peer.call, min_interval=0.0, backoff=0.001, max_retries=2)
        coalescer.add([1])
        await coalescer.drain()
        assert coalescer.lost == 1 and peer.batches == []
        coalescer.add([2])  # the peer is back: later items go through
        await coalescer.drain()
        assert peer.batches == [[2]]

    asyncio.run(scenario())


def test_a_full_buffer_refuses_and_counts() -> None:
    async def scenario() -> None:
        peer = FlakyPeer(0)
        coalescer = Coalescer("t", peer.call, max_buffer=2)
        assert coalescer.add([1, 2, 3]) == 1
        await coalescer.drain()
        assert coalescer.refused == 1

    asyncio.run(scenario())


class HoldingPeer:
    """Records batches and answers each call with `hold` (seconds the next may wait)."""

    def __init__(self, hold: float | None) -> None:
        self.hold = hold
        self.batches: list[list[Any]] = []

    async def call(self, items: list[Any]) -> float | None:
        self.batches.append(list(items))
        return self.hold


def test_a_peer_that_asks_for_a_hold_gets_its_next_items_later_and_together() -> None:
    async def scenario() -> None:
        peer = HoldingPeer(hold=60.0)
        coalescer = Coalescer("t", peer.call, min_interval=0.0, max_hold=30.0)
        coalescer.add([1])
        while not peer.batches:
            await asyncio.sleep(0)
        for n in (2, 3):
            coalescer.add([n])
        await asyncio.sleep(0.05)
        assert peer.batches == [[1]] and coalescer.pending == 2  # held: the peer is busy for a minute
        await coalescer.drain()  # a drain does not wait out the hold
        assert peer.batches == [[1], [2, 3]] and coalescer.held == 2

    asyncio.run(scenario())


def test_a_hold_no_longer_than_min_interval_changes_nothing() -> None:
    async def scenario() -> None:
        peer = HoldingPeer(hold=0.001)
        coalescer = Coalescer("t", peer.call, min_interval=0.01)
        for n in range(3):
            coalescer.add([n])
            await coalescer.drain()
        assert peer.batches == [[0], [1], [2]] and coalescer.held == 0

    asyncio.run(scenario())


def test_items_taken_for_a_peer_answer_leave_no_call_behind() -> None:
    async def scenario() -> None:
        peer = HoldingPeer(hold=None)
        coalescer = Coalescer("t", peer.call, min_interval=60.0)
        coalescer.add([1])  # an idle coalescer calls at once
        while not peer.batches:
            await asyncio.sleep(0)
        coalescer.add([2, 3])  # these wait out the interval...
        assert coalescer.take() == [2, 3]  # ...until an answer to the peer takes them
        assert coalescer.pending == 0 and coalescer.taken == 2
        await asyncio.sleep(0.05)
        await coalescer.drain()
        assert peer.batches == [[1]]  # no call, not even an empty one

    asyncio.run(scenario())


def test_take_hands_over_the_oldest_items_first_and_a_drain_sends_the_rest() -> None:
    async def scenario() -> None:
        peer = HoldingPeer(hold=None)
        coalescer = Coalescer("t", peer.call, min_interval=60.0)
        coalescer.add([1])
        while not peer.batches:
            await asyncio.sleep(0)
        coalescer.add([2, 3, 4])
        assert coalescer.take(limit=2) == [2, 3]
        await coalescer.drain()
        assert peer.batches == [[1], [4]]
        assert coalescer.take() == []

    asyncio.run(scenario())


def test_a_take_restarts_the_interval_of_a_waiting_call() -> None:
    async def scenario() -> None:
        now = [0.0]
        peer = HoldingPeer(hold=None)
        coalescer = Coalescer("t", peer.call, min_interval=0.05, clock=lambda: now[0])
        coalescer.add([1])
        while not peer.batches:
            await asyncio.sleep(0)
        coalescer.add([2])  # waits 0.05 s (real) for the interval, by the clock from 0.0
        now[0] = 0.04
        assert coalescer.take() == [2]  # the interval now runs from 0.04
        coalescer.add([3])
        await asyncio.sleep(0.1)  # the wait ends; by the clock only 0 s have passed since the take
        assert peer.batches == [[1]] and coalescer.pending == 1
        now[0] = 0.2
        await coalescer.drain()
        assert peer.batches == [[1], [3]]

    asyncio.run(scenario())


def test_a_take_with_nothing_waiting_still_holds_what_comes_next_for_the_peer() -> None:
    async def scenario() -> None:
        now = [0.0]
        peer = HoldingPeer(hold=None)
        coalescer = Coalescer("t", peer.call, min_interval=0.03, clock=lambda: now[0])
        assert coalescer.take() == []  # the peer called us at 0.0
        coalescer.add([1])  # so this waits for its next call (or for the interval)
        await asyncio.sleep(0.05)
        assert peer.batches == [] and coalescer.pending == 1
        now[0] = 0.01
        assert coalescer.take() == [1]
        now[0] = 1.0  # the peer went quiet: items are called over after the interval
        coalescer.add([2])
        while not peer.batches:
            await asyncio.sleep(0.005)
        assert peer.batches == [[2]]

    asyncio.run(scenario())
