"""scripts/bench_throttle.py end to end, short: one limit, a 2 s window (about 4 s in all).

Real gateway, real webhook provider, real HTTP to the real receiver in a child process.
The tolerances are loose enough for a busy CI machine (the benchmark itself is judged at
1 %), tight enough that a limiter running fast or slow, or a benchmark counting the wrong
arrivals, fails.
"""

from __future__ import annotations

from tests.integration.scripts import load_script

LIMIT = 200
WINDOW = 2.0
WARMUP = 0.5
BURST = 10


def test_throttle_benchmark_measures_the_configured_rate() -> None:
    bench = load_script("bench_throttle")
    result = bench.run([LIMIT], window=WINDOW, warmup=WARMUP, burst=BURST)

    assert result["window_s"] == WINDOW and result["warmup_s"] == WARMUP and result["storage"] == "sqlite"
    (row,) = result["results"]
    assert row["limiter"] == f"{LIMIT}/1s burst {BURST}"
    assert row["saturated"], "the backlog ran out: the rate measured would be the offered one"
    assert row["burst_excluded"]

    # Delivered over the window: within 5 % of the limit, and counted from the arrivals.
    assert abs(row["error_pct"]) <= 5.0, row
    assert row["delivered_per_s"] == row["messages_in_window"] / WINDOW
    assert len(row["per_second"]) == 2 and sum(row["per_second"]) == row["messages_in_window"]
    assert all(abs(n - LIMIT) <= 0.1 * LIMIT for n in row["per_second"]), row["per_second"]

    # Before the window: the burst and the warmup at the limit, not more (GCRA never lets
    # more than burst + rate x t through by t; a little slack for HTTP latency).
    assert row["arrived_before_window"] <= LIMIT * WARMUP + BURST + 0.05 * LIMIT * WARMUP

    # Every request that reached the receiver carried the bearer token: it answers 401 to
    # any other, and counts only authorised JSON calls as accepted.
    assert row["requests"] == row["accepted"] >= row["messages_in_window"] > 0
    assert row["refused"] == 0
    assert row["duplicates"] == 0
    outcomes = row["gateway_outcomes"]
    assert outcomes["failed"] == 0 and outcomes["expired"] == 0
    # A request the gateway counts as sent before stop() got its answer at the receiver.
    assert outcomes["sent"] <= row["accepted"]
