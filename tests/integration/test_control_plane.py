"""The supervisor keeps the actors alive; the CLI talks to a running system."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.integration.system import http, post_events, registration, wait_until

NOW = "2026-11-29T10:00:00.000Z"


def page_view(email: str) -> dict[str, Any]:
    return {
        "_id": uuid.uuid4().hex,
        "timestamp": NOW,
        "eventType": "page-view",
        "identityMap": {"Email": [{"id": email}]},
    }


def test_a_killed_gateway_is_restarted_by_ray_and_keeps_delivering(system: dict[str, Any]) -> None:
    import ray

    namespace = system["app"].runtime.ray_namespace
    gateway = ray.get_actor("gateway-loyalty", namespace=namespace)
    ray.kill(gateway, no_restart=False)
    assert wait_until(lambda: _answers(gateway), timeout=60)
    email = f"k-{uuid.uuid4().hex[:8]}@example.com"
    assert post_events(system["url"], registration(email, "Kim"))[0] == 202
    assert wait_until(lambda: any(r.body.get("email") == email for r in system["hooks"].received), timeout=30)


def test_an_actor_gone_for_good_is_recreated_by_the_supervisor(system: dict[str, Any]) -> None:
    import ray

    namespace = system["app"].runtime.ray_namespace
    shard = ray.get_actor("profile-shard-01", namespace=namespace)
    ray.kill(shard, no_restart=True)

    def recreated() -> bool:
        # The kill takes effect asynchronously, and the supervisor's own 2-s health loop
        # may be the one that notices: either way the restart shows in the status.
        ray.get(system["supervisor"].check_health.remote(), timeout=120)
        return http("GET", f"{system['url']}/v1/status")[1]["restarts"].get("profile-shard-01") == 1

    assert wait_until(recreated, timeout=120, interval=0.5)
    # events for both shards are accepted again (the ingress re-resolves the shard by name)
    events = [page_view(f"r{i}-{uuid.uuid4().hex[:6]}@example.com") for i in range(40)]

    def accepted() -> bool:
        code, body = post_events(system["url"], events)
        return code == 202 and body["accepted"] == 40

    assert wait_until(accepted, timeout=60, interval=0.5)
    status = http("GET", f"{system['url']}/v1/status")[1]
    assert status["restarts"].get("profile-shard-01") == 1


def test_cli_send_and_status(system: dict[str, Any], tmp_path: Path) -> None:
    file = tmp_path / "events.json"
    file.write_text(json.dumps([page_view("cli@example.com"), {"not": "an event"}]))
    sent = subprocess.run(
        [sys.executable, "-m", "itinerary.cli", "send", str(file), "--url", system["url"]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    answer = json.loads(sent.stdout)
    assert answer["accepted"] == 1 and answer["rejected"][0]["index"] == 1
    status = subprocess.run(
        [sys.executable, "-m", "itinerary.cli", "status", "--url", system["url"]],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": ""},
    )
    assert status.returncode == 0, status.stderr
    for heading in ("Profile shards", "Journeys", "Channel gateways", "Ingress", "profile-shard-00", "welcome"):
        assert heading in status.stdout


def _answers(handle: Any) -> bool:
    import ray

    try:
        ray.get(handle.ready.remote(), timeout=5)
        return True
    except Exception:
        return False


def test_peers_reached_at_start_and_missing_ones_named(system: dict[str, Any]) -> None:
    """The connect the supervisor and ingresses make at start: every running shard and
    gateway answers; a name nobody holds comes back as not reached, in a bounded time."""
    import asyncio

    from itinerary.actors.peers import RayPeers

    namespace = system["app"].runtime.ray_namespace
    shards = system["app"].runtime.shards
    gateways = list(system["app"].gateway_hosts())
    peers = RayPeers(namespace)

    async def connect() -> tuple[list[str], list[str]]:
        reached = await peers.connect(shards=range(shards), gateways=gateways)
        missing = await peers.connect(shards=[shards + 5], gateways=["gateway-no-such-channel"])
        return reached, missing

    reached, missing = asyncio.run(asyncio.wait_for(connect(), 60))
    assert reached == []
    assert missing == [f"profile-shard-{shards + 5:02d}", "gateway-no-such-channel"]
    assert len(peers._handles) == shards + len(gateways)  # the reached ones stay cached


def test_every_actor_reports_its_event_loop_stalls(system: dict[str, Any]) -> None:
    """Shards, gateways and ingresses measure loop lag (a 100-ms sampler) and collector
    pauses from start; `status` carries both, so `itinerary status` can show them."""

    def measured() -> bool:
        status = http("GET", f"{system['url']}/v1/status")[1]
        actors = status["shards"] + status["gateway_actors"] + status["ingresses"]
        return len(actors) >= 3 and all(a.get("stalls", {}).get("loop_lag_ms", {}).get("count", 0) > 0 for a in actors)

    assert wait_until(measured, timeout=30)
    status = http("GET", f"{system['url']}/v1/status")[1]
    for actor in status["shards"] + status["gateway_actors"] + status["ingresses"]:
        lag, pauses = actor["stalls"]["loop_lag_ms"], actor["stalls"]["gc_pause_ms"]
        assert 0 <= lag["p50"] <= lag["max"]
        assert set(pauses) >= {"count"}
