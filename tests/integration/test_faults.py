"""Faults injected on real Ray with real receivers: nothing acknowledged is lost or doubled."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from tests.integration.system import http, post_events, wait_until

NOW = "2026-11-29T10:00:00.000Z"


def order(run: str, n: int) -> dict[str, Any]:
    return {
        "_id": f"{run}-order-{n}",
        "timestamp": NOW,
        "eventType": "test.order",
        "identityMap": {"Email": [{"id": f"{run}-{n}@example.com"}]},
        "n": n,
    }


def page_view(run: str, n: int) -> dict[str, Any]:
    return {
        "_id": f"{run}-view-{n}",
        "timestamp": NOW,
        "eventType": "page-view",
        "identityMap": {"Email": [{"id": f"{run}-{n}@example.com"}]},
    }


def post_until_accepted(url: str, batch: list[dict[str, Any]], deadline: float) -> int:
    """What a careful client does: retry a batch whose answer it did not get or that was
    refused with 503/429; event ids make the retries harmless. Returns the attempts."""
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        try:
            code, body = post_events(url, batch)
        except OSError:
            code, body = 0, None
        if code == 202 and body["accepted"] == len(batch):
            return attempts
        time.sleep(0.2)
    raise AssertionError("a batch was never accepted")


def test_killing_a_shard_mid_stream_loses_and_doubles_nothing(system: dict[str, Any]) -> None:
    import ray

    run = uuid.uuid4().hex[:8]
    orders = 1200
    events = [e for n in range(orders) for e in (order(run, n), page_view(run, n))]
    batches = [events[i : i + 100] for i in range(0, len(events), 100)]
    url = system["url"]
    namespace = system["app"].runtime.ray_namespace
    deadline = time.monotonic() + 180
    retried = []
    posted = threading.Event()

    def stream() -> None:
        for number, batch in enumerate(batches):
            if number == len(batches) // 3:
                posted.set()
            if post_until_accepted(url, batch, deadline) > 1:
                retried.append(number)
        posted.set()

    sender = threading.Thread(target=stream)
    sender.start()
    assert posted.wait(60)
    ray.kill(ray.get_actor("profile-shard-00", namespace=namespace), no_restart=False)
    sender.join(200)
    assert not sender.is_alive()

    hooks = system["hooks"]

    def receipts() -> list[Any]:
        mine = f"Email:{run}"
        return [r for r in hooks.received if r.path == "/receipts" and str(r.idempotency_key).startswith(mine)]

    # every order's message arrives exactly once, by idempotency key and by count
    assert wait_until(lambda: len({r.idempotency_key for r in receipts()}) == orders, timeout=120), len(receipts())
    time.sleep(1.0)  # a late double would show up now
    keys = [r.idempotency_key for r in receipts()]
    assert len(keys) == len(set(keys)) == orders
    assert sorted(r.body["n"] for r in receipts()) == list(range(orders))

    # every accepted event was applied exactly once: one journey entry per order profile,
    # which ran to its end (a replayed order would have been refused as a duplicate)
    for n in range(0, orders, 7):
        code, profile, _ = http("GET", f"{url}/v1/profiles/Email/{run}-{n}@example.com")
        assert code == 200
        assert profile["history"]["receipt"]["entries"] == 1
        assert profile["journeys"] == []

    status = http("GET", f"{url}/v1/status")[1]
    shard0 = next(s for s in status["shards"] if s["name"] == "profile-shard-00")
    # the restarted shard really came back from its store, not empty
    assert shard0["recovery"]["profiles"] + shard0["recovery"]["replayed"] > 0, shard0["recovery"]
