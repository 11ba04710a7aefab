"""The load tool's results: one report dict, shown as rich tables, written as JSON and a PNG.

`build_report` gathers everything a run measured into plain data (percentiles in ms, a
per-second timeline, the encoded histograms so runs can be merged or re-analysed later);
`render` prints it, `write_json` and `write_chart` save it.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from itinerary.load.schedule import Schedule
from itinerary.load.stats import DeliveryStats, SenderStats, encode_histogram, percentiles_ms

__all__ = ["build_report", "render", "write_chart", "write_json"]

LATENCY_COLUMNS = ("p50", "p90", "p99", "p99.9", "max")
CLIENT_CPU_HINT = 0.2  # share of the machine's CPU this client may use before a note says so
# How busy the machine's CPUs may be over a run before a note says the figures include
# waiting for a core: with everything on one machine, a latency target missed at 95 %
# busy says the machine is full, not that a part is slow.
MACHINE_BUSY_HINT = 0.9
STEAL_HINT = 0.05  # share of CPU time the hypervisor took back before a note says so


def build_report(
    *,
    options: dict[str, Any],
    schedule: Schedule,
    sender: SenderStats,
    delivery: DeliveryStats | None,
    traffic: dict[str, Any],
    start_epoch: float,
    duplicates: int = 0,
    gateways: dict[str, Any] | None = None,
    stopped_after: float | None = None,
    client: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything one run measured, as JSON-ready data.

    `gateways` is what the deployment's /v1/status said of each channel over the run
    (see main.gateway_changes), or None when it could not be read. `stopped_after`: the
    run was stopped (Ctrl-C) this many seconds after the start; rates count to then.
    `client`: the parent process's CPU seconds (`parent_s`: receivers, progress) over
    `wall_s` seconds from the start to the end of the drain; the senders' CPU is in `sender`;
    `machine`, when known, how busy the whole machine was meanwhile, and `machine_by_second`
    in each second of the run (see itinerary.load.machine); the timeline shows the latter.
    """
    counts = sender.counts
    closed = bool(options.get("closed_loop"))
    # Sending lasted the schedule (or until the stop); the run until the last answer.
    sending = schedule.duration if stopped_after is None else max(1e-3, min(schedule.duration, stopped_after))
    target_events = round(schedule.events_by(sending))
    elapsed = max(sending, sender.last_answer or 0.0)
    events = {
        "offered": counts["events_offered"],
        "sent": counts["events_sent"],
        "accepted": counts["accepted"],
        "rejected": counts["rejected"],
        "429": counts["events_429"],
        "failed": counts["events_failed"],
        "missed": counts["events_missed"],
    }
    report: dict[str, Any] = {
        "tool": "itinerary load",
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start_epoch)),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "options": options,
        "schedule": {
            "name": "closed loop" if closed else schedule.name,
            "duration_s": schedule.duration,
            "peak_rate": None if closed else schedule.peak_rate,
            "target_events": None if closed else target_events,
        },
        "stopped_after_s": stopped_after,
        "start_epoch": start_epoch,
        "elapsed_s": elapsed,
        "events": events,
        "requests": {"sent": counts["batches_sent"], "missed": counts["batches_missed"], **dict(sender.statuses)},
        "rates": {
            "target": None if closed else target_events / sending,
            "sent": events["sent"] / sending,
            "achieved": events["accepted"] / elapsed,
        },
        "ingest_latency_ms": percentiles_ms(sender.ingest),
        "service_time_ms": percentiles_ms(sender.service),
        "client_lag_ms": percentiles_ms(sender.lag),
        "client_cpu": _client_cpu(sender, client, events["sent"]),
        "machine_cpu": (client or {}).get("machine"),
        "traffic": traffic,
        "delivery": _delivery(delivery, duplicates),
        "gateways": gateways,
        "timeline": _timeline(schedule, sender, delivery, closed, (client or {}).get("machine_by_second") or {}),
        "histograms_us": {
            "ingest": encode_histogram(sender.ingest),
            "service": encode_histogram(sender.service),
            "client_lag": encode_histogram(sender.lag),
            **({"delivery": encode_histogram(delivery.overall)} if delivery is not None else {}),
        },
    }
    return report


def _client_cpu(sender: SenderStats, client: dict[str, Any] | None, sent: int) -> dict[str, Any]:
    """What this client cost in CPU: load-tool CPU is CPU the deployment did not have
    when both share a machine, so a reader needs it to judge the figures."""
    parent = client["parent_s"] if client else 0.0
    total = sender.cpu_seconds + parent
    cpus = os.cpu_count() or 1
    return {
        "senders_s": round(sender.cpu_seconds, 3),
        "parent_s": round(parent, 3),  # the receivers and live progress
        "us_per_event": round(total / sent * 1e6, 1) if sent else None,
        "share_of_machine": round(total / (client["wall_s"] * cpus), 4) if client and client["wall_s"] > 0 else None,
    }


def _delivery(delivery: DeliveryStats | None, duplicates: int) -> dict[str, Any]:
    if delivery is None:
        return {"measured": False}
    return {
        "measured": True,
        "messages": dict(sorted(delivery.messages.items())),
        "total": delivery.total,
        "duplicates": duplicates,
        "latency_ms": percentiles_ms(delivery.overall),
        "channels": {name: percentiles_ms(h) for name, h in sorted(delivery.channels.items())},
        "journeys": {
            name: {**percentiles_ms(delivery.journeys[name]), "count": count}
            if name in delivery.journeys
            else {"count": count}
            for name, count in sorted(delivery.journey_messages.items())
        },
        **dict(delivery.counts),
    }


def _timeline(
    schedule: Schedule,
    sender: SenderStats,
    delivery: DeliveryStats | None,
    closed: bool,
    machine_busy: dict[int, float],
) -> list[dict[str, Any]]:
    seconds = set(sender.timeline) | (set(delivery.timeline) if delivery is not None else set())
    seconds = {t for t in seconds if t >= 0}
    rows = []
    for t in range(max(seconds) + 1 if seconds else 0):
        second = sender.timeline.get(t)
        counts = second.counts if second is not None else {}
        row: dict[str, Any] = {
            "t": t,
            "target": None if closed else schedule.events_by(t + 1) - schedule.events_by(t),
            **{k: counts.get(k, 0) for k in ("offered", "sent", "accepted", "rejected", "429", "failed", "missed")},
        }
        if second is not None and second.latency.get_total_count():
            lat = percentiles_ms(second.latency)
            row.update(p50_ms=lat["p50"], p99_ms=lat["p99"], max_ms=lat["max"])
        if delivery is not None:
            got = delivery.timeline.get(t)
            row["delivered"] = got.counts["delivered"] if got is not None else 0
            if got is not None and got.latency.get_total_count():
                lat = percentiles_ms(got.latency)
                row.update(delivery_p50_ms=lat["p50"], delivery_p99_ms=lat["p99"])
        if t in machine_busy:
            row["machine_busy"] = machine_busy[t]
        rows.append(row)
    return rows


# -- rendering ------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _latency_row(table: Table, name: str, figures: dict[str, float], **style: Any) -> None:
    count = int(figures.get("count", 0))
    table.add_row(name, f"{count:,}", *(_ms(figures.get(c)) for c in LATENCY_COLUMNS), **style)


def render(report: dict[str, Any], console: Console | None = None) -> None:
    """Print the final tables and the hints the figures call for."""
    console = console or Console()
    options, events, rates = report["options"], report["events"], report["rates"]
    mode = "closed loop" if options.get("closed_loop") else f"open loop, {report['schedule']['name']}"
    console.rule(
        f"[bold]itinerary load[/bold]: {mode}, {report['schedule']['duration_s']:g} s, batch {options['batch']}, "
        f"{options['connections']} connections x {options['processes']} process(es), "
        f"{options['profiles']:,} profiles" + (f" (zipf {options['zipf']:g})" if options.get("zipf") else ""),
        align="left",
    )
    summary = Table(title="Events", title_justify="left")
    summary.add_column("events")
    summary.add_column("count", justify="right")
    summary.add_column("per second", justify="right")
    seconds = report["elapsed_s"]
    if report.get("stopped_after_s") is not None:
        console.print(f"[yellow]stopped after {report['stopped_after_s']:.1f} s[/yellow]: figures up to then")
    if rates["target"] is not None:
        summary.add_row("target", f"{report['schedule']['target_events']:,}", f"{rates['target']:,.0f}")
    summary.add_row("offered (came due)", f"{events['offered']:,}", "")
    summary.add_row("sent", f"{events['sent']:,}", f"{rates['sent']:,.0f}")
    summary.add_row("accepted (202)", f"{events['accepted']:,}", f"{rates['achieved']:,.0f}", style="bold")
    summary.add_row("rejected (invalid)", f"{events['rejected']:,}", "")
    summary.add_row("refused with 429", f"{events['429']:,}", "")
    summary.add_row("failed (other answers, errors)", f"{events['failed']:,}", "")
    summary.add_row("missed (never sent)", f"{events['missed']:,}", "")
    console.print(summary)
    console.print(f"accepted per second = accepted / {seconds:.1f} s (the schedule, or until the last answer)")

    statuses = {k: v for k, v in report["requests"].items() if k not in ("sent", "missed")}
    console.print("requests: " + ", ".join(f"{k}: {v:,}" for k, v in sorted(statuses.items())) or "none")
    cpu = report.get("client_cpu") or {}
    if cpu.get("us_per_event") is not None:
        share = cpu.get("share_of_machine")
        console.print(
            f"this client's CPU: {cpu['us_per_event']:,.0f} µs per event sent (senders {cpu['senders_s']:,.1f} s, "
            f"receivers and progress {cpu['parent_s']:,.1f} s)"
            + (f", {share:.0%} of this machine's {os.cpu_count()} CPUs" if share is not None else "")
        )
    machine = report.get("machine_cpu")
    if machine:
        console.print(
            f"this machine's CPUs were {machine['busy']:.0%} busy during the run"
            + (f" (steal {machine['steal']:.0%})" if machine["steal"] >= 0.005 else "")
        )

    latency = Table(title="Ingest latency (ms)", title_justify="left")
    latency.add_column("measured")
    latency.add_column("requests", justify="right")
    for col in LATENCY_COLUMNS:
        latency.add_column(col, justify="right")
    first = "from scheduled send" if not options.get("closed_loop") else "from send (closed loop)"
    _latency_row(latency, first, report["ingest_latency_ms"], style="bold")
    _latency_row(latency, "service time (from actual send)", report["service_time_ms"])
    _latency_row(latency, "client lag (scheduled -> sent)", report["client_lag_ms"])
    console.print(latency)

    delivery = report["delivery"]
    if delivery.get("measured"):
        table = Table(title="Event-to-delivery latency (ms, ingress accepted the event -> message arrived)")
        table.title_justify = "left"
        table.add_column("channel / journey")
        table.add_column("messages", justify="right")
        for col in LATENCY_COLUMNS:
            table.add_column(col, justify="right")
        # Message counts include messages without an event time; percentiles cannot.
        for name, count in delivery["messages"].items():
            _latency_row(table, f"channel {name}", {**delivery["channels"].get(name, {}), "count": count})
        for name, figures in delivery["journeys"].items():
            _latency_row(table, f"journey {name}", figures)
        _latency_row(table, "all", {**delivery["latency_ms"], "count": delivery["total"]}, style="bold")
        console.print(table)
    gateways = report.get("gateways")
    if gateways:
        table = Table(title="Gateways during the run (from /v1/status)", title_justify="left")
        columns = ("channel", "limit", "sent", "failed", "refused: queue full", "queued at the end", "circuit")
        for col in columns:
            table.add_column(col, justify="left" if col in ("channel", "limit", "circuit") else "right")
        for name, g in gateways.items():
            table.add_row(
                name,
                str(g["limit"]),
                f"{g['sent']:,}",
                f"{g['failed']:,}",
                f"{g['queue_full']:,}",
                f"{g['queued']:,}",
                str(g.get("circuit") or "-"),
            )
        console.print(table)
    for hint in hints(report):
        console.print(f"[yellow]note:[/yellow] {hint}")


def hints(report: dict[str, Any]) -> list[str]:
    """What a reader should know about these figures (the client's limits, pushback...)."""
    out: list[str] = []
    events = report["events"]
    lag = report["client_lag_ms"]
    options = report["options"]
    if events["missed"]:
        out.append(
            f"{events['missed']:,} events came due but were never sent (the backlog was full, or still waiting "
            "10 s after the end): the server (or this client) could not keep up; they are not in the percentiles"
        )
    if not options.get("closed_loop") and lag.get("count") and lag.get("p99", 0) > 100:
        out.append(_lag_hint(report))
    cpu = report.get("client_cpu") or {}
    share = cpu.get("share_of_machine")
    if share is not None and share >= CLIENT_CPU_HINT:
        out.append(
            f"this client used {share:.0%} of the machine's CPU ({cpu['us_per_event']:,.0f} µs per event sent: "
            f"senders {cpu['senders_s']:,.1f} s, receivers and progress {cpu['parent_s']:,.1f} s); on a machine "
            "it shares with the deployment, that CPU was not the deployment's (run it on another machine to "
            "measure the deployment alone)"
        )
    machine = report.get("machine_cpu") or {}
    if machine.get("busy", 0.0) >= MACHINE_BUSY_HINT:
        out.append(
            f"this machine's CPUs were {machine['busy']:.0%} busy during the run: requests and messages waited "
            "for a core, and the latency figures include that wait; with the deployment and this client on one "
            "machine, they measure what the machine can do, not what any part of the deployment can"
        )
    if machine.get("steal", 0.0) >= STEAL_HINT:
        out.append(
            f"the hypervisor took {machine['steal']:.0%} of this machine's CPU time for other guests during the "
            "run: the figures are lower than the same machine gives on its own"
        )
    if events["429"]:
        out.append(f"{events['429']:,} events were refused with 429: the ingress queues were full (backpressure)")
    if events["failed"]:
        out.append("some requests failed: see the requests line for the statuses and errors")
    delivery = report["delivery"]
    if delivery.get("measured"):
        if not delivery["total"]:
            out.append(
                "no message reached the receivers: are the channels pointed at them "
                "(the demo config's 127.0.0.1:2525 and :8091), and do the journeys send?"
            )
        if delivery.get("before_run"):
            out.append(f"{delivery['before_run']:,} messages were for events from before this run (not counted)")
        if delivery.get("without_event_time"):
            out.append(
                f"{delivery['without_event_time']:,} messages carried no event time: sends that follow a timer "
                "(a journey's wait, e.g. cart abandonment) have none; they are counted, without a latency"
            )
        if delivery.get("clock_skew"):
            out.append(f"{delivery['clock_skew']:,} messages arrived before their event time: clocks differ")
        queued = sum(g["queued"] for g in (report.get("gateways") or {}).values())
        out.append(
            "delivery latency covers the messages received during the run and the drain"
            + (f"; {queued:,} were still queued in the gateways (channel rate limits)" if queued else "")
        )
    if report.get("gateways") is None and options.get("admin_token"):
        out.append("no gateway figures: /v1/status did not answer the admin key (--admin-token; '' to skip)")
    return out


def _lag_hint(report: dict[str, Any]) -> str:
    """Why batches waited in the client: all connections busy, or this process too slow."""
    lag, service = report["client_lag_ms"], report["service_time_ms"]
    options = report["options"]
    connections = options["connections"] * options["processes"]
    # Little's law: requests in flight on average = requests per second x seconds each.
    in_flight = report["requests"].get("sent", 0) / report["elapsed_s"] * service.get("mean", 0.0) / 1000
    text = f"client lag p99 {lag['p99']:,.0f} ms: due batches waited in this client "
    if in_flight >= 0.7 * connections or service.get("p99", 0.0) >= lag["p99"]:
        return text + (
            f"for one of the {connections} connections, busy with a slow server (~{in_flight:.0f} requests in "
            f"flight on average, service time p99 {service.get('p99', 0.0):,.0f} ms): that wait is the server's "
            "doing and belongs in the latency (open loop); more --connections put more requests in flight"
        )
    return text + "while connections were free: this client fell behind the schedule; add --processes"


# -- files ----------------------------------------------------------------------------------


def write_json(report: dict[str, Any], path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return out


def write_chart(report: dict[str, Any], path: str | Path) -> Path:
    """A PNG: events/s (target, sent, accepted, refused) and latencies per second."""
    # The Figure API with the Agg canvas: no pyplot, no GUI backend, no global state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = report["timeline"]
    delivered = report["delivery"].get("measured") and any(r.get("delivered") for r in rows)
    panels = 3 if delivered else 2
    figure = Figure(figsize=(11, 3.2 * panels), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(panels, 1, sharex=True)
    t = [r["t"] for r in rows]

    rate = axes[0]
    if report["rates"]["target"] is not None:
        rate.step(t, [r["target"] for r in rows], where="post", label="target", color="grey", linestyle="--")
    rate.plot(t, [r["sent"] for r in rows], label="sent", color="tab:blue", alpha=0.6)
    rate.plot(t, [r["accepted"] for r in rows], label="accepted", color="tab:green")
    refused = [r["429"] + r["failed"] + r["missed"] for r in rows]
    if any(refused):
        rate.plot(t, refused, label="429 + failed + missed", color="tab:red")
    rate.set_ylim(bottom=0)
    rate.set_ylabel("events/s")
    rate.set_title(f"itinerary load: {report['schedule']['name']} ({report['date']})", loc="left")
    rate.legend(loc="upper left", fontsize="small")
    rate.grid(alpha=0.3)

    latency = axes[1]
    for key, label, color, style in (
        ("p50_ms", "p50", "tab:green", "-"),
        ("p99_ms", "p99", "tab:orange", "-"),
        ("max_ms", "max", "tab:red", ":"),  # dotted: with few requests a second it is the p99
    ):
        points = [(r["t"], r[key]) for r in rows if key in r]
        if points:
            latency.plot(*zip(*points, strict=True), label=label, color=color, linestyle=style)
    busy = [(r["t"], r["machine_busy"] * 100) for r in rows if "machine_busy" in r]
    if busy:
        # Beside the latency it explains: a second spent at 100 % is a second of waiting for a core.
        machine = latency.twinx()
        machine.plot(*zip(*busy, strict=True), label="machine busy %", color="tab:grey", alpha=0.5, linewidth=1)
        machine.set_ylim(0, 105)
        machine.set_ylabel("machine busy, %")
        machine.legend(loc="upper right", fontsize="small")
    latency.set_yscale("log")
    latency.set_ylabel("ingest latency, ms")
    latency.set_title("ingest latency by scheduled second (from scheduled send time)", loc="left", fontsize="small")
    latency.legend(loc="upper left", fontsize="small")
    latency.grid(alpha=0.3, which="both")

    if delivered:
        deliveries = axes[2]
        for key, label, color in (("delivery_p50_ms", "p50", "tab:purple"), ("delivery_p99_ms", "p99", "tab:brown")):
            points = [(r["t"], r[key]) for r in rows if key in r]
            if points:
                deliveries.plot(*zip(*points, strict=True), label=f"event-to-delivery {label}", color=color)
        deliveries.set_yscale("log")
        deliveries.set_ylabel("latency, ms")
        counts = deliveries.twinx()
        counts.bar(t, [r.get("delivered", 0) for r in rows], alpha=0.2, color="tab:grey", label="messages/s")
        counts.set_ylabel("messages/s")
        deliveries.set_title("messages by arrival second", loc="left", fontsize="small")
        if deliveries.get_legend_handles_labels()[0]:
            deliveries.legend(loc="upper left", fontsize="small")
        deliveries.grid(alpha=0.3, which="both")
    axes[-1].set_xlabel("seconds since start")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    return out
