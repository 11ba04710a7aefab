"""The actors' metrics against real Ray metrics: every kind of update goes through the
process's buffer and reaches Ray's recorder from the exporter thread, without an error."""

from __future__ import annotations

from collections import Counter
from typing import Any


def test_every_metric_update_reaches_ray_from_the_exporter_thread(ray_session: Any) -> None:
    ray = ray_session

    @ray.remote
    class MetricsUser:
        def use(self) -> dict[str, Any]:
            import threading

            from itinerary.actors import metrics

            shard = metrics.ShardMetrics("shard-test")
            shard.batch(10, 2, Counter({("welcome", "send", "entered"): 3}))
            shard.outcomes(Counter({"sent": 4}))
            shard.logged(1)
            shard.snapshot()
            shard.recovered(0.5)
            shard.timers_fired(0.01)
            shard.gauges(100, 5, 20)
            ingress = metrics.IngressMetrics("ingress-test")
            for _ in range(3):
                ingress.request(202, 100, 1, 0.004, 50)
            ingress.fast_path()
            gateway = metrics.GatewayMetrics()
            for latency in (0.01, 0.02, 0.3):
                gateway.on_outcome("email", {"outcome": "sent"}, 0.001, latency)
            gateway.on_queue_depth("email", 7)
            gateway.on_circuit("email", "open", 0)
            gateway.on_circuit("email", "open", 2)
            stalls = metrics.StallMetrics("actor-test")
            stalls.loop_lag(0.002)
            stalls.gc_pause(0.001)
            exporter = metrics.exporter()
            assert exporter is not None
            exporter.flush()
            names = sorted(t.name for t in threading.enumerate())
            return {"exported": exporter.exported, "failed": exporter.failed, "threads": names}

    result = ray.get(MetricsUser.remote().use.remote(), timeout=60)  # type: ignore[attr-defined]
    assert result["failed"] == 0
    # 23 series (counters, gauges) and 9 histogram observations, one call each at least
    # (more if the thread's own flush split a series in two)
    assert result["exported"] >= 32
    assert "itinerary-metrics" in result["threads"]
