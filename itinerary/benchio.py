"""How benchmarks describe the machine and write their JSON reports, in one shape."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import psutil


def machine_facts() -> dict[str, Any]:
    """Cores, memory, Python and platform: what a figure needs to be compared with another."""
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_report(out: str | Path, args: dict[str, Any], key: str, results: Any) -> Path:
    """Write {"date", "machine", "args", key: results} as JSON to `out`; returns the path."""
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_facts(), "args": args, key: results}
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return path
