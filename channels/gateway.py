"""The channel gateway: one channel's queue, rate limit, connection limit, retries, outcomes.

Send requests come in batches (`submit`, non-blocking); outcomes go out in batches to an
async sink. Per mode:

* no limit   - deliver as fast as `max_connections` allows;
* throttle   - FIFO: the head waits for the limiter; a message that joins a queue waiting
               for the limiter, or is refused by it at the head, gets one non-final
               THROTTLED outcome; a message queued longer than `max_age` EXPIRES. A
               backlog leaves in groups, one per PACING_TICK, each within the burst;
* cap        - the limiter is asked on submit; a refused message FAILS at once ("capped").

Each retry of a failed attempt asks the limiter again (in cap mode a refused retry fails).

In every mode a message whose request carries a `deadline` (the instant its journey stops
waiting for the outcome and takes the action's error path) EXPIRES instead of being sent
after it: a reminder must not reach a customer after the journey gave up on it.

A circuit breaker (itinerary/engine/circuit.py, `circuit` in the channel config) stands in
front of every attempt. While it is open nothing is called: the queue head waits (throttle
and unlimited modes; it still expires after `max_age` or its deadline) and so does a retry
in progress, until the breaker lets a probe through and the probe gets an answer. In cap
mode, which never queues for long, a message the breaker holds back fails at once
("circuit open"). Only attempts that got no answer (timeouts, connection errors) count
against the endpoint.

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

from itinerary.aio import wait_event
from itinerary.channels.email import EmailProvider
from itinerary.channels.retry import DeliveryResult
from itinerary.channels.webhook import WebhookProvider
from itinerary.config.channels import ChannelConfig, WebhookChannelConfig
from itinerary.engine import ratelimit
from itinerary.engine.circuit import CLOSED, OPEN, CircuitBreaker, Permit
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
# A backlogged throttle releases its calls in groups, one group per PACING_TICK, rather
# than one call per emission interval. Measured per webhook message at 400 calls/s: 866 us
# of gateway CPU with a wake-up per call, 418 with a 20 ms tick; at 150/s, 559 with 20 ms
# and 411 with 50 ms. The rate is unchanged (scripts/bench_throttle.py: within 0.25 % over
# 10 s), and a group never holds more calls than the burst lets through at once (the tick
# is capped at the limit's tolerance: with burst 1 calls stay evenly spaced).
PACING_TICK = 0.05  # seconds
# Seconds of dispatcher lateness made up for in throttle mode: a wake-up is due a tick
# after the last group, so this covers the tick plus the event loop's own lateness.
CATCH_UP = 0.07
# Expiry is "older than max_age", so a wake-up exactly at max_age would find nothing to do;
# waiting a millisecond more saves that extra round.
EXPIRY_SLACK = 0.001

QUEUE_FULL = "queue full"  # the reason a request finds no room in the queue

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


class CircuitObserver(Protocol):
    """Optionally also implemented by an observer: the circuit breaker's state changes.

    `on_circuit(channel, state, short_circuited)` is called at start and on every change of
    state (with short_circuited=0), and once per attempt the breaker held back (state as
    of then, short_circuited=1).
    """

    def on_circuit(self, channel: str, state: str, short_circuited: int) -> None: ...


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

    def on_circuit(self, channel: str, state: str, short_circuited: int) -> None:
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
    # When it must be given up: max_age in throttle mode, or the instant its journey stops
    # waiting for the outcome (the request's `deadline`), whichever comes first.
    expires_at: float = math.inf
    attempts: int = 0
    throttled: bool = False  # THROTTLED already emitted: it is emitted once per message
    admitted_at: float | None = None
    held: bool = False  # the breaker held it back while queued (counted once)
    permit: Permit | None = None  # the breaker's leave for the next attempt


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
        self._tick = min(PACING_TICK, self._rate.tolerance) if self._rate is not None else 0.0
        self._backlogged = False  # the throttle head waited: lateness is not idleness
        circuit = config.circuit
        self._breaker = CircuitBreaker(circuit.settings()) if circuit.enabled else None
        self._circuit_state = CLOSED  # as last reported to the observer and the log
        # Replaced after every set(), so each waiter sees one broadcast per change of state.
        self._circuit_changed = asyncio.Event()

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
        self._short_circuited = 0  # attempts the breaker held back (once per attempt)
        self._held_retries = 0  # retries waiting for the breaker right now

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
        if self._breaker is not None:
            self._observe_circuit(CLOSED, 0)  # the gauge exists from the start
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

    def submit(self, requests: list[SendRequest]) -> dict[str, float]:
        """Queue `requests` without blocking; refused ones get a FAILED outcome at once.

        Returns {"queued": n, "rejected": m, "backlog_s": b}: `backlog_s` is how long the
        last message queued will wait for the limiter (0.0 when the channel keeps up), so a
        caller may hold its next sends that long without delaying any delivery. After
        stop() every request is rejected and, since no outcome can be sent any more, left
        to the caller's outbox.
        """
        if self._stopped:
            self._rejected["stopped"] += len(requests)
            log.warning("%r is stopped; %d requests refused", self, len(requests))
            return {"queued": 0, "rejected": len(requests), "backlog_s": 0.0}
        now = self._clock()
        queued = rejected = 0
        # Throttle mode: the calls the limiter would let through right now; a message with
        # that many or more ahead of it in the queue has to wait for the limiter.
        free = ratelimit.available(self._tat, now, self._rate) if self._mode == "throttle" and self._rate else 0
        for request in requests:
            if not self._well_formed(request):
                rejected += 1
                continue
            deadline = request.get("deadline")
            expires_at = now + self._max_age
            if isinstance(deadline, (int, float)):
                expires_at = min(expires_at, float(deadline))
            item = _Pending(request=request, queued_at=now, expires_at=expires_at)
            if len(self._queue) >= self.config.queue_size:
                rejected += 1
                self._refuse(item, now)
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
            elif self._mode == "throttle" and len(self._queue) >= free:
                # It joins a queue that waits for the limiter. Said now rather than when it
                # reaches the head: a backlog leaves in groups, and only the first of a
                # group is ever refused there.
                item.throttled = True
                self._emit(item, THROTTLED, now, reason=f"throttled: over {self._limit_text}")
            self._queue.append(item)
            queued += 1
        if queued:
            self._wake.set()
        self._report_depth()
        return {"queued": queued, "rejected": rejected, "backlog_s": self.backlog(now)}

    def room(self) -> int:
        """How many more requests the queue takes now (0 when full)."""
        return max(0, self.config.queue_size - len(self._queue))

    def refuse_full(self, requests: list[SendRequest]) -> list[SendRequest]:
        """Fail `requests` as `submit` fails those that find the queue full, without looking
        for room: for a caller that measured `room()` first and kept the rest out of its
        outbox. Returns those that got a FAILED outcome (after stop(), none: see `submit`)."""
        if self._stopped:
            self._rejected["stopped"] += len(requests)
            return []
        now = self._clock()
        refused = [request for request in requests if self._well_formed(request)]
        for request in refused:
            self._refuse(_Pending(request=request, queued_at=now, expires_at=now), now)
        return refused

    def _well_formed(self, request: SendRequest) -> bool:
        """Whether `request` has every key a delivery needs; a malformed one is counted and logged."""
        if _REQUIRED_KEYS.issubset(request):
            return True
        self._rejected["malformed"] += 1
        log.error("%r: send request without %s", self, sorted(_REQUIRED_KEYS - set(request)))
        return False

    def _refuse(self, item: _Pending, now: float) -> None:
        """Fail a request that finds no room in the queue."""
        self._rejected["queue_full"] += 1
        self._emit(item, FAILED, now, reason=QUEUE_FULL)

    def current_backlog(self) -> float:
        """`backlog` as of now on the gateway's clock."""
        return self.backlog(self._clock())

    def backlog(self, now: float) -> float:
        """Seconds until the limiter admits the last message queued now (throttle mode)."""
        if self._mode != "throttle" or not self._queue:
            return 0.0
        assert self._rate is not None
        ahead = len(self._queue) - ratelimit.available(self._tat, now, self._rate)
        return max(0.0, ahead * self._rate.interval + ratelimit.next_free(self._tat, now, self._rate))

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
        head = self._queue[0]
        try:
            wait = self._admit(head)
            if wait == 0.0:
                self._queue.popleft()
                self._backlogged = bool(self._queue)
                self._spawn_delivery(head)
                return  # the delivery task owns the slot (and the breaker's permit) now
        except BaseException:
            self._slots.release()
            self._give_back(head)
            raise
        self._slots.release()
        if wait:
            await self._pause(None if math.isinf(wait) else wait)

    def _admit(self, head: _Pending) -> float | None:
        """Decide on the head: ended (None: expired or failed), go (0.0), or the seconds to
        wait (math.inf: until something wakes the dispatcher)."""
        now = self._clock()
        expired = self._expiry(head, now)
        if expired is not None:
            self._queue.popleft()
            self._emit(head, EXPIRED, now, reason=expired)
            return None
        # The breaker before the limiter: a message held back must not spend a rate slot.
        if self._breaker is not None:
            head.permit = self._breaker.acquire(now)
            self._circuit_moved(now)
            if head.permit is None:
                return self._hold(head, now)
        if self._mode != "throttle":
            return 0.0
        wait = self._gate(head, now)
        if wait:
            self._give_back(head)  # not called after all: a probe's place goes to the next caller
            # Look again when the head expires, or a limit of a few calls an hour would
            # keep it (and whatever queues behind it) well past max_age.
            wait = min(wait, head.expires_at - now + EXPIRY_SLACK)
        return wait

    def _expiry(self, item: _Pending, now: float) -> str | None:
        """Why `item` must be given up now (EXPIRED), or None while it may still be sent."""
        if now <= item.expires_at:
            return None
        deadline = item.request.get("deadline")
        if isinstance(deadline, (int, float)) and now > deadline:
            # Sending now would reach a customer after the journey took its error path.
            return f"expired: the journey stopped waiting for it {now - deadline:.1f}s ago"
        return f"expired: queued {now - item.queued_at:.1f}s, over max_age {self._max_age:g}s"

    def _hold(self, head: _Pending, now: float) -> float | None:
        """The breaker refused the head: fail it (cap mode) or return how long it waits."""
        assert self._breaker is not None
        if not head.held:
            head.held = True
            self._short_circuit(now)
        if self._mode == "cap":
            self._queue.popleft()
            self._emit(head, FAILED, now, reason=self._circuit_reason(now))
            return None
        wait = self._breaker.wait(now)
        if math.isfinite(head.expires_at):
            # Look again when the head expires: an open breaker does not stop the clock.
            expires_in = head.expires_at - now + EXPIRY_SLACK
            wait = expires_in if wait is None else min(wait, expires_in)
        if wait is None:
            return math.inf  # every probe is out: only its outcome (a broadcast) can help
        return max(wait, EXPIRY_SLACK)  # never 0.0, which would mean "go"

    def _gate(self, head: _Pending, now: float) -> float:
        """Throttle mode: admit the head (0.0) or return the limiter's wait."""
        assert self._rate is not None
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
        return max(decision.wait, self._tick)

    async def _pause(self, seconds: float | None) -> None:
        """Sleep until woken by submit()/stop(), or for `seconds` if given."""
        self._wake.clear()
        await wait_event(self._wake, seconds)

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
                permit, item.permit = item.permit, None
                try:
                    result = await self._provider.deliver(item.request)
                except Exception as exc:
                    # A provider bug must still end in an outcome, never in a silent loss.
                    log.exception("%r: provider raised for %s", self, item.request["id"])
                    result = DeliveryResult.permanent(f"provider error: {type(exc).__name__}")
                except BaseException:
                    item.permit = permit  # cancelled: the call says nothing about the endpoint
                    raise
                finally:
                    self._attempting -= 1
                    self._slots.release()
                    holding = False
                now = self._clock()
                self._judge(permit, result, now)
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
            self._give_back(item)
            raise
        except Exception:
            log.exception("%r: delivery of %s failed unexpectedly", self, item.request["id"])
            self._give_back(item)
            self._emit(item, FAILED, self._clock(), reason="internal error")
        finally:
            if holding:
                self._slots.release()

    async def _wait_retry(self, item: _Pending, last: DeliveryResult, delay: float) -> bool:
        """Wait `delay`, then for the breaker, then for a rate slot: each retry spends one.

        False if the message ended while waiting (capped, or held back by the breaker in
        cap mode, or expired while the breaker held it back in throttle mode)."""
        self._retrying += 1
        try:
            await asyncio.sleep(delay)
            now = self._clock()
            expired = self._expiry(item, now)
            if expired is not None:
                self._emit(item, EXPIRED, now, reason=f"{expired} (retrying after {last.reason})", status=last.status)
                return False
            if self._breaker is not None and not await self._wait_circuit(item, last):
                return False
            if self._rate is None:
                return True
            while True:
                now = self._clock()
                decision, tat = ratelimit.admit(self._tat, now, self._rate)
                if decision.admitted:
                    self._tat = tat
                    return True
                if self._mode == "cap":
                    self._give_back(item)
                    reason = f"capped: over {self._limit_text} (retrying after {last.reason})"
                    self._emit(item, FAILED, now, reason=reason, status=last.status)
                    return False
                await asyncio.sleep(decision.wait)
        finally:
            self._retrying -= 1

    async def _wait_circuit(self, item: _Pending, last: DeliveryResult) -> bool:
        """Wait until the breaker lets this retry through (True) or the message ends (False)."""
        assert self._breaker is not None
        counted = False
        while True:
            now = self._clock()
            item.permit = self._breaker.acquire(now)
            self._circuit_moved(now)
            if item.permit is not None:
                return True
            if not counted:
                counted = True
                self._short_circuit(now)
            if self._mode == "cap":
                reason = f"{self._circuit_reason(now)} (retrying after {last.reason})"
                self._emit(item, FAILED, now, reason=reason, status=last.status)
                return False
            expired = self._expiry(item, now)
            if expired is not None:
                self._emit(item, EXPIRED, now, reason=f"{expired} (circuit open)", status=last.status)
                return False
            wait = self._breaker.wait(now)
            if math.isfinite(item.expires_at):
                expires_in = item.expires_at - now + EXPIRY_SLACK
                wait = expires_in if wait is None else min(wait, expires_in)
            self._held_retries += 1
            try:
                await self._circuit_change(wait)
            finally:
                self._held_retries -= 1

    # -- circuit breaker ----------------------------------------------------------------

    def _judge(self, permit: Permit | None, result: DeliveryResult, now: float) -> None:
        """Tell the breaker what the attempt made with `permit` says about the endpoint."""
        if permit is None or self._breaker is None:
            return
        if result.unjudged:
            self._breaker.release(permit)
            if permit.probe:
                self._broadcast()  # the probe's place is free again
        else:
            self._breaker.record(permit, now, answered=not result.unanswered)
        self._circuit_moved(now, result.reason)

    def _give_back(self, item: _Pending) -> None:
        """Return `item`'s unused permit, if any, so another call may take its place."""
        permit, item.permit = item.permit, None
        if permit is None or self._breaker is None:
            return
        self._breaker.release(permit)
        if permit.probe:
            self._broadcast()

    def _circuit_moved(self, now: float, last_reason: str | None = None) -> None:
        """Report and broadcast a change of the breaker's state, if there was one."""
        assert self._breaker is not None
        state = self._breaker.state(now)
        if state == self._circuit_state:
            return
        self._circuit_state = state
        if state == OPEN:
            log.warning(
                "%r: circuit open (time %d), no calls for %gs; last attempt: %s",
                self,
                self._breaker.opened,
                self._breaker.settings.open_for,
                last_reason,
            )
        else:
            log.info("%r: circuit %s", self, state)
        self._observe_circuit(state, 0)
        self._broadcast()

    def _broadcast(self) -> None:
        """Wake the dispatcher and every retry waiting for the breaker: they ask again."""
        self._wake.set()
        self._circuit_changed.set()
        self._circuit_changed = asyncio.Event()

    async def _circuit_change(self, seconds: float | None) -> None:
        """Sleep until the next broadcast, or for `seconds` if given."""
        await wait_event(self._circuit_changed, seconds)

    def _short_circuit(self, now: float) -> None:
        assert self._breaker is not None
        self._short_circuited += 1
        self._observe_circuit(self._breaker.state(now), 1)

    def _circuit_reason(self, now: float) -> str:
        assert self._breaker is not None
        state = self._breaker.state(now).replace("_", "-")
        return f"circuit {state}: the endpoint stopped answering (timeouts or connection errors)"

    def _observe_circuit(self, state: str, short_circuited: int) -> None:
        # Optional for observers (GatewayObserver predates the breaker): look it up.
        hook = getattr(self._observer, "on_circuit", None)
        if hook is None:
            return
        try:
            hook(self.name, state, short_circuited)
        except Exception:
            self._observer_errors += 1
            log.exception("%r: observer failed", self)

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
            "circuit": self._circuit_stats(now),
            "running": self._started_at is not None and not self._stopped,
        }

    def _circuit_stats(self, now: float) -> dict[str, Any]:
        breaker = self._breaker
        if breaker is None:
            return {"enabled": False, "state": "disabled", "opened": 0, "short_circuited": 0}
        state = breaker.state(now)
        calls, unanswered = breaker.recent
        return {
            "enabled": True,
            "state": state,
            "opened": breaker.opened,  # times it opened, re-openings after a failed probe included
            "short_circuited": self._short_circuited,
            "recent_attempts": calls,
            "recent_unanswered": unanswered,
            "half_open_in_s": breaker.open_until - now if state == OPEN else None,
            "held_retries": self._held_retries,
        }
