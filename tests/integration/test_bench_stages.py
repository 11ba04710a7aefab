"""scripts/bench_stages.py end to end, short: every stage measured, every event through all of them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.integration.scripts import load_script


def test_stage_benchmark_times_every_stage_of_every_event(tmp_path: Path) -> None:
    out = tmp_path / "stages.json"
    sizes = ["--events", "3000", "--profiles", "500", "--rounds", "2"]
    done = subprocess.run(
        [sys.executable, "scripts/bench_stages.py", *sizes, "--out", str(out)],
        cwd=REPO,
        check=True,
        timeout=180,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.read_text())["result"]
    stages = ("read", "route", "join", "log", "apply", "release")
    assert tuple(result["us_per_event"]) == stages
    assert all(result["us_per_event"][stage] > 0 for stage in stages), result["us_per_event"]
    # The demo's traffic is read by the fast path; the general path is measured beside it.
    assert result["fast_path_bodies"] == [result["bodies_per_round"]] * 2 == [6, 6]
    assert all(result["general_path_us_per_event"][stage] > 0 for stage in ("parse", "validate"))
    # Both rounds' events were all accepted, and all applied: the second round's are new
    # events (new ids) for the same customers, not duplicates the shard skips.
    assert result["accepted"] == [3000, 3000] and result["applied"] == [3000, 3000]
    parts = result["ingress_us_per_event"] + result["shard_us_per_event"]
    assert abs(parts - result["total_us_per_event"]) < 1e-6
    assert result["budget_us_per_event"] == 20
    assert "CPU per event, by stage" in done.stdout and "total" in done.stdout

    # The suite's section for it: a row per stage, then the total and the budget.
    section = load_script("bench_suite").stages_markdown(result)
    rows = [line for line in section if line.startswith("| ") and not line.startswith("| stage")]
    assert [row.split(" | ")[0][2:] for row in rows] == [*stages, "**total**"]
    assert "| log | shard |" in section[4 + stages.index("log")]
    assert "20 µs of CPU per event" in section[-1]
    assert any("took the fast path (`FastJsonDecoder`) for 100% of the bodies" in line for line in section)
