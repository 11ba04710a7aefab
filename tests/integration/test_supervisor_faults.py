"""The data plane does not share its supervisor's fate.

Ray kills the actors a process owns when that process dies; the shards, gateways and
ingresses are detached so that losing the supervisor's process (or its node) does not
take the deployment down. A supervisor that Ray restarts takes the running actors over;
one started afresh replaces the actors an earlier, vanished supervisor left running.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.integration.system import deployment_variant, http, post_events, registration, wait_until


def actor_ids(app: Any) -> dict[str, str]:
    """The Ray actor id behind each data-plane name: a re-created actor has a new one."""
    import ray

    names = [*app.gateway_hosts(), "profile-shard-00", "profile-shard-01", "ingress-0"]
    return {name: ray.get_actor(name, namespace=app.runtime.ray_namespace)._actor_id.hex() for name in names}


def welcomed(receivers: dict[str, Any], email: str) -> bool:
    return any(r.body.get("email") == email for r in receivers["hooks"].received)


def test_a_restarted_supervisor_takes_the_running_deployment_over(ray_session: Any, receivers: dict[str, Any]) -> None:
    with deployment_variant(ray_session, receivers, "supervisor-restart", lambda data: None) as system:
        url, app = system["url"], system["app"]
        before = actor_ids(app)
        ray_session.kill(system["supervisor"], no_restart=False)  # its process dies; Ray restarts it

        # Events keep flowing while the supervisor is down or coming back.
        during = f"during-{uuid.uuid4().hex[:8]}@example.com"
        code, body = post_events(url, [registration(during, "Sam")])
        assert code == 202 and body["accepted"] == 1, body
        assert wait_until(lambda: welcomed(receivers, during), timeout=30)

        def taken_over() -> bool:
            code, status, _ = http("GET", f"{url}/v1/status")
            return code == 200 and status.get("supervisor_restarted") is True and len(status["shards"]) == 2

        assert wait_until(taken_over, timeout=90, interval=0.5)
        status = http("GET", f"{url}/v1/status")[1]
        assert status["urls"] == [url]
        assert all("error" not in shard for shard in status["shards"]), status["shards"]
        assert status["restarts"] == {}
        assert actor_ids(app) == before  # taken over, not re-created
        assert ray_session.get(system["supervisor"].check_health.remote(), timeout=60) == []

        after = f"after-{uuid.uuid4().hex[:8]}@example.com"
        assert post_events(url, [registration(after, "Sam")])[0] == 202
        assert wait_until(lambda: welcomed(receivers, after), timeout=30)


def test_a_new_supervisor_replaces_actors_left_by_one_that_vanished(
    ray_session: Any, receivers: dict[str, Any]
) -> None:
    from itinerary.actors.runtime import launch_supervisor

    with deployment_variant(ray_session, receivers, "supervisor-vanished", lambda data: None) as system:
        url, app = system["url"], system["app"]
        before = actor_ids(app)
        # What a driver killed with SIGKILL leaves: no supervisor, no shutdown.
        ray_session.kill(system["supervisor"], no_restart=True)
        left = f"left-{uuid.uuid4().hex[:8]}@example.com"
        assert post_events(url, [registration(left, "Sam")])[0] == 202  # the data plane still serves
        assert wait_until(lambda: welcomed(receivers, left), timeout=30)

        def name_free() -> bool:
            try:
                ray_session.get_actor("itinerary-supervisor", namespace=app.runtime.ray_namespace)
                return False
            except ValueError:
                return True

        assert wait_until(name_free, timeout=30)
        successor = launch_supervisor(app, "supervisor-successor")
        system["supervisor"] = successor  # deployment_variant shuts this one down
        info = ray_session.get(successor.start.remote(), timeout=120)
        after_ids = actor_ids(app)
        assert all(after_ids[name] != before[name] for name in before), (before, after_ids)

        fresh = f"fresh-{uuid.uuid4().hex[:8]}@example.com"
        fresh_url = info["urls"][0]
        assert wait_until(lambda: post_events(fresh_url, [registration(fresh, "Sam")])[0] == 202, timeout=30)
        assert wait_until(lambda: welcomed(receivers, fresh), timeout=30)
