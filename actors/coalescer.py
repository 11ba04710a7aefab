"""Batches towards one peer: at most one call in flight, and calls at least
`min_interval` apart.

Items that arrive while a call is in flight, or within `min_interval` of the last call,
leave together in the next one. An idle system sends at once (low latency); a busy one
sends at most 1 / min_interval calls a second, each carrying everything gathered (an actor
call costs far more CPU than the items it carries: ~0.7 ms against microseconds). The
buffer is bounded: past `max_buffer` items new ones are refused and counted, and the caller
decides what that means.

A call may answer how long the peer can do without more items (a gateway with a backlog
to work through): the next call then waits that long, up to `max_hold`, instead of
`min_interval`. At 20 ms per call and ~1.3 ms of CPU per Ray call on each side, a shard
feeding a backlogged channel otherwise spends a tenth of a core keeping a queue full.

A failed call is retried with backoff, its items first in line, up to `max_retries` times
in a row: the peer is usually restarting (Ray restarts it, or the supervisor re-creates it
under the same name) and the items are idempotent at the other end (gateways recognise a
message id they already hold, shards an outcome they already applied). Only after that are
the items given up, with an error in the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from itinerary.aio import wait_event

log = logging.getLogger(__name__)


class Coalescer:
    """Batches items for one peer with a single call in flight."""

    def __init__(
        self,
        name: str,
        call: Callable[[list[Any]], Awaitable[float | None]],
        *,
        min_interval: float = 0.02,
        max_hold: float = 0.5,
        max_batch: int = 5000,
        max_buffer: int = 200_000,
        max_retries: int = 20,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._min_interval = min_interval
        self._max_hold = max_hold
        self._interval = min_interval  # until the next call: min_interval or the peer's hold
        self._clock = clock
        self._last_call = -float("inf")
        self._call = call
        self._max_batch = max_batch
        self._max_buffer = max_buffer
        self._buffer: list[Any] = []
        self._task: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()  # set while drain() runs: call now, do not wait
        self._draining = 0
        self._max_retries = max_retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self.calls = 0
        self.held = 0  # calls after which the peer asked for a longer wait
        self.failures = 0
        self.refused = 0
        self.lost = 0
        self.taken = 0  # items handed over by take() instead of a call

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def add(self, items: list[Any]) -> int:
        """Queue items; returns how many were refused because the buffer is full."""
        room = self._max_buffer - len(self._buffer)
        refused = max(0, len(items) - room)
        if refused:
            self.refused += refused
            log.warning("%s: buffer full, %d items refused", self.name, refused)
            items = items[:room]
        self._buffer.extend(items)
        if self._buffer and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return refused

    async def _run(self) -> None:
        failed_in_a_row = 0
        try:
            while self._buffer:
                wait = self._last_call + self._interval - self._clock()
                if wait > 0 and not self._hurry.is_set():
                    await wait_event(self._hurry, wait)
                    continue  # look again: a take() may have emptied the buffer or restarted the interval
                self._last_call = self._clock()
                batch = self._buffer[: self._max_batch]
                del self._buffer[: self._max_batch]
                self.calls += 1
                try:
                    hold = await self._call(batch)
                except Exception as exc:
                    self._interval = self._min_interval
                    self.failures += 1
                    failed_in_a_row += 1
                    if failed_in_a_row > self._max_retries:
                        self.lost += len(batch)
                        log.error(
                            "%s: %d calls failed in a row, %d items given up: %s",
                            self.name,
                            failed_in_a_row,
                            len(batch),
                            exc,
                        )
                        failed_in_a_row = 0
                        continue
                    self._buffer[:0] = batch  # first in line for the next call
                    delay = min(self._max_backoff, self._backoff * 2 ** (failed_in_a_row - 1))
                    log.warning("%s: call failed (%s); retrying %d items in %.2fs", self.name, exc, len(batch), delay)
                    await asyncio.sleep(delay)
                else:
                    failed_in_a_row = 0
                    self._interval = self._min_interval
                    if hold is not None and hold > self._min_interval:
                        self.held += 1
                        self._interval = min(hold, self._max_hold)
        finally:
            self._task = None

    def take(self, limit: int | None = None) -> list[Any]:
        """Hand the items waiting for the next call to a caller that reaches the peer anyway
        (an answer to the peer's own call), so no call of ours is needed for them.

        Counts as a call for the interval, even when nothing was waiting: the peer is in
        touch, so what arrives next waits up to a full interval for the peer's next call
        to carry it, and is called over only if none comes. Items of a call in flight are
        not in the buffer, so order towards the peer is kept."""
        self._last_call = self._clock()
        if not self._buffer:
            return []
        count = self._max_batch if limit is None else min(limit, self._max_batch)
        taken = self._buffer[:count]
        del self._buffer[:count]
        self.taken += len(taken)
        return taken

    async def drain(self) -> None:
        """Hand over everything queued so far now (no waiting out an interval or a hold),
        and return once it has been."""
        self._draining += 1
        self._hurry.set()
        try:
            while self._task is not None:
                await asyncio.shield(self._task)
        finally:
            self._draining -= 1
            if not self._draining:
                self._hurry.clear()
