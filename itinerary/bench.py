"""Pipeline benchmark: sustained end-to-end events/s over HTTP against the ceiling.

In one run it measures
  1. the single-process ceiling: the same bodies parsed, validated, routed and applied to
     the same journeys by the same code in one process, with no Ray and no HTTP;
  2. the full pipeline: a local Ray deployment of the demo config driven over HTTP with
     batched events by concurrent connections (the load generator shares the machine);
and prints a table (events/s, decisions/s, ingest latency percentiles, ratio) and writes
JSON. Usage: `python scripts/bench_pipeline.py [--events N] [--profiles N] [--batch N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from statistics import median
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from itinerary.actors.tuning import periodic_collection
from itinerary.aio import run
from itinerary.benchio import write_report
from itinerary.config.app import AppConfig
from itinerary.keys import ensure_local_keys
from itinerary.traffic import TrafficGenerator

REPO = Path(__file__).resolve().parents[1]


def make_bodies(events: int, profiles: int, batch: int, seed: int = 1) -> list[bytes]:
    generator = TrafficGenerator(profiles=profiles, seed=seed)
    stream = generator.stream(events, ts0=time.time())
    return [json.dumps(stream[i : i + batch]).encode() for i in range(0, len(stream), batch)]


def ceiling(app: AppConfig, bodies: list[bytes]) -> dict[str, Any]:
    """The same work as the pipeline, in this process: parse, validate, route, apply."""

    from itinerary.actors.peers import LocalPeers
    from itinerary.actors.profile_shard import ProfileShard
    from itinerary.catalog import Catalog
    from itinerary.engine.reader import EventReader
    from itinerary.engine.routing import RoutingTable
    from itinerary.router import EventRouter, pack_batch
    from itinerary.store.memory import MemoryShardStore

    peers = LocalPeers()
    shards = [
        ProfileShard(i, app, peers=peers, start_timers=False, store=MemoryShardStore())
        for i in range(app.runtime.shards)
    ]
    catalog = Catalog.build(app)
    router = EventRouter(
        catalog,
        RoutingTable(app.runtime.partitions, app.runtime.shards),
        max_record_bytes=app.runtime.ingress.max_event_bytes,
    )
    reader = EventReader(catalog, app.runtime.ingress, app.runtime.identity.namespace_codes)
    events = 0
    started = time.perf_counter()
    for body in bodies:
        now = time.time()
        valid, _ = reader.read(body, "application/json", now)
        per_shard, _ = router.route(valid, now)
        for index, records in per_shard.items():
            # the records cross a process boundary in the pipeline: join them as the batcher does
            events += shards[index]._apply_records(pack_batch(records))
    seconds = time.perf_counter() - started
    decisions = sum(s.counts["decisions"] for s in shards)
    return {
        "events": events,
        "seconds": seconds,
        "events_per_s": events / seconds,
        "decisions_per_s": decisions / seconds,
    }


async def drive(url: str, bodies: list[bytes], connections: int) -> dict[str, Any]:
    auth = ensure_local_keys().ingest_headers
    latencies: list[float] = []
    counts = {"accepted": 0, "rejected": 0, "429": 0, "errors": 0}
    queue = list(reversed(bodies))
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                while True:
                    t0 = time.perf_counter()
                    async with session.post(
                        f"{url}/v1/events", data=body, headers={"Content-Type": "application/json", **auth}
                    ) as response:
                        payload = await response.read()
                    if response.status == 429:
                        counts["429"] += 1
                        await asyncio.sleep(0.05)
                        continue
                    latencies.append(time.perf_counter() - t0)
                    if response.status != 202:
                        counts["errors"] += 1
                        break
                    answer = json.loads(payload)
                    counts["accepted"] += answer["accepted"]
                    counts["rejected"] += len(answer["rejected"])
                    break

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        seconds = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    return {
        **counts,
        "seconds": seconds,
        "events_per_s": counts["accepted"] / seconds,
        "latency_ms": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0)},
    }


def cpu_by_role() -> dict[str, float]:
    """CPU seconds used so far by this machine's processes, grouped by what they are."""
    import psutil

    roles: dict[str, float] = {}
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if proc.info["pid"] == me:
                role = "load generator + receivers"
            elif cmd.startswith("ray::"):
                role = cmd.split()[0][5:].split(".")[0]
            elif "raylet" in cmd.split(" ", 1)[0] or "gcs_server" in cmd.split(" ", 1)[0]:
                role = "Ray raylet + GCS"  # the object store and scheduling
            else:
                continue
            times = proc.cpu_times()
            roles[role] = roles.get(role, 0.0) + times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return roles


@contextlib.asynccontextmanager
async def deployment(app: AppConfig, warmup: list[bytes], connections: int) -> AsyncIterator[Any]:
    """A local Ray running `app`, warmed up; yields `measure(bodies)` for one round."""
    import ray

    from itinerary.actors.runtime import launch_supervisor, start_local_ray

    start_local_ray(app, dashboard=False, num_cpus=2)
    supervisor = launch_supervisor(app, "bench")
    try:
        info = await supervisor.start.remote()
        url = info["urls"][0]
        await drive(url, warmup, connections)

        async def measure(bodies: list[bytes]) -> dict[str, Any]:
            before = await supervisor.status.remote()
            cpu_before = cpu_by_role()
            # The load generator and the receivers share the two cores with the system
            # measured; their bodies and records are acyclic, so the collector need not
            # keep re-scanning them. (The ceiling runs outside: it keeps the shards' policy.)
            async with periodic_collection():
                result = await drive(url, bodies, connections)
            cpu_after = cpu_by_role()
            after = await supervisor.status.remote()
            result["cpu_seconds"] = {role: cpu_after.get(role, 0.0) - cpu_before.get(role, 0.0) for role in cpu_after}
            seconds = result["seconds"]
            for key in ("decisions", "sends"):
                done = sum(s[key] for s in after["shards"]) - sum(s[key] for s in before["shards"])
                result[f"{key}_per_s"] = done / seconds
            # Ray calls from shards to gateways: each costs ~1 ms of CPU across its two ends.
            calls = _gateway_calls(after) - _gateway_calls(before)
            result["gateway_calls_per_s"] = calls / seconds
            sent = _sent(after) - _sent(before)
            result["delivered_per_s"] = sent / seconds
            result["gateways"] = {
                g["name"]: {"outcomes": g.get("outcomes"), "rejected": g.get("rejected")} for g in after["gateways"]
            }
            return result

        yield measure
    finally:
        await supervisor.shutdown.remote()
        ray.shutdown()


def _gateway_calls(status: dict[str, Any]) -> int:
    return sum(c["calls"] for s in status["shards"] for c in s.get("gateway_calls", {}).values())


def _sent(status: dict[str, Any]) -> int:
    return sum(g.get("outcomes", {}).get("sent", 0) for g in status["gateways"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="itinerary bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="events per HTTP request")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--storage",
        default="sqlite,memory",
        help="storage backends to measure, one deployment each, in this order (sqlite, memory)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="ceiling + pipeline measured this many times; medians are reported"
    )
    parser.add_argument("--shards", type=int, default=None, help="default: the config's")
    parser.add_argument(
        "--channel-rate",
        type=int,
        default=None,
        help="override every channel's limit (calls per second); default: the config's",
    )
    parser.add_argument("--config", default=str(REPO / "config/examples/demo.yaml"))
    parser.add_argument(
        "--keep-data", action="store_true", help="keep each backend's data directory (removed by default)"
    )
    parser.add_argument("--out", default=str(REPO / "results/bench_pipeline.json"))
    args = parser.parse_args(argv)
    return run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    from itinerary.config.loader import load_config
    from itinerary.receivers import SmtpReceiver, WebhookReceiver

    console = Console(width=max(Console().width, 132))
    os.environ.setdefault("ITINERARY_DEMO_TOKEN", secrets.token_urlsafe(16))
    ensure_local_keys()  # the demo config requires ingest and admin keys
    smtp, hooks = SmtpReceiver(), WebhookReceiver(token=os.environ["ITINERARY_DEMO_TOKEN"])
    await smtp.start()
    await hooks.start()
    os.environ["ITINERARY__CHANNELS__EMAIL__PORT"] = str(smtp.port)
    os.environ["ITINERARY__CHANNELS__LOYALTY_API__URL"] = f"{hooks.url}/loyalty"
    os.environ["ITINERARY__CHANNELS__STORE_PUSH__URL"] = f"{hooks.url}/push"
    os.environ["ITINERARY__RUNTIME__INGRESS__PORT"] = "0"
    if args.shards is not None:
        os.environ["ITINERARY__RUNTIME__SHARDS"] = str(args.shards)
    app = load_config(args.config)
    if args.channel_rate is not None:
        for name in app.channels:
            os.environ[f"ITINERARY__CHANNELS__{name.upper().replace('-', '_')}__LIMIT__CALLS"] = str(args.channel_rate)
        app = load_config(args.config)
    args.shards = app.runtime.shards
    console.print(f"generating {args.rounds} x {args.events:,} events for {args.profiles:,} profiles...")
    rounds_bodies = [make_bodies(args.events, args.profiles, args.batch, seed=10 + r) for r in range(args.rounds)]
    warmup = make_bodies(min(20_000, args.events // 10), args.profiles, args.batch, seed=2)
    results: dict[str, dict[str, Any]] = {}
    try:
        for backend in args.storage.split(","):
            os.environ["ITINERARY__RUNTIME__STORAGE__BACKEND"] = backend
            data_dir = tempfile.mkdtemp(prefix=f"itinerary-bench-{backend}-")
            os.environ["ITINERARY__RUNTIME__DATA_DIR"] = data_dir
            app = load_config(args.config)
            rounds: list[dict[str, Any]] = []
            console.print(f"[{backend}] starting the pipeline on a local Ray and warming it up...")
            try:
                async with deployment(app, warmup, args.connections) as measure:
                    for number, bodies in enumerate(rounds_bodies, 1):
                        console.print(f"[{backend}] round {number}: single-process ceiling, then the pipeline...")
                        single = ceiling(app, bodies)
                        full = await measure(bodies)
                        rounds.append({"single_process": single, "pipeline": full})
            finally:
                # Shard logs, snapshots and outboxes: 100-200 MB a run.
                if args.keep_data:
                    console.print(f"[{backend}] data kept in {data_dir}")
                else:
                    shutil.rmtree(data_dir, ignore_errors=True)
            results[backend] = {"rounds": rounds, "median": _summary(rounds)}
    finally:
        await hooks.stop()
        await smtp.stop()
    limits = ", ".join(
        f"{n} {c.limit.calls}/{c.limit.period.total_seconds():g}s"
        for n, c in app.channels.items()
        if c.limit is not None
    )
    for backend, result in results.items():
        rounds = result["rounds"]
        console.print(_rounds_table(args, backend, limits, rounds, result["median"]))
        last = rounds[-1]["pipeline"]
        console.print(
            f"last round: accepted {last['accepted']:,}, rejected {last['rejected']:,}, 429s {last['429']}, "
            f"errors {last['errors']}; messages handed to gateways {last['sends_per_s']:,.0f}/s, "
            f"delivered {last['delivered_per_s']:,.0f}/s; shard -> gateway calls {last['gateway_calls_per_s']:,.0f}/s"
        )
        console.print(_cpu_table(rounds))
    if "sqlite" in results and "memory" in results:
        durable, volatile = results["sqlite"]["median"], results["memory"]["median"]
        console.print(
            f"durability (sqlite vs memory, medians of this run): "
            f"{durable['pipeline_events_per_s']:,.0f} vs {volatile['pipeline_events_per_s']:,.0f} events/s "
            f"= {durable['pipeline_events_per_s'] / volatile['pipeline_events_per_s']:.2f}"
        )
    console.print(f"wrote {write_report(args.out, vars(args), 'results', results)}")
    return 0


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    for entry in rounds:
        entry["ratio"] = entry["pipeline"]["events_per_s"] / entry["single_process"]["events_per_s"]
    return {
        "single_events_per_s": median(r["single_process"]["events_per_s"] for r in rounds),
        "pipeline_events_per_s": median(r["pipeline"]["events_per_s"] for r in rounds),
        "pipeline_decisions_per_s": median(r["pipeline"]["decisions_per_s"] for r in rounds),
        "ratio": median(r["ratio"] for r in rounds),
        "p99_ms": median(r["pipeline"]["latency_ms"]["p99"] for r in rounds),
    }


def _rounds_table(
    args: argparse.Namespace, backend: str, limits: str, rounds: list[dict[str, Any]], summary: dict[str, Any]
) -> Table:
    table = Table(
        title=f"Pipeline benchmark, storage {backend}: {args.events:,} events per round, {args.profiles:,} profiles, "
        f"batch {args.batch}, {args.connections} connections, {args.shards} shards; channels {limits}"
    )
    columns = ("round", "ceiling ev/s", "pipeline ev/s", "decisions/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "ratio")
    for col in columns:
        table.add_column(col, justify="right")
    for number, entry in enumerate(rounds, 1):
        full, lat = entry["pipeline"], entry["pipeline"]["latency_ms"]
        table.add_row(
            str(number),
            f"{entry['single_process']['events_per_s']:,.0f}",
            f"{full['events_per_s']:,.0f}",
            f"{full['decisions_per_s']:,.0f}",
            f"{lat['p50']:.0f}",
            f"{lat['p90']:.0f}",
            f"{lat['p99']:.0f}",
            f"{lat['max']:.0f}",
            f"{entry['ratio']:.2f}",
        )
    table.add_row(
        "median",
        f"{summary['single_events_per_s']:,.0f}",
        f"{summary['pipeline_events_per_s']:,.0f}",
        f"{summary['pipeline_decisions_per_s']:,.0f}",
        "",
        "",
        f"{summary['p99_ms']:.0f}",
        "",
        f"{summary['ratio']:.2f}",
        style="bold",
    )
    return table


def _cpu_table(rounds: list[dict[str, Any]]) -> Table:
    """CPU per process role over all rounds, per accepted event."""
    seconds: dict[str, float] = {}
    for entry in rounds:
        for role, used in entry["pipeline"]["cpu_seconds"].items():
            seconds[role] = seconds.get(role, 0.0) + used
    accepted = sum(entry["pipeline"]["accepted"] for entry in rounds) or 1
    wall = sum(entry["pipeline"]["seconds"] for entry in rounds) or 1.0
    table = Table(title=f"Where the CPU went during the pipeline rounds ({wall:.0f} s of wall time)")
    for col in ("process", "CPU s", "cores", "µs per accepted event"):
        table.add_column(col, justify="left" if col == "process" else "right")
    for role, used in sorted(seconds.items(), key=lambda kv: -kv[1]):
        if used >= 0.05:
            table.add_row(role, f"{used:.1f}", f"{used / wall:.2f}", f"{used / accepted * 1e6:.1f}")
    return table
