"""Passivation and eviction on a real deployment: idle profiles leave the shards' memory
for their SQLite stores and come back, whole, with their next event."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.system import deployment_variant, http, post_events, wait_until


@pytest.fixture(scope="module")
def system(ray_session: Any, receivers: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The integration deployment with profiles passivated after 1 s and snapshots every 1 s."""

    def edit(data: dict[str, Any]) -> None:
        data["runtime"]["profile"]["passivate_after"] = "PT1S"
        data["runtime"]["storage"]["snapshot_interval"] = "PT1S"

    with deployment_variant(ray_session, receivers, "test-config-eviction", edit) as system:
        yield system


def view(email: str, event_id: str) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"_id": event_id, "timestamp": now, "eventType": "page-view", "identityMap": {"Email": [{"id": email}]}}


def passivation(url: str) -> dict[str, int]:
    totals = {"evictions": 0, "reloads": 0}
    for shard in http("GET", f"{url}/v1/status")[1]["shards"]:
        for name in totals:
            totals[name] += shard["passivation"][name]
    return totals


def test_an_evicted_profile_is_read_back_whole_by_its_next_event(system: dict[str, Any]) -> None:
    url = system["url"]
    email = f"idle-{uuid.uuid4().hex[:8]}@example.com"
    first = uuid.uuid4().hex
    assert post_events(url, [view(email, first)]) == (202, {"accepted": 1, "rejected": []})
    before = http("GET", f"{url}/v1/profiles/Email/{email}")[1]
    # written by a snapshot, idle for two sweeps, and in no journey: it leaves memory
    assert wait_until(lambda: passivation(url)["evictions"] >= 1, timeout=60, interval=0.5)
    code, evicted = http("GET", f"{url}/v1/profiles/Email/{email}")[:2]
    assert code == 200 and evicted == before  # read through from the store
    # the old event id is still known (a duplicate), a new one applies to the same profile
    assert post_events(url, [view(email, first), view(email, uuid.uuid4().hex)])[0] == 202
    assert passivation(url)["reloads"] >= 1
    after = http("GET", f"{url}/v1/profiles/Email/{email}")[1]
    assert after["created"] == before["created"] and after["updated"] >= before["updated"]
    shards = http("GET", f"{url}/v1/status")[1]["shards"]
    assert sum(s["duplicates"] for s in shards) >= 1
