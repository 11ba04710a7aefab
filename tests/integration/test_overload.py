"""Overload on real Ray: ingest driven harder than the bounded queues allow.

A deployment with small queues takes many concurrent clients posting large batches for
a sustained period. The ingress must answer 429 with Retry-After once its queue is full,
the actors' memory must stay flat, and every event acknowledged with 202 must be applied
(no acknowledged event dropped); the clients retry refused batches as they should.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from tests.integration.system import http
from tests.integration.system import test_config as deployment_config

NOW = "2026-11-29T10:00:00.000Z"


@pytest.fixture(scope="module")
def small_system(ray_session: Any, receivers: dict[str, Any]) -> Iterator[dict[str, Any]]:
    from itinerary.actors.runtime import launch_supervisor

    app = deployment_config(receivers["smtp"], receivers["hooks"], receivers["flaky"], receivers["data_root"])
    ingress = app.runtime.ingress.model_copy(
        update={"max_queued_events": 3000, "max_inflight_batches": 1, "batch_max_events": 500}
    )
    runtime = app.runtime.model_copy(update={"ingress": ingress, "shards": 1})
    app = app.model_copy(update={"runtime": runtime})
    supervisor = launch_supervisor(app, "overload-test")
    info = ray_session.get(supervisor.start.remote(), timeout=120)
    yield {"url": info["urls"][0], "supervisor": supervisor, "app": app}
    ray_session.get(supervisor.shutdown.remote(), timeout=60)
    ray_session.kill(supervisor, no_restart=True)


def actor_rss() -> dict[int, int]:
    """Resident memory of this machine's ingress and shard processes, by pid."""
    out: dict[int, int] = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if cmd.startswith(("ray::Ingress", "ray::ProfileShard")):
            try:
                out[proc.info["pid"]] = proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
    return out


def view(run: str, n: int) -> dict[str, Any]:
    return {
        "_id": f"{run}-{n}",
        "timestamp": NOW,
        "eventType": "page-view",
        "identityMap": {"Email": [{"id": f"{run}-{n % 5000}@example.com"}]},
        "web": {"webPageDetails": {"name": "x" * 600}},  # ~1 KB, like a real page view
    }


def test_overload_answers_429_keeps_memory_flat_and_drops_nothing_acknowledged(small_system: dict[str, Any]) -> None:
    url = small_system["url"]
    run = uuid.uuid4().hex[:8]
    clients, per_client, batch = 12, 40, 500  # 240,000 events offered as fast as possible
    answers: dict[str, int] = {"202": 0, "429": 0, "other": 0}
    retry_after: set[str] = set()
    acknowledged = 0
    lock = threading.Lock()

    def client(number: int) -> None:
        nonlocal acknowledged
        for k in range(per_client):
            first = (number * per_client + k) * batch
            body = json.dumps([view(run, first + i) for i in range(batch)]).encode()
            while True:
                status, answer, headers = http("POST", f"{url}/v1/events", body)
                with lock:
                    if status == 202:
                        answers["202"] += 1
                        acknowledged += answer["accepted"]
                    elif status == 429:
                        answers["429"] += 1
                        retry_after.add(headers.get("Retry-After", ""))
                    else:
                        answers["other"] += 1
                if status == 202:
                    break
                time.sleep(0.05)  # shorter than Retry-After on purpose: a pushy client

    before = actor_rss()
    status_before = http("GET", f"{url}/v1/status")[1]
    applied_before = sum(s["events_applied"] for s in status_before["shards"])
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    peak: dict[int, int] = dict(before)
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        for pid, rss in actor_rss().items():
            peak[pid] = max(peak.get(pid, 0), rss)
        time.sleep(0.5)
    for thread in threads:
        thread.join()

    assert answers["other"] == 0, answers
    assert answers["429"] > 0 and retry_after == {"1"}, answers  # the bound was reached
    assert acknowledged == clients * per_client * batch
    status_after = http("GET", f"{url}/v1/status")[1]
    applied = sum(s["events_applied"] for s in status_after["shards"]) - applied_before
    assert applied == acknowledged  # every acknowledged event applied, none twice
    growth = {pid: peak[pid] - before.get(pid, peak[pid]) for pid in peak}
    # 240 MB of JSON went through; bounded queues hold ~3 MB of it at a time
    assert max(growth.values()) < 150 * 1024 * 1024, {p: g // 2**20 for p, g in growth.items()}
    print(f"answers {answers}; peak RSS growth MiB { {p: g // 2**20 for p, g in growth.items()} }")
