"""Process tuning for data-plane actors."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

# Profiles, events and journey instances are acyclic plain dicts; the cyclic collector
# finds nothing in them but, with the default thresholds, re-scans the growing heap of
# profiles every few thousand allocations. Measured on the single-process benchmark: the
# default thresholds halve throughput; these recover ~90 % of what disabling GC would.
# A pass stops the process for as long as it scans, and it scans what the young
# generations hold: the first two thresholds bound that (5,000 and 5,000 x 4 objects).
# With (50,000, 5) a shard at 10,000 events/s paused 10-35 ms a few times a second, which
# set the ingest p99; with these, passes take 1-15 ms and the collector's total time is
# no larger (one process, 100,000 events: 223 ms against 314 ms). The last threshold puts
# full passes (all that is not frozen) 20 million allocations apart.
GC_THRESHOLDS = (5_000, 4, 1_000)
# How often a shard moves what survived out of the collector's sight (see settle_gc). Each
# settle scans what survived since the last one: at 10,000 events/s of storefront traffic
# (one process, scripts' shard harness) a settle every 10 s paused the shard 132 ms, every
# 2 s at most 44 ms, for the same collector time in all (those pauses set the ingest p99).
GC_SETTLE_SECONDS = 2.0


def tune_gc() -> None:
    """Collect rarely, and move what exists at start-up out of the collector's sight."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


# How often a process whose automatic collection is off (see collect_periodically) looks
# for reference cycles; every COLLECT_FULL_EVERY-th look covers the old generation too.
# Each look scans what is alive at that moment (the requests in flight: ~13 ms for eight
# 500-event requests), whatever garbage there is, so looking less often costs less; the
# only price is that a cycle waits up to a period to be freed.
COLLECT_PERIOD = 5.0  # seconds
COLLECT_FULL_EVERY = 10


async def collect_periodically(period: float = COLLECT_PERIOD) -> None:
    """Turn automatic collection off and collect every `period` seconds instead.

    For the ingress: everything it allocates lives for one request and is acyclic (parsed
    JSON, validated copies, records), so reference counting frees it, yet the automatic
    collector kept re-scanning the in-flight requests' objects: ~20 % of the ingress's CPU
    per event (measured 28-30 -> 22.6 us, one process, 500-event requests). The cycles
    asyncio and aiohttp do make (a failed future and its traceback) wait at most a
    period. Runs until cancelled; automatic collection comes back then.
    """
    gc.disable()
    looks = 0
    try:
        while True:
            await asyncio.sleep(period)
            looks += 1
            gc.collect(2 if looks % COLLECT_FULL_EVERY == 0 else 1)
    finally:
        gc.enable()


@contextlib.asynccontextmanager
async def periodic_collection(period: float = COLLECT_PERIOD) -> AsyncIterator[None]:
    """`collect_periodically` for the length of a block (load senders and local receivers,
    whose records and bodies are acyclic too), after freezing what the set-up made."""
    gc.collect()
    gc.freeze()
    task = asyncio.get_running_loop().create_task(collect_periodically(period))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def settle_gc() -> None:
    """Collect the young generations, then freeze what is left.

    A shard holding a million profiles tracks tens of millions of containers; one full
    collection of them took 2.75 s, during which no timer fires and no event is applied.
    Profiles, instances and queued requests are acyclic and freed by reference counting,
    so the collector has nothing to find in them: freezing them every GC_SETTLE_SECONDS
    keeps every collection down to what the last seconds allocated. The cost: a reference
    cycle formed later among frozen objects is never collected (asyncio can make one when
    a long-pending future fails); that leaks the cycle, not the shard's state.
    """
    gc.collect(1)
    gc.freeze()
