"""`itinerary demo`: the whole pipeline on a local Ray, with real local receivers.

Starts an SMTP server (aiosmtpd) and an HTTP receiver that checks the bearer token, points
the demo channels at them through environment overrides, launches the system from the demo
config, streams a realistic set of XDM events for a few thousand profiles over HTTP, lets
the three journeys run, prints a summary and exits 0 when everything adds up.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import time
from collections import Counter
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from itinerary.aio import run
from itinerary.keys import LocalKeys, ensure_local_keys
from itinerary.receivers import SmtpReceiver, WebhookReceiver
from itinerary.report import journey_counts, render_gateways, render_journeys
from itinerary.traffic import TrafficGenerator

BATCH = 250
CONCURRENCY = 4
SETTLE_TIMEOUT = 120.0


def run_demo(config_file: str, profiles: int = 3000) -> int:
    return run(_demo(config_file, profiles))


async def _demo(config_file: str, profiles: int) -> int:
    import ray

    from itinerary.actors.runtime import launch_supervisor, start_local_ray
    from itinerary.config.loader import load_config

    console = Console(width=max(Console().width, 132))
    os.environ.setdefault("ITINERARY_DEMO_TOKEN", secrets.token_urlsafe(24))
    # The demo config turns API keys on; random ones unless the environment has them.
    keys = ensure_local_keys()
    smtp = SmtpReceiver()
    http = WebhookReceiver(token=os.environ["ITINERARY_DEMO_TOKEN"])
    await smtp.start()
    await http.start()
    # The config stays as written; the demo only re-points the channels at its receivers.
    os.environ["ITINERARY__CHANNELS__EMAIL__PORT"] = str(smtp.port)
    os.environ["ITINERARY__CHANNELS__LOYALTY_API__URL"] = f"{http.url}/v1/loyalty/members"
    os.environ["ITINERARY__CHANNELS__STORE_PUSH__URL"] = f"{http.url}/v1/push/send"
    os.environ.setdefault("ITINERARY__RUNTIME__INGRESS__PORT", "0")
    # Each demo starts from empty shard logs and outboxes, so its counts are its own; a
    # directory the demo made for itself is removed at the end (a run leaves ~100 MB).
    own_data = None
    if "ITINERARY__RUNTIME__DATA_DIR" not in os.environ:
        own_data = os.environ["ITINERARY__RUNTIME__DATA_DIR"] = tempfile.mkdtemp(prefix="itinerary-demo-")
    app = load_config(config_file)
    console.print(f"[bold]itinerary demo[/bold]: {profiles} profiles, config {config_file}")
    console.print(f"  SMTP receiver on 127.0.0.1:{smtp.port}, HTTP receiver on {http.url}")

    context = start_local_ray(app, dashboard=True, num_cpus=2)
    supervisor = launch_supervisor(app, config_file)
    try:
        info = await supervisor.start.remote()
        url = info["urls"][0]
        console.print(f"  ingest at {url}/v1/events; Ray dashboard at http://{context.dashboard_url}")
        started = time.time()
        sent = await _stream(url, profiles, started, keys)
        console.print(
            f"  streamed {sent['events']} events in {sent['seconds']:.1f}s "
            f"({sent['events'] / max(sent['seconds'], 1e-9):,.0f} events/s)"
        )
        status = await _settle(supervisor, console)
        access = await _check_keys(url, keys)
        smtp_msgs = smtp.messages
        _summary(console, sent, status, smtp_msgs, http.received)
        ok = _verdict(console, sent, status, smtp, http, access)
    finally:
        try:
            await supervisor.shutdown.remote()
        except Exception as exc:
            console.print(f"[yellow]shutdown: {exc}[/yellow]")
        ray.shutdown()
        await http.stop()
        await smtp.stop()
        if own_data is not None:
            shutil.rmtree(own_data, ignore_errors=True)
    return 0 if ok else 1


async def _stream(url: str, profiles: int, ts0: float, keys: LocalKeys) -> dict[str, Any]:
    """POST the scenario in batches over a few connections; count the answers."""
    generator = TrafficGenerator(profiles=profiles, seed=7)
    events = list(generator.scenario(ts0))
    # A few events the demo config knows nothing about, and one with no identity, so the
    # summary shows rejections with their reasons.
    stamp = events[0]["timestamp"]
    for i in range(5):
        events.append(
            {
                "_id": f"unknown-{i}",
                "timestamp": stamp,
                "eventType": "media.sessionStart",
                "identityMap": {"ECID": [{"id": generator.ecid(i)}]},
            }
        )
    events.append({"_id": "no-identity", "timestamp": stamp, "eventType": "commerce.purchases"})
    batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
    totals: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    started = time.perf_counter()
    async with aiohttp.ClientSession(headers=keys.ingest_headers) as session:

        async def worker() -> None:
            while not queue.empty():
                batch = queue.get_nowait()
                while True:
                    async with session.post(f"{url}/v1/events", json=batch) as response:
                        if response.status == 429:
                            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                            continue
                        body = await response.json()
                        totals[f"http {response.status}"] += 1
                        totals["accepted"] += body.get("accepted", 0)
                        for rejection in body.get("rejected", []):
                            totals["rejected"] += 1
                            reasons[rejection["reason"]] += 1
                        break

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return {"events": len(events), "seconds": time.perf_counter() - started, "totals": totals, "reasons": reasons}


# What the edge must answer: (label, method, path, key to send, expected status).
ACCESS_CHECKS = (
    ("events without a key", "POST", "/v1/events", None, 401),
    ("status with the ingest key", "GET", "/v1/status", "ingest", 403),
    ("status with the admin key", "GET", "/v1/status", "admin", 200),
    ("health without a key", "GET", "/healthz", None, 200),
)


async def _check_keys(url: str, keys: LocalKeys) -> dict[str, tuple[int, int]]:
    """Ask the ingress what it answers with no key, the ingest key and the admin key."""
    headers = {None: {}, "ingest": keys.ingest_headers, "admin": keys.admin_headers}
    answers: dict[str, tuple[int, int]] = {}
    async with aiohttp.ClientSession() as session:
        for label, method, path, key, expected in ACCESS_CHECKS:
            async with session.request(
                method, f"{url}{path}", json=[] if method == "POST" else None, headers=headers[key]
            ) as response:
                await response.read()
                answers[label] = (response.status, expected)
    return answers


async def _settle(supervisor: Any, console: Console) -> dict[str, Any]:
    """Wait until no journey instance is active and every gateway queue is empty."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    with console.status("journeys running (waits, reminders, deliveries)...") as spinner:
        while True:
            status = await supervisor.status.remote()
            active = sum(sum(s.get("active_instances", {}).values()) for s in status["shards"])
            queued = sum(g.get("queue_depth", 0) + g.get("in_flight", 0) for g in status["gateways"])
            spinner.update(f"journeys running: {active} active instances, {queued} messages queued")
            if (active == 0 and queued == 0) or time.monotonic() > deadline:
                return dict(status)
            await asyncio.sleep(0.5)


def _observed_rate(arrivals: list[float]) -> float | None:
    if len(arrivals) < 2:
        return None
    span = max(arrivals) - min(arrivals)
    return (len(arrivals) - 1) / span if span > 0 else None


def _summary(
    console: Console, sent: dict[str, Any], status: dict[str, Any], mails: list[Any], calls: list[Any]
) -> None:
    events = Table(title="Events")
    events.add_column("")
    events.add_column("count", justify="right")
    events.add_row("sent", str(sent["events"]))
    events.add_row("accepted", str(sent["totals"]["accepted"]))
    events.add_row("rejected", str(sent["totals"]["rejected"]))
    for reason, count in sent["reasons"].most_common(5):
        events.add_row(f"  rejected: {reason}", str(count))
    console.print(events)
    render_journeys(status, console)
    by_channel: dict[str, list[float]] = {"email": [m.at for m in mails]}
    for call in calls:
        name = "loyalty-api" if "loyalty" in call.path else "store-push"
        by_channel.setdefault(name, []).append(call.at)
    observed = {name: rate for name, arrivals in by_channel.items() if (rate := _observed_rate(arrivals))}
    render_gateways(status["gateways"], console, observed=observed)
    console.print(
        "observed rate/s = messages that reached the receiver over the span between the first "
        "and the last arrival; a throttled channel stays at its limit (burst aside)."
    )


def _verdict(
    console: Console,
    sent: dict[str, Any],
    status: dict[str, Any],
    smtp: SmtpReceiver,
    http: WebhookReceiver,
    access: dict[str, tuple[int, int]],
) -> bool:
    counts = journey_counts(status)
    problems = []
    for label, (got, expected) in access.items():
        if got != expected:
            problems.append(f"{label} answered {got}, not {expected}")
    if sent["totals"]["accepted"] == 0:
        problems.append("no event was accepted")
    for journey in ("welcome", "cart-abandonment", "store-offer"):
        if sum(c for (_, kind), c in counts.get(journey, {}).items() if kind == "entered") == 0:
            problems.append(f"nobody entered {journey}")
    if not smtp.messages or not http.received:
        problems.append("a receiver got no message")
    if smtp.duplicates or http.duplicates:
        problems.append(f"duplicates: smtp {smtp.duplicates}, http {http.duplicates}")
    for shard in status["shards"]:
        if shard.get("active_instances"):
            problems.append(f"{shard['name']} still has active instances")
    if problems:
        console.print("[red]demo finished with problems:[/red] " + "; ".join(problems))
        return False
    console.print(
        f"[green]demo OK[/green]: {len(smtp.messages)} emails and {len(http.received)} "
        "custom-action calls delivered, no duplicates; API keys enforced (401 without, 403 ingest key on status)."
    )
    return True
