"""Batches towards one peer: at most one call in flight, and calls at least
`min_interval` apart.

Items that arrive while a call is in flight, or within `min_interval` of the last call,
leave together in the next one. An idle system sends at once (low latency); a busy one
sends at most 1 / min_interval calls a second, each carrying everything gathered (an actor
call costs far more CPU than the items it carries: ~0.7 ms against microseconds). The
buffer is bounded: past `max_buffer` items new ones are refused and counted, and the caller
decides what that means.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


class Coalescer:
    """Batches items for one peer with a single call in flight."""

    def __init__(
        self,
        name: str,
        call: Callable[[list[Any]], Awaitable[None]],
        *,
        min_interval: float = 0.02,
        max_batch: int = 5000,
        max_buffer: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._min_interval = min_interval
        self._clock = clock
        self._last_call = -float("inf")
        self._call = call
        self._max_batch = max_batch
        self._max_buffer = max_buffer
        self._buffer: list[Any] = []
        self._task: asyncio.Task[None] | None = None
        self.calls = 0
        self.failures = 0
        self.refused = 0

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
        try:
            while self._buffer:
                wait = self._last_call + self._min_interval - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._last_call = self._clock()
                batch = self._buffer[: self._max_batch]
                del self._buffer[: self._max_batch]
                self.calls += 1
                try:
                    await self._call(batch)
                except Exception as exc:  # the peer restarts; its loss is logged, not fatal here
                    self.failures += 1
                    log.warning("%s: call failed, %d items lost: %s", self.name, len(batch), exc)
        finally:
            self._task = None

    async def drain(self) -> None:
        """Wait until everything queued so far has been handed over."""
        while self._task is not None:
            await asyncio.shield(self._task)
