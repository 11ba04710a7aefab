"""How busy the whole machine was during a load run: over the run, and second by second.

With the load tool and the deployment on one machine, a latency figure means little
without knowing whether the CPUs were full: then requests wait for a core, whatever the
code does. These read the machine's CPU times (all processes, through psutil, from
`/proc/stat` on Linux), not any one process's.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import psutil

CpuTimes = dict[str, float]


def read_cpu_times() -> CpuTimes:
    """The machine's CPU times since boot, in seconds summed over its CPUs, by kind."""
    return psutil.cpu_times()._asdict()  # type: ignore[no-any-return]


def machine_cpu(before: CpuTimes, after: CpuTimes) -> dict[str, float] | None:
    """How busy all of the machine's CPUs were between two readings of their times:
    `busy` is the share not idle and not waiting for I/O, `steal` the share a hypervisor
    gave to other guests. None when no time passed. Guest time is left out: Linux already
    counts it in user time."""
    spent = {key: after[key] - before.get(key, 0.0) for key in after if key not in ("guest", "guest_nice")}
    total = sum(spent.values())
    if total <= 0:
        return None
    idle = spent.get("idle", 0.0) + spent.get("iowait", 0.0)
    return {"busy": round(1 - idle / total, 4), "steal": round(spent.get("steal", 0.0) / total, 4)}


class MachineWatch:
    """The machine's busy share in each whole second of a run, from readings taken as
    often as `sample` is called (at least once a second; the load tool's progress loop
    calls it ten times a second, so a second's window is off by at most 0.1 s)."""

    def __init__(self, start: float, read: Callable[[], CpuTimes] = read_cpu_times) -> None:
        self.start = start  # the run's start, in the clock `sample` is given
        self.busy: dict[int, float] = {}  # second of the run -> busy share
        self._read = read
        self._second: int | None = None
        self._reading: CpuTimes | None = None

    def sample(self, now: float) -> None:
        second = math.floor(now - self.start)
        if second == self._second:
            return
        reading = self._read()
        # The window just closed counts only if it was one whole second of the run.
        if self._second is not None and self._second >= 0 and second == self._second + 1 and self._reading:
            share = machine_cpu(self._reading, reading)
            if share is not None:
                self.busy[self._second] = share["busy"]
        self._second, self._reading = second, reading
