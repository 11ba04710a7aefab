#!/usr/bin/env python3
"""Rehearse losing a node: what a deployment does when a Ray node dies without warning.

On this machine it starts a two-node Ray cluster (`ray.cluster_utils.Cluster`: a head and
a worker node, each its own raylet), deploys the demo config on it (again, until the
supervisor and a shard run on the worker node, the ingress on the head), and drives
steady load with `itinerary load`. After
`--kill-at` seconds it kills the worker node's processes (no graceful shutdown): the
supervisor and whatever SPREAD put beside it (shards, a gateway, the ingress) go with it.
Then it watches Ray restart those actors on the head node and the restarted supervisor
take the deployment over.

It prints, and writes as JSON: which actor ran on which node before and after, and under
which actor id (kept: restarted by Ray; new: re-created); the load tool's accepted and
failed events, and the seconds in which requests failed; how long until `status` said the
supervisor had taken over.

The two nodes share this machine's disk, so the default SQLite storage survives the move;
on a real cluster use the `redis` backend (docs/operations.md, "Storage backends").

Usage: python scripts/rehearse_node_loss.py [--rate 1000] [--duration 40] [--kill-at 8]
[--out results/node_loss.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from itinerary.benchio import write_report
from itinerary.keys import ensure_local_keys
from itinerary.load.main import DEMO_CONFIG


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second offered (default 1000)")
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of load (default 40)")
    parser.add_argument("--kill-at", type=float, default=8.0, help="seconds into the load to lose the node")
    parser.add_argument("--out", default="results/node_loss.json")
    args = parser.parse_args(argv)
    if not 0 < args.kill_at < args.duration:
        parser.error("--kill-at must fall inside --duration")
    return args


def placement(names: list[str], namespace: str) -> dict[str, dict[str, str]]:
    """Each named actor's Ray actor id and the node it runs on (asked of the actor itself)."""
    import ray

    where: dict[str, dict[str, str]] = {}
    for name in names:
        handle = ray.get_actor(name, namespace=namespace)
        ask: Any = handle.__ray_call__.remote(lambda _self: ray.get_runtime_context().get_node_id())
        where[name] = {"actor_id": handle._actor_id.hex(), "node": str(ray.get(ask, timeout=60))}
    return where


def wait_for_name_release(namespace: str, timeout: float = 30.0) -> None:
    import ray

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get_actor("itinerary-supervisor", namespace=namespace)
        except ValueError:
            return
        time.sleep(0.2)
    raise SystemExit("the killed supervisor's name was not released")


def status(url: str, admin_key: str) -> dict[str, Any] | None:
    request = urllib.request.Request(f"{url}/v1/status", headers={"Authorization": f"Bearer {admin_key}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def failed_seconds(timeline: list[dict[str, Any]]) -> list[int]:
    return [int(second["t"]) for second in timeline if second.get("failed")]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import ray
    from ray.cluster_utils import Cluster

    from itinerary.actors.runtime import launch_supervisor
    from itinerary.config.loader import load_config

    console = Console()
    keys = ensure_local_keys()
    os.environ.setdefault("ITINERARY_DEMO_TOKEN", "rehearsal-demo-token")
    os.environ["ITINERARY__RUNTIME__DATA_DIR"] = tempfile.mkdtemp(prefix="itinerary-node-loss-")
    app = load_config(DEMO_CONFIG)
    namespace = app.runtime.ray_namespace
    names = ["itinerary-supervisor", *app.gateway_hosts(), "ingress-0"]
    names += [f"profile-shard-{i:02d}" for i in range(app.runtime.shards)]

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    doomed = cluster.add_node(num_cpus=1)
    head = cluster.head_node.node_id  # type: ignore[attr-defined]
    ray.init(address=cluster.address, namespace=namespace, log_to_driver=False)
    try:
        # Ray places actors where it likes (a soft node affinity was not honoured reliably
        # in Ray 2.60): deploy again until the supervisor and a shard run on the node to be
        # lost and the ingress does not (the take-over, and the ingress answering for a
        # lost shard); after a few tries any placement with the supervisor there will do.
        for attempt in range(12):
            supervisor = launch_supervisor(app, str(DEMO_CONFIG))
            url = ray.get(supervisor.start.remote(), timeout=180)["urls"][0]
            before = placement(names, namespace)
            there = {name for name, where in before.items() if where["node"] == doomed.node_id}
            wanted = any(name.startswith("profile-shard-") for name in there) and "ingress-0" not in there
            if "itinerary-supervisor" in there and (wanted or attempt >= 8):
                break
            console.print(f"placement {attempt + 1}: on the worker node {sorted(there) or 'nothing'}; deploying again")
            ray.get(supervisor.shutdown.remote(), timeout=60)
            ray.kill(supervisor, no_restart=True)
            wait_for_name_release(namespace)
        else:
            raise SystemExit("the supervisor never landed on the worker node: nothing to rehearse")
        load_out = str(Path(args.out).with_name(Path(args.out).stem + "_load.json"))
        load = subprocess.Popen(
            [
                *(sys.executable, "-m", "itinerary.cli", "load", "--url", url),
                *(
                    "--rate",
                    str(args.rate),
                    "--duration",
                    str(args.duration),
                    "--out",
                    load_out,
                    "--chart",
                    "",
                    "--no-progress",
                ),
            ],
            env={**os.environ, "ITINERARY_TOKEN": keys.ingest},
            stdout=subprocess.DEVNULL,
        )
        time.sleep(args.kill_at + 2.0)  # the load tool's start-up (receivers, preflight) takes about 2 s
        killed_at = time.monotonic()
        cluster.remove_node(doomed, allow_graceful=False)
        taken_over_after = None
        deadline = killed_at + 180
        while time.monotonic() < deadline:
            answer = status(url, keys.admin)
            if answer and answer.get("supervisor_restarted"):
                taken_over_after = time.monotonic() - killed_at
                break
            time.sleep(0.25)
        load.wait(timeout=args.duration + 120)
        after = placement(names, namespace)
        report = json.loads(Path(load_out).read_text())
        final = status(url, keys.admin) or {}
        ray.get(supervisor.shutdown.remote(), timeout=60)
    finally:
        ray.shutdown()
        threading.Thread(target=cluster.shutdown, daemon=True).start()
        time.sleep(2)

    rows = [
        {
            "actor": name,
            "before": "lost node" if before[name]["node"] == doomed.node_id else "head",
            "after": "head" if after[name]["node"] == head else "lost node?",
            "actor_id": "kept" if after[name]["actor_id"] == before[name]["actor_id"] else "new",
        }
        for name in names
    ]
    events = report["events"]
    result = {
        "actors": rows,
        "kill_at_s": args.kill_at,
        "events": events,
        "failed_seconds": failed_seconds(report["timeline"]),
        "supervisor_took_over_after_s": taken_over_after,
        "restarts": final.get("restarts"),
    }
    table = Table(title="Actors: where they ran, before and after losing the node")
    for column in ("actor", "before", "after", "actor_id"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(row[c] for c in ("actor", "before", "after", "actor_id")))
    console.print(table)
    took_over = "never" if taken_over_after is None else f"{taken_over_after:.1f} s"
    console.print(
        f"load: {events['sent']:,} sent, {events['accepted']:,} accepted, {events['failed']:,} failed, "
        f"in seconds {result['failed_seconds']} of the run (node lost at {args.kill_at:.0f} s)\n"
        f"the restarted supervisor took over {took_over} after the node was lost"
    )
    path = write_report(args.out, vars(args), "node_loss", result)
    console.print(f"wrote {path}")
    return 0 if taken_over_after is not None and events["accepted"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
