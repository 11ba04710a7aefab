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


def render_status(status: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    shards = Table(title="Profile shards")
    for col in (
        "shard",
        "profiles",
        "active instances",
        "pending timers",
        "events applied",
        "duplicates",
        "decisions",
        "sends",
    ):
        shards.add_column(col, justify="right" if col != "shard" else "left")
    for s in status.get("shards", []):
        if "error" in s:
            shards.add_row(s.get("name", "?"), f"[red]{s['error']}[/red]", "", "", "", "", "", "")
            continue
        shards.add_row(
            s["name"],
            str(s["profiles"]),
            str(sum(s["active_instances"].values())),
            str(s["pending_timers"]),
            str(s["events_applied"]),
            str(s["duplicates"]),
            str(s["decisions"]),
            str(s["sends"]),
        )
    console.print(shards)
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
    ingress = Table(title="Ingress")
    for col in ("ingress", "port", "requests", "accepted", "rejected", "429", "errors", "queued"):
        ingress.add_column(col)
    for i in status.get("ingresses", []):
        if "error" in i:
            ingress.add_row(i.get("name", "?"), f"[red]{i['error']}[/red]", "", "", "", "", "", "")
            continue
        ingress.add_row(
            i["name"],
            str(i["port"]),
            str(i["requests"]),
            str(i["accepted"]),
            str(i["rejected"]),
            str(i["throttled"]),
            str(i["errors"]),
            str(i["queued"]),
        )
    console.print(ingress)


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
        "observed rate/s",
    ):
        table.add_column(col, justify="left" if col in ("channel", "mode") else "right")
    for g in gateways:
        if "error" in g:
            table.add_row(g.get("name", "?"), f"[red]{g['error']}[/red]", *[""] * 9)
            continue
        counters = g.get("outcomes", {})
        rate = g.get("rate_per_s")
        seen = observed.get(g["name"]) if observed else g.get("delivery_rate_per_s")
        table.add_row(
            g["name"],
            str(g.get("mode") or "-"),
            f"{rate:.0f}" if rate else "-",
            str(counters.get("sent", 0)),
            str(counters.get("failed", 0)),
            str(counters.get("throttled", 0)),
            str(counters.get("expired", 0)),
            str(g.get("retries", 0)),
            str(g.get("queue_depth", 0)),
            str(g.get("in_flight", 0)),
            f"{seen:.1f}" if seen is not None else "-",
        )
    console.print(table)
