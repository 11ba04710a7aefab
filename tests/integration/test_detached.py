"""`itinerary up --detach` leaves a deployment running on a cluster after the command
returns; `itinerary down` stops it, supervisor and data plane alike."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.integration.system import http, post_events, wait_until

NOW = "2026-11-29T10:00:00.000Z"


def itinerary(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "itinerary.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def named_actors(namespace: str) -> list[str]:
    import ray

    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == namespace)


def test_up_detached_keeps_running_until_down(ray_session: Any, tmp_path: Path) -> None:
    address = ray_session.get_runtime_context().gcs_address
    namespace = f"itinerary-detach-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "detached.yaml"
    config.write_text(
        "events:\n"
        "  page-view:\n"
        "    rule: \"event.eventType == 'page-view'\"\n"
        "runtime:\n"
        "  shards: 1\n"
        f"  ray_namespace: {namespace}\n"
        f"  data_dir: {tmp_path / 'data'}\n"
        "  ingress:\n"
        "    port: 0\n"
    )
    up = itinerary("up", "--config", str(config), "--address", address, "--detach")
    assert up.returncode == 0, up.stderr[-2000:]
    url = re.search(r"ingest:\s+(http://\S+)/v1/events", up.stdout)
    assert url is not None, up.stdout
    assert f"itinerary down --address {address} --namespace {namespace}" in up.stdout

    # The command has returned; the deployment serves on.
    event = {
        "_id": uuid.uuid4().hex,
        "timestamp": NOW,
        "eventType": "page-view",
        "identityMap": {"Email": [{"id": "detached@example.com"}]},
    }
    assert post_events(url.group(1), [event]) == (202, {"accepted": 1, "rejected": []})
    assert named_actors(namespace) == ["ingress-0", "itinerary-supervisor", "profile-shard-00"]

    twice = itinerary("up", "--config", str(config), "--address", address, "--detach")
    assert twice.returncode == 2 and "a deployment is already running" in twice.stderr, twice.stderr[-2000:]
    assert post_events(url.group(1), [{**event, "_id": uuid.uuid4().hex}])[0] == 202  # the first one is untouched

    down = itinerary("down", "--address", address, "--namespace", namespace)
    assert down.returncode == 0, down.stderr[-2000:]
    assert "stopped 3 actors" in down.stdout
    assert wait_until(lambda: named_actors(namespace) == [], timeout=30)

    def refused() -> bool:
        try:
            http("GET", f"{url.group(1)}/healthz")
            return False
        except OSError:
            return True

    assert wait_until(refused, timeout=30)
    again = itinerary("down", "--address", address, "--namespace", namespace)
    assert again.returncode == 1 and "no deployment running" in again.stderr


def test_up_detach_without_a_cluster_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("events:\n  page-view:\n    rule: \"event.eventType == 'page-view'\"\n")
    refused = itinerary("up", "--config", str(config), "--detach", timeout=60)
    assert refused.returncode == 2 and "--detach needs a running cluster" in refused.stderr
