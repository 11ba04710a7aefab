"""`itinerary status` tables: the shard table shows passivation and timer lateness."""

from __future__ import annotations

from rich.console import Console

from itinerary.report import render_status


def test_shard_rows_show_passivated_profiles_and_timer_lateness() -> None:
    shard = {
        "name": "profile-shard-00",
        "profiles": 1200,
        "profiles_passivated": 900,
        "active_instances": {"welcome": 3, "cart": 4},
        "pending_timers": 7,
        "timer_lateness_ms": {"count": 50, "p50": 12.5, "p99": 31.0, "p99.9": 40.0, "max": 41.0},
        "events_applied": 5000,
        "duplicates": 2,
        "decisions": 800,
        "sends": 90,
        "storage": {"snapshots": 3},
        "recovery": {"seconds": 0.4},
        "steps": [],
    }
    console = Console(record=True, width=250)
    render_status({"shards": [shard, {"name": "profile-shard-01", "error": "unreachable"}]}, console)
    text = console.export_text()
    header = next(line for line in text.splitlines() if "passivated" in line)
    row = next(line for line in text.splitlines() if "profile-shard-00" in line)
    assert "timer p99 ms" in header
    cells = [cell.strip() for cell in row.split("│") if cell.strip()]
    assert cells[:6] == ["profile-shard-00", "1200", "900", "7", "7", "31.0"]
    assert "unreachable" in text


def test_stalls_table_has_a_row_per_actor_that_reports_them() -> None:
    stalls = {
        "loop_lag_ms": {"count": 900, "p50": 0.4, "p99": 12.3, "p99.9": 30.0, "max": 41.5},
        "gc_pause_ms": {"count": 17, "p50": 2.0, "p99": 9.0, "p99.9": 9.0, "max": 9.0},
    }
    status = {
        "shards": [{"name": "profile-shard-00", "active_instances": {}, "steps": [], "stalls": stalls}],
        "gateway_actors": [
            {"name": "gateway-email", "stalls": {"loop_lag_ms": {"count": 0}, "gc_pause_ms": {"count": 0}}}
        ],
        "ingresses": [{"name": "ingress-0"}],  # an older actor without the figures: no row
    }
    console = Console(record=True, width=250)
    render_status(status, console)
    stalls_part = console.export_text().split("Event-loop stalls since start (ms)")[1]
    rows = {line.split("│")[1].strip(): line for line in stalls_part.splitlines() if line.count("│") >= 6}
    shard = [cell.strip() for cell in rows["profile-shard-00"].split("│") if cell.strip()]
    assert shard == ["profile-shard-00", "12.3", "41.5", "17", "9.0", "9.0"]
    gateway = [cell.strip() for cell in rows["gateway-email"].split("│") if cell.strip()]
    assert gateway == ["gateway-email", "0"]
    assert "ingress-0" not in stalls_part  # an actor without the figures gets no row


def test_a_channel_served_by_a_group_actor_names_it() -> None:
    gateways = [
        {"name": "email", "gateway": "gateway-messages", "mode": "throttle", "outcomes": {"sent": 5}},
        {"name": "sms", "gateway": "gateway-sms", "mode": "throttle", "outcomes": {"sent": 2}},
    ]
    console = Console(record=True, width=250)
    render_status({"gateways": gateways}, console)
    rows = {line.split("│")[1].strip(): line for line in console.export_text().splitlines() if line.count("│") > 3}
    assert "email (in gateway-messages)" in rows
    assert "sms" in rows  # an actor of its own: the channel's name alone


def test_the_control_plane_line_says_whether_the_supervisor_was_restarted_and_what_was_recreated() -> None:
    from itinerary.report import control_plane_line

    assert control_plane_line({"uptime": 12.4, "restarts": {}}) == "supervisor: up 12 s; actors re-created: none"
    restarted = {"uptime": 3, "supervisor_restarted": True, "restarts": {"profile-shard-01": 2, "ingress-0": 1}}
    assert control_plane_line(restarted) == (
        "supervisor: up 3 s, restarted by Ray and took the running deployment over; "
        "actors re-created: ingress-0 x1, profile-shard-01 x2"
    )
