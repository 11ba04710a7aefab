"""Shared test settings: where the repository and the XDM fixtures are."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "config" / "examples" / "demo.yaml"
