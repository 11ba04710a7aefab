"""The memory benchmark (scripts/bench_profiles.py) at a small size, so that it does not rot."""

from __future__ import annotations

from tests.integration.scripts import load_script


def test_each_run_holds_the_profiles_it_should() -> None:
    bench = load_script("bench_profiles")
    result = bench.run(profiles=3000, sweep_every=1000)
    active, passivated, evicted = result["active"], result["passivated"], result["evicted"]
    assert active["profiles"] == passivated["profiles"] == evicted["profiles"] == 3000
    assert active["passivated"] == 0 and active["resident"] == 3000
    assert passivated["passivated"] > 2000 and passivated["evicted"] == 0
    # evicted: only profiles still in a journey (an abandoned cart waits 30 min) stay
    assert evicted["evicted"] > 1000 and evicted["resident"] + evicted["evicted"] == 3000
    assert all(r["rss_growth_bytes"] > 0 and r["events"] > 3000 for r in (active, passivated, evicted))
