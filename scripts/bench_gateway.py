#!/usr/bin/env python3
"""Gateway cost benchmark: CPU per webhook message in the gateway and in the receiver.

At 10,000 events/s the demo's journeys send about 1,200 push messages a second, and the
gateways were the largest CPU user after the shard (docs/benchmarks.md). This measures
one channel's whole per-message cost outside Ray, so that changes to it can be compared
without the noise of a full pipeline:

* the real `GatewayActor` (outbox in SQLite in a temporary directory, outcomes routed to
  a recording shard through `LocalPeers`) with the real `WebhookProvider`, unthrottled,
  on a uvloop event loop as in a Ray actor;
* the load tool's webhook receiver (`HttpReceiver`, what `itinerary load` runs) in a
  child process of its own, like a real endpoint.

Requests are submitted open-loop, a batch every 50 ms (the shards' send batches), at
`--rate` messages per second for `--duration` seconds; then it waits for every outcome.
CPU is each process's user + system time (all threads: the outbox's I/O thread counts)
over that span, divided by the messages sent. Rounds alternate nothing: run it before and
after a change, back to back, and compare medians.

Usage:
    python scripts/bench_gateway.py [--rate 1200] [--duration 8] [--rounds 3] [--out results/bench_gateway.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
from rich.console import Console
from rich.table import Table

from itinerary import aio
from itinerary.actors.gateway_actor import GatewayActor
from itinerary.actors.peers import LocalPeers
from itinerary.benchio import CHILD_START_TIMEOUT, child_server, write_report
from itinerary.config.app import AppConfig
from itinerary.load.stats import new_histogram, percentiles_ms, record

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "results" / "bench_gateway.json"
TOKEN_ENV = "ITINERARY_BENCH_GATEWAY_TOKEN"  # the token reaches the receiver here, not in argv
TICK = 0.05  # seconds between submitted batches
DRAIN_TIMEOUT = 60.0


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the receiver, in a child process ---------------------------------------------------


async def _serve_receiver() -> None:
    """Child: the load tool's webhook receiver until a line arrives on stdin; prints its
    port, then {"received": n, "cpu_s": s} counted from the first request to the stop."""
    from itinerary.channels.webhook import EVENT_TIME_HEADER
    from itinerary.load.http_server import HttpReceiver, ReceivedCall

    received = 0
    cpu_at_first: list[float] = []

    def on_call(call: ReceivedCall) -> None:
        nonlocal received
        if not cpu_at_first:
            cpu_at_first.append(_cpu_seconds())
        received += 1

    receiver = HttpReceiver(
        "127.0.0.1", 0, token=os.environ[TOKEN_ENV], on_call=on_call, event_time_header=EVENT_TIME_HEADER
    )
    await receiver.start()
    print(json.dumps({"port": receiver.port}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    cpu = _cpu_seconds() - (cpu_at_first[0] if cpu_at_first else _cpu_seconds())
    await receiver.stop()
    print(json.dumps({"received": received, "cpu_s": cpu}), flush=True)


# -- the gateway ------------------------------------------------------------------------


class _OutcomeRecorder:
    """Stands in for the profile shards: counts outcomes and their latency from creation."""

    def __init__(self) -> None:
        self.outcomes = 0
        self.sent = 0
        self.latency = new_histogram()

    async def deliver_outcomes(self, blob: bytes) -> None:
        for outcome in msgpack.unpackb(blob, raw=False):
            self.outcomes += 1
            if outcome["outcome"] == "sent":
                self.sent += 1
                record(self.latency, outcome["at"] - outcome["event_ts"])


def _request(i: int, now: float) -> dict[str, Any]:
    """A push message as the demo's cart-abandonment journey sends it."""
    profile = f"ECID:{i:020d}"
    return {
        "id": f"{profile}/cart-abandonment/1/remind_push/1",
        "channel": "push",
        "shard": 0,
        "profile": profile,
        "journey": "cart-abandonment",
        "instance": f"{profile}/cart-abandonment/1",
        "node": "remind_push",
        "payload": {"identity": f"{i:020d}", "title": "Still thinking it over?", "sku": "SKU-100234"},
        "created": now,
        "event_ts": now,
    }


def _app(data_dir: str, port: int, token_env: str, max_connections: int) -> AppConfig:
    return AppConfig.model_validate(
        {
            "runtime": {"data_dir": data_dir, "outcome_flush": "PT0.02S"},
            "channels": {
                "push": {
                    "type": "webhook",
                    "url": f"http://127.0.0.1:{port}/v1/push/send",
                    "allow_private": True,
                    "token": {"env": token_env},
                    "max_connections": max_connections,
                }
            },
        },
        context={"env": dict(os.environ)},
    )


async def measure(rate: int, duration: float, max_connections: int = 16) -> dict[str, Any]:
    """One round: `rate` messages/s for `duration` s through a gateway to the receiver."""
    token = secrets.token_urlsafe(18)
    os.environ[TOKEN_ENV] = token
    async with child_server(__file__, "--serve-receiver", {TOKEN_ENV: token}) as (listening, process):
        port = int(listening["port"])
        with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
            peers = LocalPeers()
            shard = _OutcomeRecorder()
            peers.shards[0] = shard
            actor = GatewayActor("gateway-push", _app(tmp, port, TOKEN_ENV, max_connections), peers=peers)
            await actor.ready()
            per_batch = max(1, round(rate * TICK))
            batches = max(1, round(duration / TICK))
            pack = msgpack.Packer(use_bin_type=True).pack
            sent = 0
            cpu0, t0 = _cpu_seconds(), time.monotonic()
            for k in range(batches):
                now = time.time()
                await actor.submit(pack([_request(sent + j, now) for j in range(per_batch)]))
                sent += per_batch
                await asyncio.sleep(max(0.0, t0 + (k + 1) * TICK - time.monotonic()))
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while shard.outcomes < sent and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            cpu, wall = _cpu_seconds() - cpu0, time.monotonic() - t0
            stats = await actor.stats()
            await actor.stop()
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(b"stop\n")
        await process.stdin.drain()
        child = json.loads(await asyncio.wait_for(process.stdout.readline(), CHILD_START_TIMEOUT))
    answer = percentiles_ms(shard.latency)
    return {
        "rate_per_s": rate,
        "duration_s": duration,
        "messages": sent,
        "sent": shard.sent,
        "outcomes": shard.outcomes,
        "received": child["received"],
        "wall_s": round(wall, 3),
        "gateway_cpu_s": round(cpu, 3),
        "gateway_cpu_us_per_message": round(cpu / sent * 1e6, 1),
        "gateway_cpu_pct": round(cpu / wall * 100, 1),
        "receiver_cpu_us_per_message": round(child["cpu_s"] / max(1, child["received"]) * 1e6, 1),
        "answer_ms_p50": round(answer.get("p50", float("nan")), 2),
        "answer_ms_p99": round(answer.get("p99", float("nan")), 2),
        "outbox": stats["channels"][0]["outbox"],
    }


async def run_async(rate: int, duration: float, rounds: int, max_connections: int) -> dict[str, Any]:
    results = [await measure(rate, duration, max_connections) for _ in range(rounds)]
    keys = ("gateway_cpu_us_per_message", "receiver_cpu_us_per_message", "answer_ms_p50", "answer_ms_p99")
    return {
        "benchmark": "gateway CPU per webhook message",
        "rounds": results,
        "median": {key: statistics.median(r[key] for r in results) for key in keys},
    }


def _table(report: dict[str, Any]) -> Table:
    table = Table(title="Gateway cost per webhook message (GatewayActor + SQLite outbox, no Ray)")
    for column in (
        "round",
        "messages",
        "delivered",
        "gateway µs/msg",
        "gateway CPU",
        "receiver µs/msg",
        "answer p50 ms",
        "answer p99 ms",
    ):
        table.add_column(column, justify="right")
    rows = [(str(i + 1), r) for i, r in enumerate(report["rounds"])]
    for name, r in rows:
        table.add_row(
            name,
            f"{r['messages']:,}",
            f"{r['received']:,}",
            f"{r['gateway_cpu_us_per_message']:.0f}",
            f"{r['gateway_cpu_pct']:.1f} %",
            f"{r['receiver_cpu_us_per_message']:.0f}",
            f"{r['answer_ms_p50']:.1f}",
            f"{r['answer_ms_p99']:.1f}",
        )
    m = report["median"]
    table.add_row(
        "median",
        "",
        "",
        f"{m['gateway_cpu_us_per_message']:.0f}",
        "",
        f"{m['receiver_cpu_us_per_message']:.0f}",
        f"{m['answer_ms_p50']:.1f}",
        f"{m['answer_ms_p99']:.1f}",
    )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rate", type=int, default=1200, help="messages per second (default 1200)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per round (default 8)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-connections", type=int, default=16)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--serve-receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_receiver:
        aio.run(_serve_receiver())
        return 0
    if args.rate < 1 or args.duration <= 0 or args.rounds < 1:
        parser.error("--rate, --duration and --rounds must be positive")
    report = aio.run(run_async(args.rate, args.duration, args.rounds, args.max_connections))
    Console().print(_table(report))
    path = write_report(args.out, {k: v for k, v in vars(args).items() if k != "serve_receiver"}, "results", report)
    print(f"wrote {path}")
    failed = [r for r in report["rounds"] if r["received"] < r["messages"] or r["sent"] < r["messages"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
