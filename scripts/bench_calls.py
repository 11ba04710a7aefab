"""What one call between two actors costs: a Ray actor call against a direct stream.

Two Ray actors on a local Ray: a callee with an async method that takes a blob and
answers its length, and a caller that awaits N calls one after another, first as Ray
calls (`callee.apply.remote(blob)`), then on the callee's direct stream (actors/wire.py:
`WireServer` in the callee, `WireClient` in the caller), in alternating rounds. Each side
reads its own process CPU time around the calls; the table gives µs of CPU per call in
the caller and in the callee, and the time from call to answer, medians over the rounds.

Usage: `python scripts/bench_calls.py [--calls 2000] [--rounds 3] [--blob-bytes 10000]
[--out results/bench_calls.json]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import ray
from rich.console import Console
from rich.table import Table

from itinerary.actors.wire import WireClient, WireServer


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Callee:
    """Answers the blob's length, as a Ray method and on its stream."""

    def __init__(self) -> None:
        self.stream = WireServer({"apply": self.apply}, "bench-callee")

    async def apply(self, blob: bytes) -> int:
        return len(blob)

    async def cpu(self) -> float:
        return _cpu()

    async def endpoint(self) -> dict[str, Any]:
        return await self.stream.start("127.0.0.1")


class Caller:
    """Makes `calls` awaited calls one after another; returns (CPU seconds, wall seconds)."""

    async def by_ray(self, callee: Any, calls: int, blob: bytes) -> tuple[float, float]:
        await callee.apply.remote(blob)  # connection set up outside the measurement
        cpu, began = _cpu(), time.perf_counter()
        for _ in range(calls):
            await callee.apply.remote(blob)
        return _cpu() - cpu, time.perf_counter() - began

    async def by_stream(self, endpoint: dict[str, Any], calls: int, blob: bytes) -> tuple[float, float]:
        client = await WireClient.connect("bench-callee", endpoint, timeout=10)
        await client.call("apply", blob)
        cpu, began = _cpu(), time.perf_counter()
        for _ in range(calls):
            await client.call("apply", blob)
        spent = _cpu() - cpu, time.perf_counter() - began
        client.close()
        await asyncio.sleep(0)
        return spent


def run(calls: int, rounds: int, blob_bytes: int) -> dict[str, Any]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        # Handles typed Any: the actor classes' methods gain `.remote` only through Ray.
        callee: Any = ray.remote(Callee).options(num_cpus=0, max_concurrency=1000).remote()
        caller: Any = ray.remote(Caller).options(num_cpus=0, max_concurrency=1000).remote()
        endpoint = ray.get(callee.endpoint.remote())
        blob = bytes(blob_bytes)
        samples: dict[str, list[dict[str, float]]] = {"ray": [], "stream": []}
        for _ in range(rounds):
            for way in ("ray", "stream"):
                before = ray.get(callee.cpu.remote())
                if way == "ray":
                    cpu, wall = ray.get(caller.by_ray.remote(callee, calls, blob))
                else:
                    cpu, wall = ray.get(caller.by_stream.remote(endpoint, calls, blob))
                callee_cpu = ray.get(callee.cpu.remote()) - before
                samples[way].append(
                    {
                        "caller_us": cpu / calls * 1e6,
                        "callee_us": callee_cpu / calls * 1e6,
                        "answer_us": wall / calls * 1e6,
                    }
                )
    finally:
        ray.shutdown()
    medians = {
        way: {key: statistics.median(s[key] for s in runs) for key in ("caller_us", "callee_us", "answer_us")}
        for way, runs in samples.items()
    }
    return {"calls": calls, "rounds": rounds, "blob_bytes": blob_bytes, "medians": medians, "samples": samples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blob-bytes", type=int, default=10_000)
    parser.add_argument("--out", default="results/bench_calls.json")
    args = parser.parse_args(argv)
    result = run(args.calls, args.rounds, args.blob_bytes)
    table = Table(title=f"One awaited call between two actors ({args.blob_bytes:,}-byte argument), medians")
    for column in ("way", "caller CPU µs", "callee CPU µs", "call to answer µs"):
        table.add_column(column, justify="right")
    for way, m in result["medians"].items():
        table.add_row(way, f"{m['caller_us']:.0f}", f"{m['callee_us']:.0f}", f"{m['answer_us']:.0f}")
    Console().print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
