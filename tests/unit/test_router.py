"""The router's records: routing identity, shard, and the part of each event that travels."""

from __future__ import annotations

import time
from typing import Any

import msgpack

from itinerary.engine.ingest import validate_events
from itinerary.engine.routing import RoutingTable
from itinerary.router import EventRouter
from tests.unit.journey_helpers import CART, WELCOME, catalog, event

NOW = time.time()


def route(*events: dict[str, Any], journeys: tuple[dict[str, Any], ...] = (WELCOME, CART)) -> list[list[Any]]:
    cat = catalog(*journeys)
    accepted, rejected = validate_events(list(events), now=NOW)
    assert rejected == []
    per_shard, unrouted = EventRouter(cat, RoutingTable(64, 1)).route(accepted, NOW)
    assert unrouted == []
    return per_shard[0]


def payload(record: list[Any]) -> dict[str, Any] | None:
    return None if record[2] is None else msgpack.unpackb(record[2], raw=False)


def test_records_carry_key_definition_id_and_identities_beside_the_payload() -> None:
    [record] = route(event("cart_add", 1, pageViews={"value": 1}))
    key, name, _, at, event_id, identities = record
    assert (key, name, at, event_id) == ("Email:ann@example.com", "cart_add", NOW, "cart_add-1")
    assert identities == {"Email": [{"id": "ann@example.com", "primary": True}]}


def test_a_payload_holds_only_the_fields_journeys_and_profile_fields_read() -> None:
    registration, cart, purchase = route(
        event("registration", 1, device={"type": "mobile"}),
        event("cart_add", 2, web={"webPageDetails": {"name": "Tents"}}),
        event("purchase", 3, commerce={"order": {"purchaseID": "o-1"}}),
    )
    # profile fields read personalEmail and person; welcome reads only the profile
    assert set(payload(registration) or {}) == {"personalEmail", "person"}
    assert payload(cart) == {"productListItems": [{"SKU": "SKU-1", "name": "Trail shoes", "priceTotal": 89.0}]}
    assert set(payload(purchase) or {}) == {"productListItems"}  # the cart journey waits for it


def test_a_journey_that_reads_the_whole_event_gets_all_of_it() -> None:
    # the welcome journey, started by a cart add, with a message that prints the event
    nodes = WELCOME["nodes"]
    send = {**nodes["send"], "message": {**nodes["send"]["message"], "text": "{{ event }}"}}
    start = {**nodes["start"], "event": "cart_add"}
    whole = {**WELCOME, "id": "echo", "nodes": {**nodes, "start": start, "send": send}}
    [cart] = route(event("cart_add", 2, device={"type": "mobile"}), journeys=(whole,))
    assert set(payload(cart) or {}) >= {"device", "productListItems", "_id", "_ts", "identityMap", "timestamp"}


def test_events_no_journey_reads_travel_without_payload() -> None:
    [cart] = route(event("cart_add", 2), journeys=(WELCOME,))
    assert cart[2] is None
