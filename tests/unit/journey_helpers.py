"""Builders for journey tests: a config with two channels and journeys given as dicts."""

from __future__ import annotations

from typing import Any

from itinerary.catalog import Catalog
from itinerary.config.app import AppConfig

EVENTS = {
    "registration": {
        "rule": "event.eventType == 'web.formFilledOut'",
        "namespace": "Email",
        "profile_fields": {"email": "event.personalEmail.address", "firstName": "event.person.name.firstName"},
    },
    "cart_add": {"rule": "event.eventType == 'commerce.productListAdds'"},
    "purchase": {"rule": "event.eventType == 'commerce.purchases'"},
}
CHANNELS = {
    "email": {"type": "email", "host": "127.0.0.1", "port": 2525, "sender": "shop@example.com"},
    "push": {"type": "webhook", "url": "http://127.0.0.1:9/push", "allow_private": True},
}


def catalog(*journeys: dict[str, Any], events: dict[str, Any] | None = None, **runtime: Any) -> Catalog:
    """A catalog of `journeys` over EVENTS (or `events`) and CHANNELS, with `runtime` settings."""
    app = AppConfig.model_validate(
        {
            "runtime": runtime,
            "events": EVENTS if events is None else events,
            "channels": CHANNELS,
            "journeys": list(journeys),
        }
    )
    return Catalog.build(app, "test.yaml")


def event(kind: str, n: int, ts: str = "2026-11-29T10:00:00Z", **extra: Any) -> dict[str, Any]:
    event_type = {
        "registration": "web.formFilledOut",
        "cart_add": "commerce.productListAdds",
        "purchase": "commerce.purchases",
    }[kind]
    body: dict[str, Any] = {
        "_id": f"{kind}-{n}",
        "timestamp": ts,
        "eventType": event_type,
        "identityMap": {"Email": [{"id": "ann@example.com", "primary": True}]},
    }
    if kind == "registration":
        body["personalEmail"] = {"address": "ann@example.com"}
        body["person"] = {"name": {"firstName": "Ann"}}
    if kind in ("cart_add", "purchase"):
        body["productListItems"] = [{"SKU": "SKU-1", "name": "Trail shoes", "priceTotal": 89.0}]
    body.update(extra)
    return body


WELCOME: dict[str, Any] = {
    "id": "welcome",
    "nodes": {
        "start": {"type": "entry", "event": "registration", "next": "send"},
        "send": {
            "type": "action",
            "channel": "email",
            "next": "done",
            "on_error": "failed",
            "message": {
                "to": "profile.email",
                "subject": "Welcome {{ profile.firstName }}",
                "text": "Hi {{ profile.firstName | default('there') }}",
            },
        },
        "done": {"type": "end"},
        "failed": {"type": "end"},
    },
}

CART = {
    "id": "cart",
    "reentrance": {"allowed": True, "wait": "PT10M"},
    "nodes": {
        "start": {"type": "entry", "event": "cart_add", "next": "wait"},
        "wait": {
            "type": "wait_event",
            "events": [{"event": "purchase", "next": "bought"}],
            "timeout": "PT30M",
            "on_timeout": "has_email",
        },
        "has_email": {
            "type": "condition",
            "branches": [{"when": "exists(profile.email)", "next": "mail"}],
            "else": "push",
        },
        "mail": {
            "type": "action",
            "channel": "email",
            "next": "done",
            "message": {
                "to": "profile.email",
                "subject": "You left {{ event.productListItems[0].name }}",
                "text": "Come back",
            },
        },
        "push": {
            "type": "action",
            "channel": "push",
            "next": "done",
            "payload": {"sku": "event.productListItems[0].SKU", "who": "profile.identities.Email"},
        },
        "bought": {"type": "end"},
        "done": {"type": "end"},
    },
}


def echo_journey(start_event: str) -> dict[str, Any]:
    """WELCOME started by `start_event`, its message printing the whole event: a journey
    that reads all of the event, so the router keeps all of it."""
    nodes = WELCOME["nodes"]
    send = {**nodes["send"], "message": {**nodes["send"]["message"], "text": "{{ event }}"}}
    start = {**nodes["start"], "event": start_event}
    return {**WELCOME, "id": "echo", "nodes": {**nodes, "start": start, "send": send}}
