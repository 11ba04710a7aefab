"""Tables for people: the status of a running deployment and the demo's summary (rich)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from rich.console import Console
from rich.table import Table


def journey_counts(status: dict[str, Any]) -> dict[str, Counter[tuple[str, str]]]:
    """Step counts per journey: {journey: Counter({(node, kind): n})} summed over shards."""
    out: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for shard in status.get("shards", []):
        for journey, node, kind, count in shard.get("steps", []):
            out[journey][(node, kind)] += count
    return out


# (column heading, key in the status record); the first column is the record's name.
SHARD_COLUMNS = (
    ("profiles", "profiles"),
    ("passivated", "profiles_passivated"),
    ("active instances", "active_total"),
    ("pending timers", "pending_timers"),
    ("timer p99 ms", "timer_p99_ms"),
    ("events applied", "events_applied"),
    ("duplicates", "duplicates"),
    ("decisions", "decisions"),
    ("sends", "sends"),
    ("snapshots", "snapshots"),
    ("recovered in s", "recovery_s"),
)
INGRESS_COLUMNS = (
    ("port", "port"),
    ("requests", "requests"),
    ("accepted", "accepted"),
    ("rejected", "rejected"),
    ("429", "throttled"),
    ("errors", "errors"),
    ("queued", "queued"),
)


def _records_table(
    title: str, first: str, columns: tuple[tuple[str, str], ...], records: list[dict[str, Any]]
) -> Table:
    """One row per actor record; an actor that did not answer shows its error instead."""
    table = Table(title=title)
    table.add_column(first)
    for heading, _ in columns:
        table.add_column(heading, justify="right")
    for record in records:
        if "error" in record:
            table.add_row(record.get("name", "?"), f"[red]{record['error']}[/red]", *[""] * (len(columns) - 1))
        else:
            table.add_row(record["name"], *(str(record.get(key, "")) for _, key in columns))
    return table


def render_status(status: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    shards = [
        dict(
            s,
            active_total=sum(s["active_instances"].values()),
            snapshots=s.get("storage", {}).get("snapshots", ""),
            recovery_s=s.get("recovery", {}).get("seconds", ""),
            timer_p99_ms=s.get("timer_lateness_ms", {}).get("p99", ""),
        )
        if "error" not in s
        else s
        for s in status.get("shards", [])
    ]
    console.print(_records_table("Profile shards", "shard", SHARD_COLUMNS, shards))
    journeys = Table(title="Journeys")
    for col in ("journey", "version", "status", "nodes", "active instances", "entered", "exited"):
        journeys.add_column(col, justify="left" if col in ("journey", "status") else "right")
    counts = journey_counts(status)
    for j in status.get("journeys", []):
        active = sum(s.get("active_instances", {}).get(j["id"], 0) for s in status.get("shards", []))
        steps = counts.get(j["id"], Counter())
        entered = sum(c for (_, kind), c in steps.items() if kind == "entered")
        exited = sum(c for (_, kind), c in steps.items() if kind == "exited")
        journeys.add_row(
            j["id"], str(j["version"]), j["status"], str(j["nodes"]), str(active), str(entered), str(exited)
        )
    console.print(journeys)
    render_journeys(status, console)
    render_gateways(status.get("gateways", []), console)
    console.print(_records_table("Ingress", "ingress", INGRESS_COLUMNS, status.get("ingresses", [])))
    render_stalls(status, console)
    console.print(control_plane_line(status))


def control_plane_line(status: dict[str, Any]) -> str:
    """The supervisor's own state in a line: how long it has run, whether Ray restarted it,
    and which actors it had to re-create."""
    line = f"supervisor: up {status.get('uptime', 0):.0f} s"
    if status.get("supervisor_restarted"):
        line += ", restarted by Ray and took the running deployment over"
    restarts = status.get("restarts") or {}
    recreated = ", ".join(f"{name} x{count}" for name, count in sorted(restarts.items()))
    return f"{line}; actors re-created: {recreated or 'none'}"


def render_stalls(status: dict[str, Any], console: Console) -> None:
    """Per actor, how long its event loop could not run since start (see actors/stalls.py)."""
    table = Table(title="Event-loop stalls since start (ms)")
    table.add_column("actor")
    for heading in ("loop lag p99", "loop lag max", "GC passes", "GC pause p99", "GC pause max"):
        table.add_column(heading, justify="right")
    for group in ("shards", "gateway_actors", "ingresses"):
        for record in status.get(group, []):
            stalls = record.get("stalls")
            if not stalls:
                continue
            lag, gc = stalls.get("loop_lag_ms", {}), stalls.get("gc_pause_ms", {})
            table.add_row(
                str(record.get("name") or record.get("channel") or "?"),
                *(_ms(d.get(k)) for d, k in ((lag, "p99"), (lag, "max"))),
                str(gc.get("count", 0)),
                *(_ms(d.get(k)) for d, k in ((gc, "p99"), (gc, "max"))),
            )
    if table.row_count:
        console.print(table)


def _ms(value: Any) -> str:
    return "" if value is None else f"{value:,.1f}"


def render_journeys(status: dict[str, Any], console: Console) -> None:
    table = Table(title="Journeys: entries, exits and passes per node")
    for col in ("journey", "node", "entered", "passed", "actions", "timeouts", "errors", "exited", "discarded"):
        table.add_column(col, justify="left" if col in ("journey", "node") else "right")
    for journey, counts in sorted(journey_counts(status).items()):
        nodes = sorted({node for node, _ in counts})
        for node in nodes:
            row = [counts[(node, k)] for k in ("entered", "node", "action", "timeout", "error", "exited", "discarded")]
            table.add_row(journey, node, *(str(v) if v else "" for v in row))
        totals = [
            sum(c for (_, k), c in counts.items() if k == kind)
            for kind in ("entered", "node", "action", "timeout", "error", "exited", "discarded")
        ]
        table.add_row(
            f"[bold]{journey}[/bold]",
            "[bold]all nodes[/bold]",
            *(f"[bold]{v}[/bold]" for v in totals),
            end_section=True,
        )
    console.print(table)


def render_gateways(gateways: list[dict[str, Any]], console: Console, observed: dict[str, float] | None = None) -> None:
    table = Table(title="Channel gateways")
    for col in (
        "channel",
        "mode",
        "limit/s",
        "sent",
        "failed",
        "throttled",
        "expired",
        "retries",
        "queued",
        "in flight",
        "outbox pending",
        "dead letters",
        "observed rate/s",
    ):
        table.add_column(col, justify="left" if col in ("channel", "mode") else "right")
    for g in gateways:
        if "error" in g:
            table.add_row(g.get("name", "?"), f"[red]{g['error']}[/red]", *[""] * 11)
            continue
        counters = g.get("outcomes", {})
        rate = g.get("rate_per_s")
        seen = observed.get(g["name"]) if observed else g.get("delivery_rate_per_s")
        actor = g.get("gateway")
        grouped = actor is not None and actor != f"gateway-{g['name']}"
        table.add_row(
            f"{g['name']} (in {actor})" if grouped else g["name"],
            str(g.get("mode") or "-"),
            f"{rate:.0f}" if rate else "-",
            str(counters.get("sent", 0)),
            str(counters.get("failed", 0)),
            str(counters.get("throttled", 0)),
            str(counters.get("expired", 0)),
            str(g.get("retries", 0)),
            str(g.get("queue_depth", 0)),
            str(g.get("in_flight", 0)),
            str(g.get("outbox", {}).get("pending", "-")),
            str(g.get("outbox", {}).get("dead", "-")),
            f"{seen:.1f}" if seen is not None else "-",
        )
    console.print(table)
