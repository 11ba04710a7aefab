"""StallWatch: loop lag measured against an injected clock, collector pauses from gc.callbacks."""

from __future__ import annotations

import asyncio
import gc

from itinerary.actors.stalls import StallWatch


class RecordedMetrics:
    """Stands in for the Ray histograms: keeps what was observed."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.pauses: list[float] = []

    def loop_lag(self, seconds: float) -> None:
        self.lags.append(seconds)

    def gc_pause(self, seconds: float) -> None:
        self.pauses.append(seconds)


class SteppedClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_held_loop_shows_as_lag_of_the_time_it_was_held() -> None:
    async def scenario() -> tuple[dict[str, float], list[float]]:
        clock, metrics = SteppedClock(), RecordedMetrics()
        watch = StallWatch("shard-x", period=0.001, clock=clock, metrics=metrics)  # type: ignore[arg-type]
        watch.start()
        await asyncio.sleep(0)  # the watch asks for its first wake-up at 100.001
        clock.now += 0.250  # the loop "was held" for 250 ms
        deadline = asyncio.get_running_loop().time() + 5.0
        while not metrics.lags and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.001)
        await watch.stop()
        return watch.summary()["loop_lag_ms"], metrics.lags

    summary, lags = asyncio.run(scenario())
    assert abs(lags[0] - 0.249) < 1e-9  # held 250 ms, asked to sleep 1 ms: woke 249 ms late
    assert summary["count"] >= 1
    assert 248 <= summary["max"] <= 250  # two significant digits of HdrHistogram


def test_collector_passes_are_recorded_and_the_hook_removed_when_stopped() -> None:
    async def scenario() -> tuple[dict[str, float], list[float]]:
        metrics = RecordedMetrics()
        watch = StallWatch("ingress-x", period=0.001, metrics=metrics)  # type: ignore[arg-type]
        watch.start()
        await asyncio.sleep(0.005)  # the task has registered its hook
        assert watch._on_gc in gc.callbacks
        gc.collect()
        gc.collect(0)
        summary = watch.summary()["gc_pause_ms"]
        await watch.stop()
        assert watch._on_gc not in gc.callbacks
        return summary, metrics.pauses

    summary, pauses = asyncio.run(scenario())
    assert summary["count"] >= 2
    assert len(pauses) >= 2 and all(p >= 0 for p in pauses)
    assert summary["max"] >= summary["p50"] > 0


def test_no_samples_summarise_as_a_zero_count() -> None:
    watch = StallWatch("gateway-x", metrics=RecordedMetrics())  # type: ignore[arg-type]
    assert watch.summary() == {"loop_lag_ms": {"count": 0}, "gc_pause_ms": {"count": 0}}
