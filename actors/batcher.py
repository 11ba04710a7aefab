"""Micro-batching of routed events per shard, with a bounded window of calls in flight.

Events for one shard, as packed records (itinerary.router), collect in a buffer that
leaves as one msgpack blob when it holds `max_events` or `max_delay` has passed, whichever
is first; or at once when the shard is quiet: no call to it in flight and none sent for
QUIET_DELAYS x `max_delay`. So sparse requests pay no batching delay, and a steady stream
gathers as before. (Sending whenever no call was in flight made smaller batches with 8
shards on 2 cores, where each shard is often idle, and cost up to a third of the
throughput.) At most `max_inflight` calls per shard are outstanding; beyond that the
buffer grows until a call returns, and the ingress refuses new requests (429) once its
total queued events reach its bound.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable, Callable

from itinerary.router import PackedRecord, pack_batch

SendBatch = Callable[[int, str, int, bytes], Awaitable[int]]
QUIET_DELAYS = 2.5  # a shard sent nothing for this many max_delays is quiet
_epochs = itertools.count()


class ShardBatcher:
    """Buffers records for one shard and sends them in ordered, numbered batches."""

    def __init__(
        self, shard: int, send: SendBatch, *, sender: str, max_events: int, max_delay: float, max_inflight: int
    ) -> None:
        self.shard = shard
        self._send_batch = send
        self._sender_prefix = sender
        self.sender = f"{sender}#{next(_epochs)}"
        self.seq = 0
        self.max_events = max_events
        self.max_delay = max_delay
        self.max_inflight = max_inflight
        self.buffer: list[PackedRecord] = []
        self._future: asyncio.Future[int] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_send = -math.inf  # loop time of the last batch sent
        self._sending: set[asyncio.Task[None]] = set()  # calls in flight, held so none is collected
        self.inflight = 0
        self.inflight_events = 0
        self.batches_sent = 0
        self.failures = 0

    @property
    def queued(self) -> int:
        return len(self.buffer) + self.inflight_events

    def add(self, records: list[PackedRecord]) -> asyncio.Future[int]:
        """Queue records; the future resolves when their batch was applied by the shard."""
        loop = asyncio.get_running_loop()
        if self._future is None:
            self._future = loop.create_future()
            self._future.add_done_callback(_consume)
        self.buffer.extend(records)
        future = self._future
        if len(self.buffer) >= self.max_events or self._quiet(loop.time()):
            self.flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_delay, self._on_timer)
        return future

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        if not self.buffer or self.inflight >= self.max_inflight:
            return  # a returning call flushes again
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        records, future = self.buffer, self._future
        self.buffer, self._future = [], None
        assert future is not None
        blob = pack_batch(records)
        seq, self.seq = self.seq, self.seq + 1
        loop = asyncio.get_running_loop()
        self._last_send = loop.time()
        self.inflight += 1
        self.inflight_events += len(records)
        self._sending.add(task := loop.create_task(self._send(self.sender, seq, blob, len(records), future)))
        task.add_done_callback(self._sending.discard)

    async def _send(self, sender: str, seq: int, blob: bytes, count: int, future: asyncio.Future[int]) -> None:
        try:
            applied = await self._send_batch(self.shard, sender, seq, blob)
            if not future.done():
                future.set_result(int(applied))
        except Exception as exc:
            self.failures += 1
            if sender == self.sender:
                # The shard may have restarted: number batches afresh under a new sender id.
                self.sender = f"{self._sender_prefix}#{next(_epochs)}"
                self.seq = 0
            if not future.done():
                future.set_exception(exc)
        finally:
            self.batches_sent += 1
            self.inflight -= 1
            self.inflight_events -= count
            if self.buffer and (len(self.buffer) >= self.max_events or self._timer is None):
                self.flush()

    def _quiet(self, now: float) -> bool:
        return self.inflight == 0 and now - self._last_send >= QUIET_DELAYS * self.max_delay


def _consume(future: asyncio.Future[int]) -> None:
    # Requests that timed out no longer await their batch; retrieve its error so asyncio
    # does not log "exception was never retrieved".
    if not future.cancelled():
        future.exception()
