#!/usr/bin/env python3
"""Re-record the expected step events of the replay fixtures (tests/fixtures/replay).

Only run this when a change of journey semantics is intended, and review the diff: the
replay tests exist to catch unintended changes.
"""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.unit.replay import load, replay  # noqa: E402

for path in sorted((REPO / "tests/fixtures/replay").glob("*.json")):
    stream = load(path)
    stream["expected"] = replay(stream)
    path.write_text(json.dumps(stream, indent=1) + "\n")
    print(f"{path.name}: {len(stream['expected'])} step events")
