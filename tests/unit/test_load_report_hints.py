"""The notes under the load tool's tables: when the client's own CPU is worth a word."""

from __future__ import annotations

from typing import Any

from itinerary.load.machine import MachineWatch, machine_cpu
from itinerary.load.report import hints


def report(share: float | None) -> dict[str, Any]:
    return {
        "events": {"missed": 0, "429": 0, "failed": 0},
        "client_lag_ms": {"count": 0},
        "options": {"closed_loop": False},
        "delivery": {"measured": False},
        "gateways": {},
        "client_cpu": {"senders_s": 6.0, "parent_s": 3.0, "us_per_event": 45.0, "share_of_machine": share},
    }


def test_a_client_that_took_a_fifth_of_the_machine_says_so() -> None:
    [note] = hints(report(0.23))
    assert note.startswith("this client used 23% of the machine's CPU (45 µs per event sent")
    assert "senders 6.0 s, receivers and progress 3.0 s" in note


def test_a_light_client_or_an_unmeasured_one_says_nothing() -> None:
    assert hints(report(0.05)) == [] and hints(report(None)) == []


def test_machine_cpu_is_the_share_of_all_cpu_time_not_idle_or_waiting_for_io() -> None:
    before = {"user": 100.0, "nice": 0.0, "system": 50.0, "idle": 1000.0, "iowait": 10.0, "steal": 1.0}
    # 20 s on 2 CPUs = 40 CPU-seconds: 24 user, 6 system, 6 idle, 2 iowait, 2 steal.
    after = {"user": 124.0, "nice": 0.0, "system": 56.0, "idle": 1006.0, "iowait": 12.0, "steal": 3.0}
    assert machine_cpu(before, after) == {"busy": 0.8, "steal": 0.05}


def test_machine_cpu_leaves_guest_time_out_since_linux_counts_it_in_user_time() -> None:
    before = {"user": 0.0, "idle": 0.0, "guest": 0.0, "guest_nice": 0.0}
    after = {"user": 5.0, "idle": 5.0, "guest": 5.0, "guest_nice": 1.0}
    assert machine_cpu(before, after) == {"busy": 0.5, "steal": 0.0}


def test_machine_cpu_of_no_time_at_all_is_unknown() -> None:
    same = {"user": 1.0, "idle": 2.0}
    assert machine_cpu(same, same) is None


def test_a_full_machine_says_the_latency_includes_waiting_for_a_core() -> None:
    [note] = hints({**report(0.05), "machine_cpu": {"busy": 0.96, "steal": 0.0}})
    assert note.startswith("this machine's CPUs were 96% busy during the run: requests and messages waited")


def test_a_hypervisor_taking_time_is_named() -> None:
    notes = hints({**report(0.05), "machine_cpu": {"busy": 0.5, "steal": 0.12}})
    assert notes == [
        "the hypervisor took 12% of this machine's CPU time for other guests during the run: the figures are "
        "lower than the same machine gives on its own"
    ]


def test_a_machine_with_room_or_unmeasured_says_nothing() -> None:
    assert hints({**report(0.05), "machine_cpu": {"busy": 0.6, "steal": 0.01}}) == []
    assert hints({**report(0.05), "machine_cpu": None}) == []


def test_the_watch_gives_each_whole_second_of_the_run_its_own_busy_share() -> None:
    # A fake machine of one CPU: each reading is the times so far; busy 0.25 in second 0, 0.75 in 1.
    readings = iter(
        [
            {"user": 0.0, "idle": 0.0},  # half a second before the start
            {"user": 0.0, "idle": 0.0},  # at 0.05 s: second 0 begins
            {"user": 0.25, "idle": 0.75},  # at 1.02 s: second 0 ends
            {"user": 1.0, "idle": 1.0},  # at 2.01 s: second 1 ends
            {"user": 1.0, "idle": 4.0},  # at 5.0 s: 3 s later, no whole second of its own
        ]
    )
    watch = MachineWatch(start=100.0, read=lambda: next(readings))
    watch.sample(99.5)  # before the start: read, but its window is not the run's
    for now in (100.05, 100.5, 100.9, 101.02, 101.5, 102.01, 105.0):
        watch.sample(now)
    assert watch.busy == {0: 0.25, 1: 0.75}
