"""How long an actor's event loop could not run: loop lag and collector pauses.

Everything a data-plane actor does runs on one event loop, so while the loop is held (a
collector pass, a long slice of work, the process waiting for a core) every request it
holds waits. The ingest latency of a whole load test was set by such stalls (see
docs/benchmarks.md, 2026-12-07 evening), and nothing showed them: `StallWatch` does.

- Loop lag: a task sleeps `period` and records how much later than asked it woke. Cheap
  (10 wake-ups a second at 100 ms); a stall shorter than the period is seen only when a
  wake-up falls inside it, so the figures are a sample, and the worst ones are seen.
- Collector pauses: a `gc.callbacks` hook times every pass, exactly.

Both are kept since start in HdrHistograms (percentiles in `status`) and observed into
Ray histograms, so the dashboard shows them per actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable
from typing import Any

from hdrh.histogram import HdrHistogram

from itinerary.actors.metrics import StallMetrics
from itinerary.load.stats import COARSE, new_histogram, percentiles_ms, record

STATUS_PERCENTILES = (50.0, 99.0, 99.9)  # what `status` shows of each histogram

LOOP_PERIOD = 0.1  # seconds between the loop-lag task's wake-ups (each costs ~0.1-0.2 ms of CPU in an actor)


class StallWatch:
    """Measures one actor's loop lag and collector pauses; `start` on the actor's loop."""

    def __init__(
        self,
        actor: str,
        *,
        period: float = LOOP_PERIOD,
        clock: Callable[[], float] = time.perf_counter,
        metrics: StallMetrics | None = None,
    ) -> None:
        self.actor = actor
        self.period = period
        self._clock = clock
        self._metrics = metrics if metrics is not None else StallMetrics(actor)
        self.loop_lag = new_histogram(COARSE)
        self.gc_pauses = new_histogram(COARSE)
        self._gc_started: float | None = None
        self._pending_pauses: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin measuring (idempotent); call from the actor's event loop. Measuring ends
        when the task is cancelled (`stop`, or the loop shutting down)."""
        if self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._watch_loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _watch_loop(self) -> None:
        clock = self._clock
        gc.callbacks.append(self._on_gc)
        try:
            while True:
                asked = clock() + self.period
                await asyncio.sleep(self.period)
                self.record_lag(clock() - asked)
                self.flush_gc_pauses()
        finally:
            with contextlib.suppress(ValueError):
                gc.callbacks.remove(self._on_gc)

    def record_lag(self, seconds: float) -> None:
        record(self.loop_lag, seconds)
        self._metrics.loop_lag(max(0.0, seconds))

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        # Runs inside the collector: only a list append here (no metrics call, which could
        # want a lock the interrupted code holds); the loop task records the pauses.
        if phase == "start":
            self._gc_started = self._clock()
        elif self._gc_started is not None:
            self._pending_pauses.append(self._clock() - self._gc_started)
            self._gc_started = None

    def flush_gc_pauses(self) -> None:
        pauses, self._pending_pauses = self._pending_pauses, []
        for seconds in pauses:
            record(self.gc_pauses, seconds)
            self._metrics.gc_pause(seconds)

    def summary(self) -> dict[str, Any]:
        """Percentiles since start, in ms: `{"loop_lag_ms": {...}, "gc_pause_ms": {...}}`."""
        self.flush_gc_pauses()
        return {"loop_lag_ms": status_percentiles(self.loop_lag), "gc_pause_ms": status_percentiles(self.gc_pauses)}


def status_percentiles(histogram: HdrHistogram) -> dict[str, float]:
    """count, p50, p99, p99.9 and max of a microsecond histogram, in ms."""
    return percentiles_ms(histogram, STATUS_PERCENTILES, mean=False)
