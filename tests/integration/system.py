"""A real deployment for integration tests: local Ray, real receivers, real HTTP.

Receivers run on their own event loop in a background thread so that tests stay plain
synchronous functions that poll with deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from itinerary.config.app import AppConfig
from itinerary.receivers import SmtpReceiver, WebhookReceiver

T = TypeVar("T")
TOKEN = "test-bearer-token"


class BackgroundLoop:
    """An asyncio loop in a daemon thread; `run(coro)` waits for the result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="receivers")
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Poll `predicate` until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": content_type, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return exc.code, parsed, dict(exc.headers)


EVENT_TIME = "2026-11-29T10:00:00.000Z"


def ev(event_type: str, email: str, **fields: Any) -> dict[str, Any]:
    """An event of `event_type` for the profile of `email`, with a fresh id."""
    return {
        "_id": uuid.uuid4().hex,
        "timestamp": EVENT_TIME,
        "eventType": event_type,
        "identityMap": {"Email": [{"id": email, "primary": True}]},
        **fields,
    }


def registration(email: str, name: str) -> dict[str, Any]:
    """The form that starts the test config's welcome journey."""
    return ev("web.formFilledOut", email, personalEmail={"address": email}, person={"name": {"firstName": name}})


def post_events(url: str, events: Any) -> tuple[int, Any]:
    status, body, _ = http("POST", f"{url}/v1/events", json.dumps(events).encode())
    return status, body


def test_config(
    smtp: SmtpReceiver, hooks: WebhookReceiver, flaky: WebhookReceiver, data_root: str | None = None
) -> AppConfig:
    os.environ["ITINERARY_TEST_TOKEN"] = TOKEN
    limit = {"calls": 1000, "period": "PT1S", "burst": 100}
    events = {
        "registration": {
            "rule": "event.eventType == 'web.formFilledOut'",
            "namespace": "Email",
            "profile_fields": {"email": "event.personalEmail.address", "firstName": "event.person.name.firstName"},
        },
        "cart_add": {"rule": "event.eventType == 'commerce.productListAdds'"},
        "purchase": {"rule": "event.eventType == 'commerce.purchases' or exists(event.commerce.order.purchaseID)"},
        "poi_entry": {"rule": "event.placeContext.POIinteraction.poiEntries.value > 0"},
        "page_view": {"rule": "event.eventType == 'page-view'"},
        "ping": {"rule": "event.eventType == 'test.ping'"},
        "flaky": {"rule": "event.eventType == 'test.flaky'"},
        "order": {"rule": "event.eventType == 'test.order'"},
    }
    token = {"env": "ITINERARY_TEST_TOKEN"}
    channels = {
        "email": {"type": "email", "port": smtp.port, "sender": "shop@example.com", "limit": limit},
        "loyalty": {
            "type": "webhook",
            "allow_private": True,
            "url": f"{hooks.url}/loyalty",
            "token": token,
            "limit": limit,
        },
        "limited": {
            "type": "webhook",
            "allow_private": True,
            "url": f"{hooks.url}/limited",
            "token": token,
            "limit": {"calls": 20, "period": "PT1S", "burst": 1, "mode": "throttle"},
        },
        "receipts": {
            "type": "webhook",
            "allow_private": True,
            "url": f"{hooks.url}/receipts",
            "token": token,
            "limit": limit,
        },
        "flaky": {
            "type": "webhook",
            "allow_private": True,
            "url": f"{flaky.url}/flaky",
            "token": token,
            "timeout": "PT2S",
            "retry": {"max_retries": 3, "backoff": "PT0.05S", "max_backoff": "PT0.2S"},
        },
    }

    def one_action_journey(journey: str, event: str, channel: str) -> dict[str, Any]:
        """Enter on `event`, call `channel` once with the event's `n`, end (or fail)."""
        return {
            "id": journey,
            "reentrance": {"allowed": True, "wait": "PT0S"},
            "nodes": {
                "start": {"type": "entry", "event": event, "next": "call"},
                "call": action("call", channel, n="event.n"),
                "done": {"type": "end"},
                "failed": {"type": "end"},
            },
        }

    def action(node: str, channel: str, **payload: str) -> dict[str, Any]:
        return {
            "type": "action",
            "channel": channel,
            "payload": payload or {"p": "profile.identities.Email"},
            "next": "done",
            "on_error": "failed",
        }

    journeys = [
        {
            "id": "welcome",
            "nodes": {
                "start": {"type": "entry", "event": "registration", "next": "mail"},
                "mail": {
                    "type": "action",
                    "channel": "email",
                    "next": "enrol",
                    "on_error": "failed",
                    "message": {
                        "to": "profile.email",
                        "subject": "Welcome {{ profile.firstName }}",
                        "text": "Hello {{ profile.firstName | default('there') }}",
                    },
                },
                "enrol": {
                    "type": "action",
                    "channel": "loyalty",
                    "next": "done",
                    "on_error": "failed",
                    "payload": {"email": "profile.email", "name": "profile.firstName"},
                },
                "done": {"type": "end"},
                "failed": {"type": "end"},
            },
        },
        {
            "id": "cart",
            "reentrance": {"allowed": True, "wait": "PT1S"},
            "nodes": {
                "start": {"type": "entry", "event": "cart_add", "next": "wait"},
                "wait": {
                    "type": "wait_event",
                    "events": [{"event": "purchase", "next": "bought"}],
                    "timeout": "PT30M",
                    "on_timeout": "remind",
                },
                "remind": {
                    "type": "action",
                    "channel": "email",
                    "next": "done",
                    "on_error": "failed",
                    "message": {
                        "to": "concat(profile.identities.Email)",
                        "subject": "Still want {{ event.productListItems[0].name }}?",
                        "text": "Your cart misses you",
                    },
                },
                "bought": {"type": "end"},
                "done": {"type": "end"},
                "failed": {"type": "end"},
            },
        },
        one_action_journey("burst", "ping", "limited"),
        one_action_journey("fragile", "flaky", "flaky"),
        one_action_journey("receipt", "order", "receipts"),
    ]
    return AppConfig.model_validate(
        {
            "runtime": {
                "shards": 2,
                "partitions": 256,
                "ray_namespace": f"itinerary-test-{uuid.uuid4().hex[:8]}",
                "ingress": {"port": 0, "max_body_bytes": 1024 * 1024},
                # Real SQLite logs and snapshots, in a fresh directory under pytest's
                # temporary root (which pytest prunes), so test runs leave nothing behind.
                "data_dir": tempfile.mkdtemp(prefix="itinerary-test-data-", dir=data_root),
                "storage": {"snapshot_interval": "PT2S"},
                # Two channels share one gateway actor, the others have one each: the
                # tests cover both placements.
                "gateway_groups": {"mail": ["email", "receipts"]},
            },
            "events": events,
            "channels": channels,
            "journeys": journeys,
        }
    )


@contextlib.contextmanager
def deployment_variant(
    ray_session: Any, receivers: dict[str, Any], name: str, edit: Callable[[dict[str, Any]], None]
) -> Iterator[dict[str, Any]]:
    """The integration deployment with its runtime settings changed by `edit` (given the
    config as JSON data without channels), started under `name` and shut down after."""
    from itinerary.actors.runtime import launch_supervisor

    base = test_config(receivers["smtp"], receivers["hooks"], receivers["flaky"], receivers["data_root"])
    data = base.model_dump(mode="json", by_alias=True, exclude={"channels"})
    data["runtime"].pop("security", None)
    edit(data)
    app = AppConfig.model_validate({**data, "channels": base.channels})
    supervisor = launch_supervisor(app, name)
    info = ray_session.get(supervisor.start.remote(), timeout=120)
    deployed = {"url": info["urls"][0], "supervisor": supervisor, "app": app, **receivers}
    yield deployed
    supervisor = deployed["supervisor"]  # a test may have started a successor
    ray_session.get(supervisor.shutdown.remote(), timeout=60)
    ray_session.kill(supervisor, no_restart=True)
