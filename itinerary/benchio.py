"""How benchmarks describe the machine and write their JSON reports, in one shape."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import AsyncIterator
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


CHILD_START_TIMEOUT = 30.0  # seconds for a child server to say where it listens


@contextlib.asynccontextmanager
async def child_server(
    script: str | Path, flag: str, env: dict[str, str]
) -> AsyncIterator[tuple[dict[str, Any], asyncio.subprocess.Process]]:
    """Run `python script flag` as a benchmark's endpoint in a process of its own.

    The child prints one JSON line when it listens (e.g. {"port": n}), which is yielded
    with the process (stdin and stdout are pipes: the child stops on a line from stdin).
    Secrets reach it in `env` (added to this environment), never in argv. The child is
    killed on the way out if it is still running."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(script).resolve()),
        flag,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), CHILD_START_TIMEOUT)
        if not line:
            raise RuntimeError(f"{Path(script).name} {flag} exited before listening")
        yield json.loads(line), process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
