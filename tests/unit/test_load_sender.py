"""The senders on a virtual clock against a fake server that stalls: coordinated omission.

The server answers in 1 ms, except that it hangs from t = 1 s to t = 2 s: a request that
arrives then is answered at 2.001 s. Open loop measures each batch from its scheduled time,
so every batch due during the stall carries its wait; service time (what a closed-loop
tool measures) shows one slow request and hides the stall.
"""

from __future__ import annotations

import asyncio
import heapq
from typing import Any

import pytest

from itinerary.load.schedule import parse_schedule
from itinerary.load.sender import ClosedLoopSender, OpenLoopSender, parse_answer
from itinerary.load.stats import SenderStats

SERVICE = 0.001
STALL = (1.0, 2.0)


class VirtualClock:
    """Time that moves only when every task waits: `sleep(d)` resumes at now + d."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = 0
        self._driver: asyncio.Task[None] | None = None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._order += 1
        heapq.heappush(self._sleepers, (self.now + max(0.0, delay), self._order, future))
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive())
        await future

    async def _drive(self) -> None:
        while self._sleepers:
            for _ in range(20):  # let every runnable task run until it waits again
                await asyncio.sleep(0)
            due, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, due)
            if not future.done():
                future.set_result(None)


class StallingServer:
    """Answers 202 after SERVICE seconds, or at the end of the stall plus SERVICE."""

    def __init__(self, clock: VirtualClock, stall: tuple[float, float] = STALL) -> None:
        self.clock = clock
        self.stall = stall
        self.requests = 0

    def answer_time(self, now: float) -> float:
        return (self.stall[1] if self.stall[0] <= now < self.stall[1] else now) + SERVICE

    async def post(self, body: bytes, connection: int) -> tuple[int, bytes]:
        self.requests += 1
        await self.clock.sleep(self.answer_time(self.clock.now) - self.clock.now)
        return 202, b'{"accepted": 10, "rejected": []}'


class Recording(SenderStats):
    """SenderStats that also keeps every (scheduled, started, done) it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[float, float, float]] = []

    def answered(self, scheduled: float, started: float, done: float, *args: Any) -> None:
        self.calls.append((scheduled, started, done))
        super().answered(scheduled, started, done, *args)


def expected_open_loop(due_times: list[float], server: StallingServer) -> list[tuple[float, float, float]]:
    """One connection: a batch leaves at its due time or when the previous answer came."""
    free, out = 0.0, []
    for due in due_times:
        started = max(due, free)
        done = server.answer_time(started)
        out.append((due, started, done))
        free = done
    return out


async def test_open_loop_latency_from_the_scheduled_time_carries_the_stall() -> None:
    clock = VirtualClock()
    server = StallingServer(clock)
    schedule = parse_schedule("constant", rate=1000, duration=3)  # 10-event batches every 10 ms
    stats = Recording()
    sender = OpenLoopSender(
        schedule.plan(10),
        lambda events, due: b"x",
        server,
        connections=1,
        max_backlog=1000,
        stats=stats,
        clock=clock,
        sleep=clock.sleep,
    )
    await sender.run()

    due_times = [t for _, t, _ in schedule.plan(10)]
    expected = expected_open_loop(due_times, server)
    assert [c[0] for c in stats.calls] == pytest.approx([e[0] for e in expected])
    assert [c[1] for c in stats.calls] == pytest.approx([e[1] for e in expected])
    assert [c[2] for c in stats.calls] == pytest.approx([e[2] for e in expected])

    latencies = sorted(done - due for due, _, done in expected)
    assert stats.counts["batches_sent"] == 300 and stats.counts["accepted"] == 3000
    # ~100 batches came due during the stall: each waited from its due time to 2 s.
    stalled = [x for x in latencies if x > 0.1]
    assert 95 <= len(stalled) <= 105
    assert stats.ingest.get_max_value() / 1e6 == pytest.approx(1.001, rel=0.01)
    assert stats.ingest.get_value_at_percentile(90) / 1e6 == pytest.approx(latencies[269], rel=0.01)
    assert stats.ingest.get_value_at_percentile(90) / 1e6 > 0.3
    # Service time hides it: one request took the stall, the others 1 ms.
    assert stats.service.get_value_at_percentile(99) / 1e6 == pytest.approx(SERVICE, rel=0.01)
    assert stats.service.get_max_value() / 1e6 == pytest.approx(1.001, rel=0.01)
    assert stats.lag.get_value_at_percentile(90) / 1e6 > 0.3
    # The timeline puts the latency in the seconds the batches were scheduled.
    assert stats.timeline[0].latency.get_max_value() < 2_000
    assert stats.timeline[1].latency.get_max_value() > 900_000


async def test_closed_loop_measures_service_time_and_hides_the_stall() -> None:
    clock = VirtualClock()
    server = StallingServer(clock)
    stats = SenderStats()
    sender = ClosedLoopSender(
        lambda events, due: b"x", server, batch=10, connections=1, duration=3, stats=stats, clock=clock
    )
    await sender.run()
    # It sent as fast as answers came (1 ms each) except during the stall: ~2,000 requests,
    # of which exactly one saw the stall.
    assert 1990 <= stats.counts["batches_sent"] <= 2010
    assert stats.ingest.get_value_at_percentile(99.9) / 1e6 == pytest.approx(SERVICE, rel=0.01)
    assert stats.ingest.get_max_value() / 1e6 == pytest.approx(1.0, rel=0.01)


async def test_a_full_backlog_counts_batches_as_missed_instead_of_growing() -> None:
    clock = VirtualClock()
    server = StallingServer(clock)
    schedule = parse_schedule("constant", rate=1000, duration=3)
    sender = OpenLoopSender(
        schedule.plan(10),
        lambda events, due: b"x",
        server,
        connections=1,
        max_backlog=10,
        clock=clock,
        sleep=clock.sleep,
    )
    stats = await sender.run()
    # During the 1 s stall 100 batches come due: one is in flight, 10 wait, the rest are missed.
    assert 85 <= stats.counts["batches_missed"] <= 92
    assert stats.counts["batches_offered"] == 300
    assert stats.counts["batches_sent"] + stats.counts["batches_missed"] == 300
    assert stats.counts["events_missed"] == 10 * stats.counts["batches_missed"]
    assert server.requests == stats.counts["batches_sent"]


async def test_a_backlog_left_at_the_end_gets_a_grace_period_then_is_missed() -> None:
    clock = VirtualClock()
    server = StallingServer(clock, stall=(2.5, 10.0))  # hangs from 2.5 s to well after the end
    schedule = parse_schedule("constant", rate=1000, duration=3)
    sender = OpenLoopSender(
        schedule.plan(10),
        lambda events, due: b"x",
        server,
        connections=1,
        max_backlog=1000,
        clock=clock,
        sleep=clock.sleep,
        grace=1.0,
    )
    stats = await sender.run()
    # The batch sent at 2.5 s is answered at 10 s; the 49 due after it were still waiting
    # when the grace period (1 s after the last came due) was over.
    assert stats.counts["batches_sent"] == 251 and stats.counts["batches_missed"] == 49
    assert stats.ingest.get_max_value() / 1e6 == pytest.approx(7.5, rel=0.01)
    assert clock.now == pytest.approx(10.001)  # no batch left after the answer came


async def test_network_errors_and_refusals_are_counted_not_raised() -> None:
    answers = iter(
        [(429, b'{"error": "full"}'), ConnectionResetError("reset"), (202, b'{"accepted": 9, "rejected": [{}]}')]
    )

    class Flaky:
        async def post(self, body: bytes, connection: int) -> tuple[int, bytes]:
            answer = next(answers)
            if isinstance(answer, Exception):
                raise answer
            return answer

    schedule = parse_schedule("constant", rate=300, duration=0.1)  # three 10-event batches, fast
    stats = await OpenLoopSender(schedule.plan(10), lambda n, t: b"x", Flaky(), connections=1, max_backlog=10).run()
    assert dict(stats.statuses) == {"429": 1, "connection error": 1, "202": 1}
    assert stats.counts["events_429"] == 10 and stats.counts["events_failed"] == 10
    assert stats.counts["accepted"] == 9 and stats.counts["rejected"] == 1
    assert stats.ingest.get_total_count() == 1  # only the 202 is an ingest latency


def test_parse_answer_reads_accepted_and_rejected() -> None:
    assert parse_answer(202, b'{"accepted": 3, "rejected": [{"index": 1}]}', 4) == (3, 1)
    assert parse_answer(400, b'{"accepted": 0, "rejected": [{}, {}]}', 2) == (0, 2)
    assert parse_answer(400, b'{"error": "not JSON"}', 2) == (0, 0)
    assert parse_answer(429, b"", 5) == (0, 0)
    assert parse_answer(202, b"garbage", 5) == (5, 0)
