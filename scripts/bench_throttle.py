#!/usr/bin/env python3
"""Throttle accuracy benchmark: a channel's configured rate against the rate it delivers.

Target: throttle accuracy within 1 % of the configured rate over a 10 s window.

For each limit (calls per second, throttle mode) it builds the real `ChannelGateway` in
this process (the limiter lives there, not in the Ray actor around it) with the real
`WebhookProvider`, and points it over real HTTP at the real `WebhookReceiver`
(itinerary/receivers.py), which checks the bearer token and records each request's
arrival time with `time.monotonic()` (system-wide on Linux and macOS, so comparable
with this process's clock). The receiver runs in a child process of its own, like a
real endpoint, so parsing requests does not eat into the gateway's event loop.

The gateway is kept saturated: a backlog of limit x (warmup + window + 2 s) requests is
recorded in the outbox and queued before it starts (at t0), so its queue never runs dry
(checked: `saturated` in the output). As in the gateway actor, every request is written
to the outbox first and every final outcome after, on one I/O thread; the outbox is
SQLite in a temporary directory (the default backend) unless `--storage memory`.

The limiter is GCRA with a burst allowance: `--burst N` calls may go at once when the
limiter is idle, i.e. the first N requests land at t0, then the sustained rate follows.
Only arrivals in the steady window [t0 + warmup, t0 + warmup + window) are counted:

    delivered/s = arrivals in the window / window
    error %     = (delivered/s - limit) / limit x 100

and the same per 1-s slice of the window (min, max, worst deviation from the limit).
`burst_excluded` in the JSON checks that the first N arrivals fell before the window.

The longest gap between two arrivals in the window is shown too: the gateway makes up
for dispatcher lateness of up to CATCH_UP (20 ms, channels/gateway.py) plus the burst
allowance, so a longer pause of its event loop (a full garbage collection with a large
queue, a descheduled process) loses those slots for good and shows up as a low rate.

Usage:
    python scripts/bench_throttle.py [--limits 50,200,1000,2000] [--window 10] [--warmup 2]
        [--burst 10] [--storage sqlite|memory] [--loop uvloop|asyncio] [--out results/bench_throttle.json]

From code: `run(limits, window, warmup)` (synchronous; `run_async` inside a running
event loop) returns the same dict that is written as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import msgpack
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from itinerary.actors.storeio import StoreCalls
from itinerary.benchio import child_server, machine_facts
from itinerary.channels.gateway import CATCH_UP, ChannelGateway
from itinerary.config.channels import LimitConfig, WebhookChannelConfig
from itinerary.engine import ratelimit
from itinerary.engine.messages import EXPIRED, FAILED, OUTCOMES, SENT, Outcome, SendRequest
from itinerary.store.base import DEAD, DONE, OutboxStore
from itinerary.store.memory import MemoryOutboxStore
from itinerary.store.sqlite import SqliteOutboxStore

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LIMITS = (50, 200, 1000, 2000)
DEFAULT_OUT = REPO / "results" / "bench_throttle.json"
TARGET_ERROR_PCT = 1.0
TOKEN_ENV = "ITINERARY_BENCH_THROTTLE_TOKEN"  # the receiver's token reaches it here, not in argv
BACKLOG_MARGIN = 2.0  # seconds of traffic queued beyond warmup + window
SETTLE = 0.3  # seconds after the window before stopping, so the last arrivals are recorded
_FINAL_STATE = {SENT: DONE, FAILED: DEAD, EXPIRED: DEAD}

T = TypeVar("T")


# -- the receiver, in a child process ---------------------------------------------------


async def _serve_receiver() -> None:
    """Child process: a WebhookReceiver on a free port until a line arrives on stdin.

    Prints {"port": n} when listening; after the stop line, one JSON document with every
    answered request's [arrival (monotonic), status] and the accepted ones' arrivals.
    """
    from itinerary.receivers import WebhookReceiver

    receiver = WebhookReceiver(token=os.environ[TOKEN_ENV], clock=time.monotonic)
    await receiver.start()
    print(json.dumps({"port": receiver.port}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await receiver.stop()
    report = {
        "requests": [[r.at, r.status] for r in receiver.requests],
        "accepted": [r.at for r in receiver.received],
        "attempts": receiver.attempts,
        "duplicates": receiver.duplicates,
    }
    sys.stdout.write(json.dumps(report))
    sys.stdout.flush()


class _Receiver:
    """The parent's handle on the receiver process."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"

    async def collect(self) -> dict[str, Any]:
        """Stop the receiver and return what it recorded."""
        out, _ = await self.process.communicate(b"stop\n")
        if self.process.returncode != 0:
            raise RuntimeError(f"the receiver exited with {self.process.returncode}")
        report: dict[str, Any] = json.loads(out)
        return report


@contextlib.asynccontextmanager
async def _receiver(token: str) -> AsyncIterator[_Receiver]:
    async with child_server(__file__, "--serve-receiver", {TOKEN_ENV: token}) as (listening, process):
        yield _Receiver(process, int(listening["port"]))


# -- one limit ------------------------------------------------------------------------


def _request(i: int) -> SendRequest:
    return {
        "id": f"bench-throttle/inst-{i}/send",
        "channel": "bench-hook",
        "shard": i % 4,
        "profile": f"Email:user{i}@example.com",
        "journey": "bench-throttle",
        "instance": f"inst-{i}",
        "node": "send",
        "payload": {"n": i, "member": f"user{i}@example.com", "points": 10},
        "created": time.time(),
        "event_ts": None,
    }


def _open_outbox(storage: str, directory: Path, limit: int) -> OutboxStore:
    if storage == "memory":
        return MemoryOutboxStore()
    return SqliteOutboxStore(directory / f"gateway-bench-{limit}.db", sync="normal")


def _sink(outbox: OutboxStore, io_call: StoreCalls) -> Callable[[list[Outcome]], Awaitable[None]]:
    """The gateway actor's outcome sink without the routing: final outcomes to the outbox."""
    pack = msgpack.Packer(use_bin_type=True).pack

    async def sink(outcomes: list[Outcome]) -> None:
        final = [(str(o["id"]), _FINAL_STATE[o["outcome"]], pack(o)) for o in outcomes if o["outcome"] in _FINAL_STATE]
        if final:
            await io_call(outbox.finish, final, time.time())

    return sink


def _slices(arrivals: Sequence[float], start: float, window: float) -> list[int]:
    """Arrivals per whole second of [start, start + window)."""
    counts = [0] * max(1, math.floor(window))
    for at in arrivals:
        index = math.floor(at - start)
        if 0 <= index < len(counts):
            counts[index] += 1
    return counts


async def measure(
    limit: int,
    window: float,
    warmup: float,
    *,
    burst: int = 10,
    storage: str = "sqlite",
    max_connections: int = 50,
) -> dict[str, Any]:
    """Saturate a gateway limited to `limit`/s and measure the delivered rate at the receiver."""
    token = secrets.token_urlsafe(24)
    backlog = math.ceil(limit * (warmup + window + BACKLOG_MARGIN)) + burst
    limit_config = LimitConfig(calls=limit, period=timedelta(seconds=1), burst=burst, mode="throttle")
    with tempfile.TemporaryDirectory(prefix="bench-throttle-") as tmp:
        outbox = _open_outbox(storage, Path(tmp), limit)
        io_call = StoreCalls("bench-throttle", inline=isinstance(outbox, MemoryOutboxStore))
        try:
            async with _receiver(token) as receiver:
                config = WebhookChannelConfig(
                    type="webhook",
                    allow_private=True,  # the receiver listens on 127.0.0.1
                    url=f"{receiver.url}/v1/loyalty/members",
                    token=SecretStr(token),
                    limit=limit_config,
                    max_connections=max_connections,
                    queue_size=backlog,  # the whole backlog fits: nothing is refused as "queue full"
                )
                gateway = ChannelGateway("bench-hook", config, outcome_sink=_sink(outbox, io_call))
                requests = [_request(i) for i in range(backlog)]
                pack = msgpack.Packer(use_bin_type=True).pack
                await io_call(outbox.add, [(r["id"], pack(r)) for r in requests], time.time())
                queued = gateway.submit(requests)["queued"]
                del requests
                await gateway.start()
                t0 = time.monotonic()
                try:
                    await asyncio.sleep(max(0.0, t0 + warmup + window + SETTLE - time.monotonic()))
                    stats = gateway.stats()
                finally:
                    await gateway.stop()
                report = await receiver.collect()
        finally:
            await io_call(outbox.close)
        counts = dict(stats["outcomes"])

    start, end = t0 + warmup, t0 + warmup + window
    accepted: list[float] = sorted(report["accepted"])
    in_window = [at for at in accepted if start <= at < end]
    delivered = len(in_window) / window
    per_second = _slices(in_window, start, window)
    worst = max(per_second, key=lambda n: abs(n - limit))
    # Gaps between arrivals: a stall of the gateway's event loop shows as one long gap.
    gaps = sorted(((b - a, a - start) for a, b in itertools.pairwise(in_window)), reverse=True)
    refused = [status for _, status in report["requests"] if status != 200]
    return {
        "limit_per_s": limit,
        "limiter": ratelimit.describe(limit_config.rate()),
        "burst": burst,
        "max_connections": max_connections,
        "storage": "sqlite (temp dir)" if storage == "sqlite" else "memory",
        "warmup_s": warmup,
        "window_s": window,
        "backlog": backlog,
        "queued": queued,
        "messages_in_window": len(in_window),
        "delivered_per_s": delivered,
        "error_pct": (delivered - limit) / limit * 100,
        "per_second": per_second,
        "min_1s": min(per_second),
        "max_1s": max(per_second),
        "worst_1s": worst,
        "worst_1s_error_pct": (worst - limit) / limit * 100,
        "max_gap_ms": gaps[0][0] * 1000 if gaps else None,
        "window_start_monotonic": start,  # to line the gaps up with other clocks (GC, profilers)
        "longest_gaps": [{"at_s": round(at, 3), "ms": round(gap * 1000, 1)} for gap, at in gaps[:5]],
        # Pauses the gateway cannot make up: longer than an interval + CATCH_UP + the burst
        # allowance; each costs (gap - that) x limit messages.
        "gaps_beyond_catch_up": sum(1 for gap, _ in gaps if gap > burst / limit + CATCH_UP),
        "arrived_before_window": sum(1 for at in accepted if at < start),
        # The initial burst (the first `burst` arrivals, at t0) is not counted in the window.
        "burst_excluded": len(accepted) >= burst and accepted[burst - 1] < start,
        "in_first_10ms": sum(1 for at in accepted if at < t0 + 0.01),
        "requests": len(report["requests"]),
        "accepted": len(accepted),
        "refused": len(refused),  # 401 = no or wrong bearer token
        "duplicates": report["duplicates"],
        "queue_depth_at_end": stats["queue_depth"],
        "saturated": stats["queue_depth"] > 0,
        "gateway_outcomes": {k: counts.get(k, 0) for k in OUTCOMES},
    }


# -- the benchmark --------------------------------------------------------------------


async def run_async(
    limits: Sequence[int] = DEFAULT_LIMITS,
    window: float = 10.0,
    warmup: float = 2.0,
    *,
    burst: int = 10,
    storage: str = "sqlite",
    max_connections: int = 50,
) -> dict[str, Any]:
    """Measure every limit in turn (on the running loop); see `run`."""
    if window < 1 or warmup < 0:
        raise ValueError("window must be >= 1 s and warmup >= 0 s")
    if storage not in ("sqlite", "memory"):
        raise ValueError(f"storage must be sqlite or memory, got {storage!r}")
    loop = asyncio.get_running_loop()
    rows = [
        await measure(limit, window, warmup, burst=burst, storage=storage, max_connections=max_connections)
        for limit in limits
    ]
    worst = max(abs(r["error_pct"]) for r in rows) if rows else 0.0
    return {
        "benchmark": "throttle accuracy",
        "target": f"|error| <= {TARGET_ERROR_PCT:g} % over the window",
        "target_error_pct": TARGET_ERROR_PCT,
        "met": worst <= TARGET_ERROR_PCT and all(r["saturated"] and r["burst_excluded"] for r in rows),
        "worst_error_pct": worst,
        "window_s": window,
        "warmup_s": warmup,
        "burst": burst,
        "storage": storage,
        "event_loop": f"{type(loop).__module__}.{type(loop).__name__}",
        "host": machine_facts(),
        "results": rows,
    }


def run(
    limits: Sequence[int] = DEFAULT_LIMITS,
    window: float = 10.0,
    warmup: float = 2.0,
    *,
    burst: int = 10,
    storage: str = "sqlite",
    max_connections: int = 50,
    loop: str = "uvloop",
) -> dict[str, Any]:
    """Measure throttle accuracy for each limit (calls/s); blocks for about
    len(limits) x (warmup + window + 1.5) seconds. Must not be called from a running event
    loop (use `run_async` there).

    `loop="uvloop"` runs the gateway on uvloop when installed, as Ray runs the gateway
    actor; "asyncio" uses the standard loop. Returns a JSON-able dict: the settings, and
    under "results" one dict per limit with delivered_per_s, error_pct, per_second counts,
    min_1s/max_1s/worst_1s, messages_in_window, refused (requests without the right bearer
    token), saturated (the queue never ran dry), and more.
    """
    return _run_on(
        loop, run_async(limits, window, warmup, burst=burst, storage=storage, max_connections=max_connections)
    )


def _run_on(loop: str, main: Any) -> Any:
    if loop == "asyncio":
        return asyncio.run(main)
    from itinerary.aio import run as run_uvloop

    return run_uvloop(main)


# -- command line ---------------------------------------------------------------------


def table(result: dict[str, Any]) -> Table:
    """The result as a rich table."""
    out = Table(
        title=(
            f"Throttle accuracy: {result['window_s']:g} s window after {result['warmup_s']:g} s warmup, "
            f"burst {result['burst']}, outbox {result['storage']}, {result['event_loop']}"
        )
    )
    columns = (
        "limit/s",
        "delivered/s",
        "error %",
        "worst 1-s /s",
        "1-s min..max",
        "messages",
        "longest gap",
        "saturated",
    )
    for name in columns:
        out.add_column(name, justify="right")
    for r in result["results"]:
        error = r["error_pct"]
        style = "green" if abs(error) <= TARGET_ERROR_PCT else "red"
        out.add_row(
            f"{r['limit_per_s']}",
            f"{r['delivered_per_s']:.1f}",
            f"[{style}]{error:+.2f}[/{style}]",
            f"{r['worst_1s']} ({r['worst_1s_error_pct']:+.1f} %)",
            f"{r['min_1s']}..{r['max_1s']}",
            f"{r['messages_in_window']}",
            f"{r['max_gap_ms']:.1f} ms" if r["max_gap_ms"] is not None else "-",
            "yes" if r["saturated"] else "[red]no[/red]",
        )
    return out


def _limits(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"limits must be integers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("limits must be positive integers")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limits", type=_limits, default=list(DEFAULT_LIMITS), help="calls per second, e.g. 50,200")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds skipped after the start (the burst)")
    parser.add_argument("--burst", type=int, default=10, help="the limit's burst (calls at once when idle)")
    parser.add_argument("--max-connections", type=int, default=50)
    parser.add_argument("--storage", choices=("sqlite", "memory"), default="sqlite", help="the outbox's backend")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the gateway's event loop")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="where the JSON goes")
    parser.add_argument("--serve-receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_receiver:
        _run_on("uvloop", _serve_receiver())
        return 0
    console = Console()
    console.print(
        f"limits {args.limits}/s, throttle mode, burst {args.burst}; each: {args.warmup:g} s warmup + "
        f"{args.window:g} s window; receiver: itinerary.receivers.WebhookReceiver in a child process"
    )
    result = run(
        args.limits,
        args.window,
        args.warmup,
        burst=args.burst,
        storage=args.storage,
        max_connections=args.max_connections,
        loop=args.loop,
    )
    console.print(table(result))
    verdict = "met" if result["met"] else "NOT met"
    console.print(f"target {result['target']}: {verdict} (worst {result['worst_error_pct']:.2f} %)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
