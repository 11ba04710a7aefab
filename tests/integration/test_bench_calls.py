"""scripts/bench_calls.py end to end, short: two Ray actors in a Ray of the script's own
(a child process, since the test session holds a Ray already)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_call_benchmark_measures_both_ways_and_the_stream_is_the_cheaper(tmp_path: Path) -> None:
    out = tmp_path / "calls.json"
    subprocess.run(
        [sys.executable, "scripts/bench_calls.py", "--calls", "200", "--rounds", "1", "--out", str(out)],
        cwd=REPO,
        check=True,
        timeout=180,
        capture_output=True,
    )
    result = json.loads(out.read_text())
    assert result["calls"] == 200 and set(result["medians"]) == {"ray", "stream"}
    ray_call, stream = result["medians"]["ray"], result["medians"]["stream"]
    for way in (ray_call, stream):
        assert all(way[key] > 0 for key in ("caller_us", "callee_us", "answer_us")), way
    # The reason streams exist; a loose bound (measured: about a tenth), for a busy CI box.
    assert stream["caller_us"] + stream["callee_us"] < (ray_call["caller_us"] + ray_call["callee_us"]) / 2
