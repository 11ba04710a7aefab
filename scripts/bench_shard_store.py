"""What durability costs a shard, in one process without Ray or HTTP.

The benchmark's event stream is parsed, validated and routed once; then the same batches
are applied by a ProfileShard on the memory store, on SQLite, and on SQLite with a snapshot
every `--snapshot-every` batches. Prints CPU µs per event for each.
Usage: `python scripts/bench_shard_store.py [--events 120000] [--snapshot-every 20]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

from itinerary.actors.peers import LocalPeers
from itinerary.actors.profile_shard import ProfileShard
from itinerary.bench import make_bodies
from itinerary.catalog import Catalog
from itinerary.config.app import AppConfig
from itinerary.config.loader import load_config
from itinerary.engine.ingest import parse_body, validate_events
from itinerary.engine.routing import RoutingTable
from itinerary.keys import ensure_local_keys
from itinerary.router import EventRouter, pack_batch
from itinerary.store.base import ShardStore
from itinerary.store.memory import MemoryShardStore
from itinerary.store.sqlite import SqliteShardStore

REPO = Path(__file__).resolve().parents[1]


def batches(app: AppConfig, events: int, profiles: int) -> list[bytes]:
    router = EventRouter(Catalog.build(app), RoutingTable(app.runtime.partitions, 1))
    out: list[bytes] = []
    for body in make_bodies(events, profiles, 1000):
        valid, _ = validate_events(parse_body(body, "application/json", max_events=1000), now=time.time())
        per_shard, _ = router.route(valid, time.time())
        out.extend(pack_batch(records) for records in per_shard.values())
    return out


async def apply_all(app: AppConfig, blobs: list[bytes], store: ShardStore, snapshot_every: int | None) -> float:
    shard = ProfileShard(0, app, peers=LocalPeers(), start_timers=False, store=store)
    started = time.process_time()
    for seq, blob in enumerate(blobs):
        await shard.apply_batch("bench", seq, blob)
        if snapshot_every and seq % snapshot_every == snapshot_every - 1:
            await shard.snapshot()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=120_000)
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--snapshot-every", type=int, default=20, help="batches of 1,000 events")
    args = parser.parse_args()
    os.environ["ITINERARY__RUNTIME__SHARDS"] = "1"
    os.environ.setdefault("ITINERARY_DEMO_TOKEN", "bench")
    ensure_local_keys()
    app = load_config(REPO / "config/examples/demo.yaml")
    blobs = batches(app, args.events, args.profiles)
    workdir = Path(tempfile.mkdtemp(prefix="itinerary-shard-store-"))
    runs: list[tuple[str, ShardStore, int | None]] = [
        ("memory store", MemoryShardStore(), None),
        ("sqlite log", SqliteShardStore(workdir / "log.db"), None),
        (
            f"sqlite log + snapshot every {args.snapshot_every} batches",
            SqliteShardStore(workdir / "snap.db"),
            args.snapshot_every,
        ),
    ]
    try:
        for name, store, every in runs:
            seconds = asyncio.run(apply_all(app, blobs, store, every))
            print(f"{name:45s} {seconds / args.events * 1e6:6.1f} µs of CPU per event")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
