"""Recorded input streams replayed through the pure engine give the recorded step events."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.replay import load, replay

FIXTURES = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "replay").glob("*.json"))


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_replay_gives_the_recorded_step_events(path: Path) -> None:
    stream = load(path)
    assert stream.get("expected"), "fixture has no recorded steps: run scripts/record_replay.py"
    assert replay(stream) == stream["expected"]
