"""Memory per profile at a million profiles, with and without passivation.

Every profile goes through a realistic storefront session (itinerary.traffic: everyone
registers, 60 % add an item to a cart, some buy, some walk into a store), fed to one
ProfileShard in this process (memory store, no Ray, no HTTP: the shard's memory is the
question, and a million profiles weigh the same spread over several shards). Each run
happens in a fresh process so that its RSS is its own:

- `active`: passivation off, every profile stays a dict;
- `passivated`: the shard's passivation sweep runs every `--sweep-every` events, as its
  timer loop would every `passivate_after`, so profiles whose session ended are packed
  while new ones arrive (memory freed by packing is reused, as in a running shard);
- `evicted`: the same on a SQLite store (temp dir) with a snapshot before each sweep,
  so idle profiles without journey instances are written and then dropped from memory
  (`evict_to_store`): what stays resident is the active profiles and those still in a
  journey. RSS is sampled at every sweep, to show it stays flat as profiles grow.

Prints a table (RSS growth per profile, packed size, feed rate, time to wake a profile)
and writes JSON (`results/bench_profiles.json` or `--out`).
Usage: `python scripts/bench_profiles.py [--profiles 1000000] [--sweep-every 50000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path
from statistics import mean
from typing import Any

import msgpack
import psutil
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
MODES = ("active", "passivated", "evicted")
CHUNK = 1000  # events validated, routed and applied together, as one ingress batch


class AnsweringGateway:
    """Stands in for a channel's gateway in this memory benchmark: answers every send
    "sent" at once, so journeys run to their end as they do with real channels (the
    messages themselves are not what is measured here)."""

    def __init__(self, shard: Any) -> None:
        self.shard = shard

    async def submit(self, requests: list[dict[str, Any]]) -> None:
        from itinerary.engine.messages import outcome_for

        now = time.time()
        await self.shard.deliver_outcomes(msgpack.packb([outcome_for(r, "sent", at=now) for r in requests]))


def _rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


async def _feed(profiles: int, mode: str, sweep_every: int, sign_ups_only: bool = False) -> dict[str, Any]:
    from itinerary.actors.peers import LocalPeers
    from itinerary.actors.profile_shard import ProfileShard
    from itinerary.catalog import Catalog
    from itinerary.config.loader import load_config
    from itinerary.engine.ingest import validate_events
    from itinerary.engine.routing import RoutingTable
    from itinerary.keys import ensure_local_keys
    from itinerary.router import EventRouter
    from itinerary.store.memory import MemoryShardStore
    from itinerary.store.sqlite import SqliteShardStore
    from itinerary.traffic import ScenarioMix, TrafficGenerator

    os.environ["ITINERARY__RUNTIME__SHARDS"] = "1"
    os.environ.setdefault("ITINERARY_DEMO_TOKEN", "bench")
    ensure_local_keys()
    app = load_config(REPO / "config/examples/demo.yaml")
    passivate = mode != "active"
    workdir = tempfile.mkdtemp(prefix="itinerary-bench-profiles-")
    store = SqliteShardStore(Path(workdir) / "shard.db") if mode == "evicted" else MemoryShardStore()
    peers = LocalPeers()
    shard = ProfileShard(0, app, peers=peers, start_timers=False, store=store)
    peers.gateways.update({name: AnsweringGateway(shard) for name in app.channels})
    router = EventRouter(Catalog.build(app), RoutingTable(app.runtime.partitions, 1))
    mix = ScenarioMix(cart=0.0, browse_only=0.0, store=0.0) if sign_ups_only else None
    events = TrafficGenerator(profiles=profiles, seed=7, mix=mix).scenario(time.time())
    baseline = _rss()
    applied = sweeps = 0
    curve: list[tuple[int, int]] = []  # (profiles so far, RSS growth) at each sweep
    sweep_seconds = 0.0
    feed_started = time.perf_counter()
    chunk: list[dict[str, Any]] = []
    next_sweep = sweep_every
    for event in events:
        chunk.append(event)
        if len(chunk) < CHUNK:
            continue
        applied += _apply(shard, router, validate_events, chunk)
        chunk = []
        await shard.drain_sends()  # sends leave the shard and their outcomes come back
        if passivate and applied >= next_sweep:
            next_sweep += sweep_every
            t0 = time.perf_counter()
            if mode == "evicted":
                await shard.snapshot()
            await shard.passivate_idle()
            sweep_seconds += time.perf_counter() - t0
            sweeps += 1
            seen = len(shard.profiles) + shard.profiles.evictions - shard._reloads
            curve.append((seen, _rss() - baseline))
    if chunk:
        applied += _apply(shard, router, validate_events, chunk)
    if passivate:  # the profiles of the last period go idle too
        for _ in range(2):
            if mode == "evicted":
                await shard.snapshot()
            await shard.passivate_idle()
    feed_seconds = time.perf_counter() - feed_started
    grown = _rss() - baseline
    table = shard.profiles
    keys = list(islice(table.keys(), 0, 10_000, 10))
    packed_sizes = [len(table.packed(key)) for key in keys]
    wake_us = 0.0
    if passivate:
        t0 = time.perf_counter()
        for key in keys:
            table.get(key)
        wake_us = (time.perf_counter() - t0) / max(1, len(keys)) * 1e6
    total = len(table) + table.evictions - shard._reloads
    shutil.rmtree(workdir, ignore_errors=True)
    return {
        "profiles": total,
        "resident": len(table),
        "evicted": table.evictions,
        "events": applied,
        "passivated": table.passivated,
        "rss_growth_bytes": grown,
        "bytes_per_profile": grown / total,
        "rss_curve": curve[:: max(1, len(curve) // 20)],
        "packed_bytes_mean": mean(packed_sizes) if packed_sizes else 0.0,
        "feed_seconds": feed_seconds,
        "events_per_s": applied / feed_seconds,
        "sweeps": sweeps,
        "sweep_ms_mean": sweep_seconds / sweeps * 1000 if sweeps else 0.0,
        "wake_us": wake_us,
    }


def _apply(shard: Any, router: Any, validate_events: Any, chunk: list[dict[str, Any]]) -> int:
    from itinerary.router import pack_batch

    now = time.time()
    valid, _ = validate_events(chunk, now=now)
    per_shard, _ = router.route(valid, now)
    return sum(shard._apply_records(pack_batch(r), now) for r in per_shard.values())


def run(
    profiles: int = 1_000_000, sweep_every: int = 50_000, modes: tuple[str, ...] = MODES, sign_ups_only: bool = False
) -> dict[str, Any]:
    """The runs, each in a fresh process; returns {"active": {...}, "passivated": {...}, ...}."""
    out: dict[str, Any] = {"profiles": profiles, "sweep_every": sweep_every, "sign_ups_only": sign_ups_only}
    for mode in modes:
        command = [sys.executable, __file__, "--child", mode, "--profiles", str(profiles)]
        command += ["--sweep-every", str(sweep_every), *(["--sign-ups-only"] if sign_ups_only else [])]
        child = subprocess.run(
            command,
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        out[mode] = json.loads(child.stdout.strip().splitlines()[-1])
    return out


def table(result: dict[str, Any]) -> Table:
    t = Table(title=f"Memory per profile at {result['profiles']:,} profiles (one shard, memory store)")
    for column in ("run", "profiles", "passivated", "RSS growth", "bytes/profile", "packed bytes", "events/s"):
        t.add_column(column, justify="right")
    t.add_column("wake µs", justify="right")
    for mode in (m for m in MODES if m in result):
        r = result[mode]
        t.add_row(
            mode,
            f"{r['profiles']:,}",
            f"{r['passivated']:,} + {r['evicted']:,} evicted",
            f"{r['rss_growth_bytes'] / 2**20:,.0f} MiB",
            f"{r['bytes_per_profile']:,.0f}",
            f"{r['packed_bytes_mean']:,.0f}",
            f"{r['events_per_s']:,.0f}",
            f"{r['wake_us']:.1f}" if mode != "active" else "",
        )
    return t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--sweep-every", type=int, default=50_000, help="events between passivation sweeps")
    parser.add_argument("--out", default=str(REPO / "results/bench_profiles.json"))
    parser.add_argument("--modes", default=",".join(MODES), help="which runs, comma-separated")
    parser.add_argument(
        "--sign-ups-only",
        action="store_true",
        help="every session is a registration (its welcome journey ends): the largest counts, fastest",
    )
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = asyncio.run(_feed(args.profiles, args.child, args.sweep_every, args.sign_ups_only))
        print(json.dumps(result))
        return 0
    result = run(args.profiles, args.sweep_every, tuple(args.modes.split(",")), args.sign_ups_only)
    Console(width=120).print(table(result))
    if "passivated" in result and "active" in result:
        ratio = result["passivated"]["bytes_per_profile"] / result["active"]["bytes_per_profile"]
        print(f"passivated / active memory: {ratio:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
