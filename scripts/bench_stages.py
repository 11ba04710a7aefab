"""Where an event's CPU goes: the hot path's stages, each timed on its own, in one process.

The pipeline benchmark says how fast the whole is; this one says which part to make
faster. It runs the code the ingress and a shard run on every request, on the pipeline
benchmark's bodies (`itinerary.bench.make_bodies`: realistic XDM events, 500 a request),
one stage at a time, and reads this thread's CPU time around each:

  read      the request body into validated events, as the ingress reads it (`EventReader`):
            the compiled fast path (`FastJsonDecoder`), which reads only the fields a shard
            keeps, for a body it takes; parse_body + validate_events for any other
  route     definition, identity, profile key and shard, and the record's encoding
  join      the shard's records into one batch (`pack_batch`)
  log       the batch appended to the shard's SQLite write-ahead log
  apply     the batch decoded and applied to profiles and journeys (`_apply_records`)
  release   the request's events, freed once it is answered

Beside the stages, not in the total: the general path on the same bodies (`parse` and
`validate`), what `read` costs when the fast path declines (or `fast_json: false`).

The ingress's stages run with the collector off and the shard's under its thresholds, as
in the actors (actors/tuning.py). What is not here is what moving the work between
processes costs (HTTP, the streams, the replies, the gateways); the pipeline benchmark's
CPU table has each process's share. The last line compares the total with what 100,000
events/s on two cores allows: 20 µs of CPU per event for everything, load tool included.

Usage: `python scripts/bench_stages.py [--events 200000] [--profiles 20000] [--batch 500]
[--rounds 3] [--out results/bench_stages.json]`
"""

from __future__ import annotations

import argparse
import gc
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
from rich.console import Console
from rich.table import Table

from itinerary.actors.peers import LocalPeers
from itinerary.actors.profile_shard import ProfileShard
from itinerary.bench import make_bodies
from itinerary.benchio import write_report
from itinerary.catalog import Catalog
from itinerary.config.loader import load_config
from itinerary.engine.ingest import parse_body, validate_events
from itinerary.engine.reader import EventReader
from itinerary.engine.routing import RoutingTable
from itinerary.keys import ensure_local_keys
from itinerary.router import EventRouter, pack_batch
from itinerary.store.base import EVENTS
from itinerary.store.sqlite import SqliteShardStore

REPO = Path(__file__).resolve().parents[1]

STAGES = ("read", "route", "join", "log", "apply", "release")
INGRESS_STAGES = frozenset({"read", "route", "join", "release"})
GENERAL = ("parse", "validate")  # the general path, measured beside the stages
BUDGET_EVENTS_PER_S, BUDGET_CORES = 100_000, 2  # issue 4's target, on its machine
BUDGET_US = BUDGET_CORES * 1e6 / BUDGET_EVENTS_PER_S


def measure_round(
    bodies: list[bytes], reader: EventReader, router: EventRouter, shard: ProfileShard, app: Any, sender: str
) -> dict[str, Any]:
    """Run every body through the stages; CPU seconds per stage and the events applied."""
    spent = dict.fromkeys(STAGES + GENERAL, 0.0)
    limits = app.runtime.ingress
    codes = app.runtime.identity.namespace_codes
    clock = time.thread_time
    accepted = applied = 0
    for seq, body in enumerate(bodies):
        gc.disable()  # the ingress collects on a timer, not by allocation counts
        now = time.time()
        g0 = clock()
        items = parse_body(body, "application/json", max_events=limits.max_events_per_request)
        g1 = clock()
        validate_events(items, max_identities=limits.max_identities, now=now, namespace_codes=codes)
        g2 = clock()
        del items
        spent["parse"] += g1 - g0
        spent["validate"] += g2 - g1
        t1 = clock()
        valid, rejected = reader.read(body, "application/json", now)
        t2 = clock()
        per_shard, unrouted = router.route(valid, now)
        t3 = clock()
        blob = pack_batch(per_shard.get(0, []))
        t4 = clock()
        gc.enable()  # the shard's own thresholds (set by ProfileShard, actors/tuning.py)
        shard.store.append([(EVENTS, now, msgpack.packb([sender, seq, blob], use_bin_type=True))])
        t5 = clock()
        applied += shard._apply_records(blob, now)
        t6 = clock()
        gc.disable()
        accepted += len(valid) - len(unrouted)
        del valid, rejected, per_shard, unrouted, blob
        t7 = clock()
        for stage, began, ended in zip(STAGES, (t1, t2, t3, t4, t5, t6), (t2, t3, t4, t5, t6, t7), strict=True):
            spent[stage] += ended - began
    gc.enable()
    return {"seconds": spent, "accepted": accepted, "applied": applied, "fast_bodies": reader.fast_bodies}


def run(events: int, profiles: int, batch: int, rounds: int, config: str) -> dict[str, Any]:
    ensure_local_keys()  # the demo config requires ingest and admin keys, and a webhook token
    os.environ.setdefault("ITINERARY_DEMO_TOKEN", secrets.token_urlsafe(16))
    with tempfile.TemporaryDirectory(prefix="itinerary-stages-") as data_dir:
        os.environ["ITINERARY__RUNTIME__DATA_DIR"] = data_dir
        os.environ["ITINERARY__RUNTIME__SHARDS"] = "1"
        app = load_config(config)
        # Every round brings new events (new ids) for the same customers, as traffic does.
        rounds_bodies = [make_bodies(events, profiles, batch, seed=10 + r) for r in range(rounds)]
        store = SqliteShardStore(Path(data_dir) / "stages.db", sync=app.runtime.storage.sync)
        shard = ProfileShard(0, app, peers=LocalPeers(), start_timers=False, store=store)
        catalog = Catalog.build(app)
        router = EventRouter(catalog, RoutingTable(app.runtime.partitions, 1), app.runtime.ingress.max_event_bytes)
        measured = []
        try:
            for number, bodies in enumerate(rounds_bodies):
                reader = EventReader(catalog, app.runtime.ingress, app.runtime.identity.namespace_codes)
                measured.append(measure_round(bodies, reader, router, shard, app, f"stages#{number}"))
        finally:
            store.close()
    per_event = {
        stage: [m["seconds"][stage] / m["accepted"] * 1e6 for m in measured if m["accepted"]]
        for stage in STAGES + GENERAL
    }
    every = {stage: statistics.median(values) for stage, values in per_event.items()}
    medians = {stage: every[stage] for stage in STAGES}
    total = sum(medians.values())
    return {
        "events_per_round": events,
        "batch": batch,
        "rounds": rounds,
        "accepted": [m["accepted"] for m in measured],
        "applied": [m["applied"] for m in measured],
        "us_per_event": medians,
        "general_path_us_per_event": {stage: every[stage] for stage in GENERAL},
        "fast_path_bodies": [m["fast_bodies"] for m in measured],
        "bodies_per_round": len(rounds_bodies[0]),
        "runs_in": {stage: "ingress" if stage in INGRESS_STAGES else "shard" for stage in STAGES},
        "us_per_event_rounds": per_event,
        "ingress_us_per_event": sum(v for k, v in medians.items() if k in INGRESS_STAGES),
        "shard_us_per_event": sum(v for k, v in medians.items() if k not in INGRESS_STAGES),
        "total_us_per_event": total,
        "events_per_core_s": 1e6 / total if total else None,
        "budget_us_per_event": BUDGET_US,
    }


def table(result: dict[str, Any]) -> Table:
    medians, total = result["us_per_event"], result["total_us_per_event"]
    out = Table(title="CPU per event, by stage", title_justify="left")
    for column, justify in (("stage", "left"), ("runs in", "left"), ("µs per event", "right"), ("share", "right")):
        out.add_column(column, justify=justify)  # type: ignore[arg-type]
    for stage in STAGES:
        out.add_row(stage, result["runs_in"][stage], f"{medians[stage]:.2f}", f"{medians[stage] / total:.0%}")
    out.add_row("total", "", f"{total:.2f}", "100%", style="bold")
    general = result["general_path_us_per_event"]
    taken = min(result["fast_path_bodies"]) / result["bodies_per_round"]
    out.add_row(
        "(read by the general path: parse + validate)",
        "ingress",
        f"{general['parse']:.2f} + {general['validate']:.2f}",
        f"fast path took {taken:.0%} of bodies",
        style="dim",
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000, help="events per round")
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="events per request")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--config", default=str(REPO / "config/examples/demo.yaml"))
    parser.add_argument("--out", default=str(REPO / "results/bench_stages.json"))
    args = parser.parse_args(argv)
    result = run(args.events, args.profiles, args.batch, args.rounds, args.config)
    console = Console(width=max(Console().width, 100))
    console.print(
        f"one process, {args.batch}-event requests, medians of {args.rounds} rounds of {args.events:,} events "
        f"for {args.profiles:,} profiles"
    )
    console.print(table(result))
    total = result["total_us_per_event"]
    console.print(
        f"ingress stages {result['ingress_us_per_event']:.1f} µs, shard stages {result['shard_us_per_event']:.1f} µs: "
        f"{result['events_per_core_s']:,.0f} events/s per core for these stages alone. "
        f"{BUDGET_EVENTS_PER_S:,} events/s on {BUDGET_CORES} cores leaves {BUDGET_US:.0f} µs per event for all "
        f"of it, HTTP, streams, gateways and load tool included: these stages take {total / BUDGET_US:.1f}x that."
    )
    print(f"wrote {write_report(args.out, vars(args), 'result', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
