"""The channel gateway: one channel's queue, rate limit, connection limit, retries, outcomes.

Send requests come in batches (`submit`, non-blocking); outcomes go out in batches to an
async sink. Per mode:

* no limit   - deliver as fast as `max_connections` allows;
* throttle   - FIFO: the head waits for the limiter; the first refusal of a message emits a
               non-final THROTTLED outcome; a message queued longer than `max_age` EXPIRES;
* cap        - the limiter is asked on submit; a refused message FAILS at once ("capped").

Each retry of a failed attempt asks the limiter again (in cap mode a refused retry fails).
No Ray here: a plain class that a Ray async actor can host as is.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from itinerary.channels.email import EmailProvider
from itinerary.channels.retry import DeliveryResult
from itinerary.channels.webhook import WebhookProvider
from itinerary.config.channels import ChannelConfig, WebhookChannelConfig
from itinerary.engine import ratelimit
from itinerary.engine.messages import (
    EXPIRED,
    FAILED,
    OUTCOMES,
    SENT,
    THROTTLED,
    Outcome,
    SendRequest,
    outcome_for,
)

log = logging.getLogger(__name__)

OUTCOME_BATCH = 256
OUTCOME_FLUSH_INTERVAL = 0.005  # seconds
RATE_WINDOW = 10  # seconds of history behind the observed delivery rate
STOP_FLUSH_TIMEOUT = 5.0  # a hung sink must not hang stop()
CATCH_UP = 0.02  # seconds of dispatcher lateness made up for in throttle mode

# Without these a request can be neither delivered nor answered with an outcome, so it is
# refused at the door (and logged) instead of failing deep inside a delivery task.
_REQUIRED_KEYS = frozenset({"id", "channel", "shard", "profile", "journey", "instance", "node", "payload"})


class Provider(Protocol):
    """Delivers one request per call to a provider (HTTP endpoint, SMTP relay, ...)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def deliver(self, request: SendRequest) -> DeliveryResult: ...


class GatewayObserver(Protocol):
    """Receives every outcome and queue depth change, e.g. to feed metrics; must not block."""

    def on_outcome(
        self,
        channel: str,
        outcome: Outcome,
        limiter_delay: float,
        delivery_latency: float | None,
    ) -> None: ...

    def on_queue_depth(self, channel: str, depth: int) -> None: ...


class NullObserver:
    """The default observer: ignores everything."""

    def on_outcome(
        self,
        channel: str,
        outcome: Outcome,
        limiter_delay: float,
        delivery_latency: float | None,
    ) -> None:
        pass

    def on_queue_depth(self, channel: str, depth: int) -> None:
        pass


def provider_for(config: ChannelConfig) -> Provider:
    """The provider that delivers for `config`'s channel type."""
    if isinstance(config, WebhookChannelConfig):
        return WebhookProvider(config)
    return EmailProvider(config)


@dataclass(slots=True)
class _Pending:
    """A request inside the gateway, with what the gateway knows about it so far."""

    request: SendRequest
    queued_at: float
    attempts: int = 0
    throttled: bool = False  # THROTTLED already emitted: it is emitted once per message
    admitted_at: float | None = None


class _RateMeter:
    """Counts events in per-second buckets to give a rate over the last `window` seconds."""

    def __init__(self, window: int) -> None:
        self._window = window
        self._seconds = [-1] * window
        self._counts = [0] * window

    def record(self, now: float) -> None:
        second = int(now)
        slot = second % self._window
        if self._seconds[slot] != second:
            self._seconds[slot] = second
            self._counts[slot] = 0
        self._counts[slot] += 1

    def rate(self, now: float, since: float) -> float:
        second = int(now)
        oldest = second - self._window + 1
        total = sum(count for sec, count in zip(self._seconds, self._counts, strict=True) if oldest <= sec <= second)
        span = now - max(float(oldest), since)
        return total / span if span > 0 else 0.0


class ChannelGateway:
    """Delivers one channel's send requests under its throughput and connection limits,
    retries transient failures, and reports every outcome in batches to `outcome_sink`."""

    def __init__(
        self,
        name: str,
        config: ChannelConfig,
        *,
        outcome_sink: Callable[[list[Outcome]], Awaitable[None]],
        clock: Callable[[], float] = time.time,
        observer: GatewayObserver | None = None,
        provider: Provider | None = None,
        rng: random.Random | None = None,
        outcome_batch: int = OUTCOME_BATCH,
        flush_interval: float = OUTCOME_FLUSH_INTERVAL,
    ) -> None:
        self.name = name
        self.config = config
        self._sink = outcome_sink
        self._clock = clock
        self._observer: GatewayObserver = observer if observer is not None else NullObserver()
        self._provider = provider if provider is not None else provider_for(config)
        self._rng = rng if rng is not None else random.Random()
        self._outcome_batch = outcome_batch
        self._flush_interval = flush_interval
        self._policy = config.retry.policy()
        limit = config.limit
        self._rate = limit.rate() if limit is not None else None
        self._mode = limit.mode if limit is not None else "unlimited"
        self._limit_text = ratelimit.describe(self._rate) if self._rate is not None else None
        throttling = limit is not None and limit.mode == "throttle"
        self._max_age = limit.max_age.total_seconds() if limit and throttling else math.inf
        self._tat = 0.0  # the limiter's whole state
        self._backlogged = False  # the throttle head waited: lateness is not idleness

        self._queue: deque[_Pending] = deque()
        self._slots = asyncio.Semaphore(config.max_connections)
        self._wake = asyncio.Event()  # queue grew or stop(): the dispatcher looks again
        self._outbox: list[Outcome] = []
        self._outbox_ready = asyncio.Event()
        self._outbox_full = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._started_at: float | None = None
        self._stopped = False
        self._closing = False

        self._counts = dict.fromkeys(OUTCOMES, 0)
        self._rejected = {"queue_full": 0, "capped": 0, "stopped": 0, "malformed": 0}
        self._retries = 0
        self._active = 0  # taken from the queue, no final outcome yet
        self._attempting = 0  # inside a provider call
        self._retrying = 0  # waiting to retry
        self._sink_errors = 0
        self._outcomes_dropped = 0
        self._observer_errors = 0
        self._reported_depth = -1
        self._meter = _RateMeter(RATE_WINDOW)

    def __repr__(self) -> str:
        limit = f"{self._mode} {self._limit_text}" if self._limit_text else self._mode
        return f"ChannelGateway({self.name!r}, {limit})"

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the provider and start the dispatcher and the outcome flusher."""
        if self._started_at is not None:
            return
        if self._stopped:
            raise RuntimeError(f"{self!r} was stopped; build a new gateway")
        await self._provider.start()
        self._started_at = self._clock()
        self._dispatcher = self._spawn_loop(self._dispatch(), "dispatch")
        self._flusher = self._spawn_loop(self._flush_loop(), "flush")
        log.info("%r started", self)

    async def stop(self) -> None:
        """Stop accepting, cancel dispatch and deliveries, flush outcomes, close the provider.

        Messages still queued or in flight get no outcome: they are left to the outbox that
        handed them over, which resends them (with the same idempotency key) after a restart.
        """
        if self._stopped:
            return
        self._stopped = True
        tasks = [t for t in (self._dispatcher, *self._deliveries) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._closing = True
        if self._flusher is not None:
            self._outbox_ready.set()
            try:
                await asyncio.wait_for(self._flusher, STOP_FLUSH_TIMEOUT)
            except TimeoutError:
                log.error("%r: outcome sink did not finish within %ss", self, STOP_FLUSH_TIMEOUT)
        else:
            await self._flush()
        await self._provider.close()
        log.info(
            "%r stopped with %d queued, %d in flight",
            self,
            len(self._queue),
            self._active,
        )

    # -- intake -------------------------------------------------------------------------

    def submit(self, requests: list[SendRequest]) -> dict[str, int]:
        """Queue `requests` without blocking; refused ones get a FAILED outcome at once.

        Returns {"queued": n, "rejected": m}. After stop() every request is rejected and,
        since no outcome can be sent any more, left to the caller's outbox.
        """
        if self._stopped:
            self._rejected["stopped"] += len(requests)
            log.warning("%r is stopped; %d requests refused", self, len(requests))
            return {"queued": 0, "rejected": len(requests)}
        now = self._clock()
        queued = rejected = 0
        for request in requests:
            if not _REQUIRED_KEYS.issubset(request):
                self._rejected["malformed"] += 1
                rejected += 1
                log.error("%r: send request without %s", self, sorted(_REQUIRED_KEYS - set(request)))
                continue
            item = _Pending(request=request, queued_at=now)
            if len(self._queue) >= self.config.queue_size:
                self._rejected["queue_full"] += 1
                rejected += 1
                self._emit(item, FAILED, now, reason="queue full")
                continue
            if self._mode == "cap":
                assert self._rate is not None
                decision, tat = ratelimit.admit(self._tat, now, self._rate)
                if not decision.admitted:
                    self._rejected["capped"] += 1
                    rejected += 1
                    self._emit(item, FAILED, now, reason=f"capped: over {self._limit_text}")
                    continue
                self._tat = tat
                item.admitted_at = now
            self._queue.append(item)
            queued += 1
        if queued:
            self._wake.set()
        self._report_depth()
        return {"queued": queued, "rejected": rejected}

    # -- dispatch -----------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            try:
                await self._dispatch_one()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A control loop logs and carries on; dying would strand the whole queue.
                log.exception("%r: dispatch step failed", self)
                await asyncio.sleep(0.1)

    async def _dispatch_one(self) -> None:
        """Wait for a head and a connection; then expire it, hold it, or start its delivery."""
        if not self._queue:
            self._backlogged = False
            await self._pause(None)
            return
        await self._slots.acquire()
        try:
            head = self._queue[0]
            wait = self._gate(head) if self._mode == "throttle" else 0.0
            if wait == 0.0:
                self._queue.popleft()
                self._backlogged = bool(self._queue)
                self._spawn_delivery(head)
                return  # the delivery task owns the slot now
        except BaseException:
            self._slots.release()
            raise
        self._slots.release()
        if wait:
            await self._pause(wait)

    def _gate(self, head: _Pending) -> float | None:
        """Throttle mode: expire the head (None), admit it (0.0) or return the wait."""
        assert self._rate is not None
        now = self._clock()
        age = now - head.queued_at
        if age > self._max_age:
            self._queue.popleft()
            reason = f"expired: queued {age:.1f}s, over max_age {self._max_age:g}s"
            self._emit(head, EXPIRED, now, reason=reason)
            return None
        asked_at = now
        if self._backlogged:
            # While messages wait, a late wake-up is the event loop's lateness (timers fire
            # in whole milliseconds at best), not idle time: ask as of the instant the slot
            # came due, up to CATCH_UP ago, so the delivered rate does not drift below the
            # configured one. Idle time is never banked beyond the burst.
            asked_at = min(now, max(self._tat - self._rate.tolerance, now - CATCH_UP))
        decision, tat = ratelimit.admit(self._tat, asked_at, self._rate)
        if decision.admitted:
            self._tat = tat
            head.admitted_at = now
            return 0.0
        self._backlogged = True
        if not head.throttled:
            head.throttled = True
            self._emit(head, THROTTLED, now, reason=f"throttled: over {self._limit_text}")
        return decision.wait

    async def _pause(self, seconds: float | None) -> None:
        """Sleep until woken by submit()/stop(), or for `seconds` if given."""
        self._wake.clear()
        if seconds is None:
            await self._wake.wait()
            return
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _spawn_delivery(self, item: _Pending) -> None:
        self._active += 1
        task = asyncio.create_task(self._deliver(item), name=f"gateway-{self.name}-deliver")
        self._deliveries.add(task)
        task.add_done_callback(self._delivery_done)

    def _delivery_done(self, task: asyncio.Task[None]) -> None:
        # A callback, not a `finally`: a task cancelled before it ever ran must count too.
        self._deliveries.discard(task)
        self._active -= 1

    async def _deliver(self, item: _Pending) -> None:
        """Attempt delivery until it succeeds or fails for good; entered holding a slot."""
        holding = True
        try:
            while True:
                item.attempts += 1
                self._attempting += 1
                try:
                    result = await self._provider.deliver(item.request)
                except Exception as exc:
                    # A provider bug must still end in an outcome, never in a silent loss.
                    log.exception("%r: provider raised for %s", self, item.request["id"])
                    result = DeliveryResult.permanent(f"provider error: {type(exc).__name__}")
                finally:
                    self._attempting -= 1
                    self._slots.release()
                    holding = False
                now = self._clock()
                if result.ok:
                    self._emit(item, SENT, now, status=result.status)
                    return
                delay = self._policy.next_delay(item.attempts, result, jitter=self._rng.uniform(0.5, 1.5))
                if delay is None:
                    self._emit(item, FAILED, now, reason=result.reason, status=result.status)
                    return
                self._retries += 1
                log.debug("%r: %s retry in %.3fs after %s", self, item.request["id"], delay, result.reason)
                if not await self._wait_retry(item, result, delay):
                    return
                await self._slots.acquire()
                holding = True
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%r: delivery of %s failed unexpectedly", self, item.request["id"])
            self._emit(item, FAILED, self._clock(), reason="internal error")
        finally:
            if holding:
                self._slots.release()

    async def _wait_retry(self, item: _Pending, last: DeliveryResult, delay: float) -> bool:
        """Wait `delay`, then for a rate slot: each retry spends one. False if capped."""
        self._retrying += 1
        try:
            await asyncio.sleep(delay)
            if self._rate is None:
                return True
            while True:
                now = self._clock()
                decision, tat = ratelimit.admit(self._tat, now, self._rate)
                if decision.admitted:
                    self._tat = tat
                    return True
                if self._mode == "cap":
                    reason = f"capped: over {self._limit_text} (retrying after {last.reason})"
                    self._emit(item, FAILED, now, reason=reason, status=last.status)
                    return False
                await asyncio.sleep(decision.wait)
        finally:
            self._retrying -= 1

    # -- outcomes -----------------------------------------------------------------------

    def _emit(
        self,
        item: _Pending,
        outcome: str,
        now: float,
        *,
        reason: str | None = None,
        status: int | None = None,
    ) -> None:
        record = outcome_for(item.request, outcome, at=now, reason=reason, status=status, attempts=item.attempts)
        self._counts[outcome] += 1
        if outcome == SENT:
            self._meter.record(now)
        self._outbox.append(record)
        self._outbox_ready.set()
        if len(self._outbox) >= self._outcome_batch:
            self._outbox_full.set()
        limiter_delay = (item.admitted_at or now) - item.queued_at if self._mode == "throttle" else 0.0
        event_ts = record["event_ts"]
        latency = now - event_ts if event_ts is not None else None
        try:
            self._observer.on_outcome(self.name, record, limiter_delay, latency)
        except Exception:
            self._observer_errors += 1
            log.exception("%r: observer failed", self)

    async def _flush_loop(self) -> None:
        while True:
            await self._outbox_ready.wait()
            if not self._closing and len(self._outbox) < self._outcome_batch:
                try:
                    async with asyncio.timeout(self._flush_interval):
                        await self._outbox_full.wait()
                except TimeoutError:
                    pass
            await self._flush()
            if self._closing and not self._outbox:
                return

    async def _flush(self) -> None:
        self._outbox_ready.clear()
        self._outbox_full.clear()
        self._report_depth()
        if not self._outbox:
            return
        batch, self._outbox = self._outbox, []
        try:
            await self._sink(batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Dropped for now; the outbox behind the gateway is what makes them durable.
            self._sink_errors += 1
            self._outcomes_dropped += len(batch)
            log.exception("%r: outcome sink failed; %d outcomes dropped", self, len(batch))

    def _report_depth(self) -> None:
        depth = len(self._queue)
        if depth == self._reported_depth:
            return
        self._reported_depth = depth
        try:
            self._observer.on_queue_depth(self.name, depth)
        except Exception:
            self._observer_errors += 1
            log.exception("%r: observer failed", self)

    def _spawn_loop(self, coro: Coroutine[Any, Any, None], role: str) -> asyncio.Task[None]:
        return asyncio.create_task(coro, name=f"gateway-{self.name}-{role}")

    # -- introspection ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """A JSON-able snapshot for status pages and tests."""
        now = self._clock()
        rate = self._rate
        return {
            "name": self.name,
            "type": self.config.type,
            "mode": self._mode,
            "limit": self._limit_text,
            "rate_per_s": rate.per_second if rate is not None else None,
            "burst": rate.burst if rate is not None else None,
            "max_age_s": self._max_age if math.isfinite(self._max_age) else None,
            "queue_depth": len(self._queue),
            "queue_capacity": self.config.queue_size,
            "in_flight": self._active,
            "attempting": self._attempting,
            "retrying": self._retrying,
            "max_connections": self.config.max_connections,
            "outcomes": dict(self._counts),
            "rejected": dict(self._rejected),
            "retries": self._retries,
            "limiter_next_free_s": (ratelimit.next_free(self._tat, now, rate) if rate is not None else 0.0),
            "delivery_rate_per_s": self._meter.rate(now, self._started_at or now),
            "sink_errors": self._sink_errors,
            "outcomes_dropped": self._outcomes_dropped,
            "observer_errors": self._observer_errors,
            "running": self._started_at is not None and not self._stopped,
        }
