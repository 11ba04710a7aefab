"""The notes under the load tool's tables: when the client's own CPU is worth a word."""

from __future__ import annotations

from typing import Any

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
