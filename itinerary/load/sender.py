"""The senders: open loop (batches leave on a schedule) and closed loop (as answers come back).

Open loop, as wrk2 does it: batch k is *scheduled* at time T_k by the rate schedule, and
its latency is (answer time - T_k), however long it waited for a free connection. When
the server stalls, the batches due during the stall queue up in the client and each one
carries its wait in its latency; a closed-loop tool would instead stop sending, record one
slow request and hide the stall (coordinated omission). The backlog of due batches is
bounded: a batch that comes due with the backlog full is counted as *missed* (the client
could not keep up) rather than growing memory for ever.

Closed loop (an option): each connection sends its next batch as soon as the previous
answer arrives; latency is the service time and the rate is whatever the server allows.

Time is injected (`clock`, `sleep`) so tests can run a sender on a virtual clock, and the
network is behind `Transport`, so a test can stand in for the server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import aiohttp
import msgpack

from itinerary.load.stats import SenderStats

__all__ = ["ClosedLoopSender", "HttpTransport", "OpenLoopSender", "Transport", "parse_answer"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
MakeBody = Callable[[int, float], bytes]  # (events, scheduled time from the start) -> body
Progress = Callable[[SenderStats], None]

REQUEST_TIMEOUT = 60.0  # seconds; the ingress gives up on its shards after 30
GRACE = 10.0  # seconds after the schedule's end during which the backlog still leaves


class Transport(Protocol):
    """Posts one request body; answers (HTTP status, body). Raises on network errors."""

    async def post(self, body: bytes, connection: int) -> tuple[int, bytes]: ...


class HttpTransport:
    """POSTs to `/v1/events` of one or more ingress URLs over a pool of kept-alive connections.

    Connection c uses URL c % len(urls), so the connections of a sender are spread over the
    ingresses of a cluster.
    """

    def __init__(
        self,
        urls: list[str],
        token: str | None,
        content_type: str,
        connections: int,
        *,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        if not urls:
            raise ValueError("need at least one URL")
        self._endpoints = [f"{u.rstrip('/')}/v1/events" for u in urls]
        self._headers = {"Content-Type": content_type}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._connections = connections
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpTransport:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connections, limit_per_host=self._connections),
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            headers=self._headers,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def post(self, body: bytes, connection: int) -> tuple[int, bytes]:
        if self._session is None:
            raise RuntimeError("HttpTransport used outside `async with`")
        url = self._endpoints[connection % len(self._endpoints)]
        async with self._session.post(url, data=body) as response:
            return response.status, await response.read()


def parse_answer(status: int, payload: bytes, events: int) -> tuple[int, int]:
    """(accepted, rejected) events from an ingress answer to a batch of `events`."""
    if status not in (202, 400):
        return 0, 0
    try:
        answer = json.loads(payload) if payload[:1] in (b"{", b"[") else msgpack.unpackb(payload)
        accepted = int(answer.get("accepted", 0))
        rejected = len(answer.get("rejected", ()))
    except (ValueError, TypeError, AttributeError, msgpack.UnpackException):
        return (events, 0) if status == 202 else (0, 0)
    return accepted, rejected


def error_kind(exc: BaseException) -> str:
    """A short name for a request that got no HTTP answer (a key of SenderStats.statuses)."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect error"
    if isinstance(exc, aiohttp.ClientError | OSError):
        return "connection error"
    return type(exc).__name__


class _Worker:
    """Sends one batch and records the outcome; shared by both senders."""

    def __init__(self, transport: Transport, make_body: MakeBody, stats: SenderStats, clock: Clock) -> None:
        self.transport = transport
        self.make_body = make_body
        self.stats = stats
        self.clock = clock

    async def send(self, connection: int, scheduled: float, events: int) -> None:
        # The body is made when a connection is free, so a backlog holds no bodies; the time
        # it takes is client lag, and counts in the open-loop latency like any other wait.
        body = self.make_body(events, scheduled)
        started = self.clock()
        try:
            status, payload = await self.transport.post(body, connection)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.failed(scheduled, started, self.clock(), events, error_kind(exc))
            return
        done = self.clock()
        accepted, rejected = parse_answer(status, payload, events)
        self.stats.answered(scheduled, started, done, events, status, accepted, rejected)


class OpenLoopSender:
    """Sends the batches of `plan` at their scheduled times over `connections` connections.

    `plan` yields (batch index, scheduled time in seconds from the start, events); times
    must not decrease. A due batch waits in a FIFO backlog until a connection is free; with
    `max_backlog` batches waiting, a newly due batch is counted as missed instead. After
    the last batch came due, the backlog still leaves for `grace` seconds; what is left
    then is missed too (the run is over), and requests in flight get `drain_timeout`
    seconds more to answer before they count as failed ("unfinished").
    """

    def __init__(
        self,
        plan: Iterable[tuple[int, float, int]],
        make_body: MakeBody,
        transport: Transport,
        *,
        connections: int,
        max_backlog: int,
        stats: SenderStats | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        stop: Callable[[], bool] | None = None,
        grace: float = GRACE,
        drain_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        if connections < 1:
            raise ValueError("connections: need at least one")
        self.plan = plan
        self.stats = stats or SenderStats()
        self.connections = connections
        self.max_backlog = max(1, max_backlog)
        self.grace = grace
        self.drain_timeout = drain_timeout
        self._closing_at: float | None = None  # after this (from the start) the backlog is missed
        self._clock = clock
        self._sleep = sleep
        self._stop = stop or (lambda: False)
        self._worker = _Worker(transport, make_body, self.stats, self._now)
        self._start = 0.0
        self._backlog: asyncio.Queue[tuple[float, int] | None] = asyncio.Queue()
        self._in_flight: dict[int, tuple[float, int]] = {}  # connection -> (due, events)

    def _now(self) -> float:
        return self._clock() - self._start

    @property
    def backlog(self) -> int:
        """Due batches waiting for a connection."""
        return self._backlog.qsize()

    async def run(self, origin: float | None = None) -> SenderStats:
        """Send the whole plan (or until `stop()` holds), wait for the answers, return the stats.

        Plan times count from `origin` (a `clock()` reading; default: now). Batches due
        before run() was called leave at once, their lateness in their latency.
        """
        self._start = self._clock() if origin is None else origin
        workers = [asyncio.create_task(self._work(c)) for c in range(self.connections)]
        try:
            await self._schedule()
            # A backlog left by a slow server may not stretch the run without end.
            self._closing_at = self._now() + self.grace
            for _ in workers:
                self._backlog.put_nowait(None)
            done, _ = await asyncio.wait(workers, timeout=self.grace + self.drain_timeout)
            for task in done:
                task.result()  # a bug in a worker must not pass silently
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        self._count_unfinished()
        return self.stats

    async def _schedule(self) -> None:
        stats = self.stats
        for _, due, events in self.plan:
            if self._stop():
                break
            wait = due - self._now()
            if wait > 0:
                await self._sleep(wait)
            stats.offered(due, events)
            if self._backlog.qsize() >= self.max_backlog:
                stats.missed(due, events)
            else:
                self._backlog.put_nowait((due, events))

    async def _work(self, connection: int) -> None:
        while True:
            item = await self._backlog.get()
            if item is None:
                return
            due, events = item
            if self._closing_at is not None and self._now() > self._closing_at:
                self.stats.missed(due, events)
                continue
            self._in_flight[connection] = item
            await self._worker.send(connection, due, events)
            del self._in_flight[connection]

    def _count_unfinished(self) -> None:
        now = self._now()
        for due, events in self._in_flight.values():  # sent, never answered
            self.stats.failed(due, now, now, events, "unfinished")
        self._in_flight.clear()
        while not self._backlog.empty():  # due, never sent
            item = self._backlog.get_nowait()
            if item is not None:
                self.stats.missed(item[0], item[1])


class ClosedLoopSender:
    """`connections` loops, each sending its next batch of `batch` events as soon as the
    previous answer arrived, for `duration` seconds (or until `stop()` holds)."""

    def __init__(
        self,
        make_body: MakeBody,
        transport: Transport,
        *,
        batch: int,
        connections: int,
        duration: float,
        stats: SenderStats | None = None,
        clock: Clock = time.monotonic,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        if connections < 1 or batch < 1:
            raise ValueError("connections and batch: need at least one")
        self.stats = stats or SenderStats()
        self.batch = batch
        self.connections = connections
        self.duration = duration
        self._clock = clock
        self._stop = stop or (lambda: False)
        self._worker = _Worker(transport, make_body, self.stats, self._now)
        self._start = 0.0

    def _now(self) -> float:
        return self._clock() - self._start

    async def run(self, origin: float | None = None) -> SenderStats:
        """Loop until `duration` seconds after `origin` (a `clock()` reading; default: now)."""
        self._start = self._clock() if origin is None else origin
        await asyncio.gather(*(self._loop(c) for c in range(self.connections)))
        return self.stats

    async def _loop(self, connection: int) -> None:
        while not self._stop():
            now = self._now()
            if now >= self.duration:
                return
            # Closed loop: the batch is "scheduled" when the connection is ready for it.
            self.stats.offered(now, self.batch)
            await self._worker.send(connection, now, self.batch)
