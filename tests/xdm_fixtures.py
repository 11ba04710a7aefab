"""Where the XDM example payloads are: the copy in tests/fixtures/xdm, else ../shared.

The repository carries its own copy (CC-BY-4.0, see tests/fixtures/xdm/NOTICE.md) so a
fresh clone is self-contained; a checkout that has the shared folder beside it still
works without the copy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CANDIDATES = (REPO / "tests" / "fixtures" / "xdm", REPO.parent / "shared" / "fixtures" / "xdm")


def fixtures_dir() -> Path:
    """The first folder of CANDIDATES that holds the examples."""
    for folder in CANDIDATES:
        if (folder / "experienceevent.example.1.json").is_file():
            return folder
    raise FileNotFoundError("no XDM fixtures in " + " or ".join(str(c) for c in CANDIDATES))


def load(name: str) -> Any:
    """One fixture file, parsed."""
    return json.loads((fixtures_dir() / name).read_text(encoding="utf-8"))


def event_files() -> list[Path]:
    """The ExperienceEvent examples: `experienceevent*.json` and `aep-web-sdk*.json`."""
    folder = fixtures_dir()
    return sorted([*folder.glob("experienceevent*.json"), *folder.glob("aep-web-sdk*.json")])
