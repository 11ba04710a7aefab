"""The timer benchmark (scripts/bench_timers.py) at a small size, so that it does not rot."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from tests.integration.scripts import load_script


def test_every_timer_fires_and_its_lateness_is_recorded(tmp_path: Path) -> None:
    bench = load_script("bench_timers")
    result = bench.run(profiles=2000, wait_s=1.0, batch=500)

    firing, memory = result["firing"], result["memory"]
    assert result["feed"]["entered"] == 2000
    assert memory["pending_timers_after_feed"] == 2000
    assert firing["complete"] and firing["timers_fired"] == 2000 and firing["pending"] == 0
    lateness = firing["lateness"]
    assert lateness["count"] == 2000 == firing["status_timer_lateness_ms"]["count"]
    # the tick is 20 ms: an idle shard fires within a few ticks; 500 ms leaves room for a busy machine
    assert 0 < lateness["p50_ms"] <= lateness["p99_ms"] <= lateness["max_ms"] < 500
    assert lateness["within_1s"] == 1.0
    # a heap entry is a few tuples and an int: well under a kilobyte, and not nothing
    assert 50 < memory["sample"]["heap_entry_exclusive_bytes"] < 1000
    assert 50 < memory["heap"]["traced_bytes_per_timer"] < 1000

    console = Console(file=(tmp_path / "out.txt").open("w"), width=120)
    for table in bench.tables(result):
        console.print(table)
    json.dumps(result)  # the report is JSON-serialisable
