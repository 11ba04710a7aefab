"""How long a shard takes to come back: snapshot load + log replay, on SQLite.

Builds a shard holding N profiles (the demo journeys, a realistic event mix), snapshots
it, appends a log tail of more events, then times a new shard recovering from the same
database. Usage: `python scripts/bench_recovery.py [--profiles 100000] [--tail 20000]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from itinerary.actors.peers import LocalPeers
from itinerary.actors.profile_shard import ProfileShard
from itinerary.catalog import Catalog
from itinerary.config.app import AppConfig
from itinerary.config.loader import load_config
from itinerary.engine.ingest import parse_body, validate_events
from itinerary.engine.routing import RoutingTable
from itinerary.keys import ensure_local_keys
from itinerary.router import EventRouter, pack_batch
from itinerary.store.sqlite import SqliteShardStore
from itinerary.traffic import TrafficGenerator

REPO = Path(__file__).resolve().parents[1]


def records_for(app, events: list[dict]) -> list[bytes]:  # type: ignore[no-untyped-def]
    router = EventRouter(Catalog.build(app), RoutingTable(app.runtime.partitions, 1))
    blobs: list[bytes] = []
    for i in range(0, len(events), 1000):
        items = parse_body(json.dumps(events[i : i + 1000]).encode(), "application/json", max_events=1000)
        valid, _ = validate_events(items, now=time.time())
        per_shard, _ = router.route(valid, time.time())
        blobs.extend(pack_batch(r) for r in per_shard.values())
    return blobs


async def main(profiles: int, tail: int) -> dict[str, float]:
    os.environ.setdefault("ITINERARY_DEMO_TOKEN", "recovery-bench")
    os.environ["ITINERARY__RUNTIME__SHARDS"] = "1"
    ensure_local_keys()
    app = load_config(REPO / "config/examples/demo.yaml")
    workdir = Path(tempfile.mkdtemp(prefix="itinerary-recovery-"))
    try:
        return await _measure(app, workdir / "shard.db", profiles, tail)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _measure(app: AppConfig, db: Path, profiles: int, tail: int) -> dict[str, float]:
    generator = TrafficGenerator(profiles=profiles, seed=5)
    # one registration per profile so that every profile exists and holds journey state
    events = [generator.registration(p, time.time()) for p in range(profiles)]
    events += generator.stream(tail, ts0=time.time())
    blobs = records_for(app, events)
    head = len(blobs) - max(1, tail // 1000)
    shard = ProfileShard(0, app, peers=LocalPeers(), start_timers=False, store=SqliteShardStore(db))
    for seq, blob in enumerate(blobs[:head]):
        await shard.apply_batch("bench", seq, blob)
    started = time.perf_counter()
    await shard.snapshot()
    snapshot_s = time.perf_counter() - started
    for seq, blob in enumerate(blobs[head:], head):
        await shard.apply_batch("bench", seq, blob)
    held = len(shard.profiles)
    started = time.perf_counter()
    again = ProfileShard(0, app, peers=LocalPeers(), start_timers=False, store=SqliteShardStore(db))
    recovery_s = time.perf_counter() - started
    assert len(again.profiles) == held
    return {
        "profiles": held,
        "log_entries_replayed": again.recovery["replayed"],
        "snapshot_seconds": round(snapshot_s, 2),
        "recovery_seconds": round(recovery_s, 2),
        "database_mb": round(db.stat().st_size / 1e6, 1),
    }


if __name__ == "__main__":
    import asyncio

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--tail", type=int, default=20_000, help="events logged after the snapshot")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.profiles, args.tail)), indent=2))
