"""The router's records: routing identity, shard, the part of each event that travels,
and the limits on that part (size, encodability), applied per event."""

from __future__ import annotations

import time
from typing import Any

import msgpack

from itinerary.engine.ingest import validate_events
from itinerary.engine.routing import RoutingTable
from itinerary.router import EventRouter, pack_batch
from tests.unit.journey_helpers import CART, WELCOME, catalog, echo_journey, event

NOW = time.time()


def routed(
    *events: dict[str, Any], journeys: tuple[dict[str, Any], ...] = (WELCOME, CART), limit: int | None = None
) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    """The decoded records of one shard, and the events the router refused."""
    cat = catalog(*journeys)
    accepted, rejected = validate_events(list(events), now=NOW)
    assert rejected == []
    per_shard, unrouted = EventRouter(cat, RoutingTable(64, 1), max_record_bytes=limit).route(accepted, NOW)
    records = per_shard.get(0, [])
    assert all(type(record) is bytes for record in records)
    return [msgpack.unpackb(record, raw=False) for record in records], unrouted


def route(*events: dict[str, Any], journeys: tuple[dict[str, Any], ...] = (WELCOME, CART)) -> list[list[Any]]:
    records, unrouted = routed(*events, journeys=journeys)
    assert unrouted == []
    return records


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
    whole = echo_journey("cart_add")
    [cart] = route(event("cart_add", 2, device={"type": "mobile"}), journeys=(whole,))
    assert set(payload(cart) or {}) >= {"device", "productListItems", "_id", "_ts", "identityMap", "timestamp"}


def test_events_no_journey_reads_travel_without_payload() -> None:
    [cart] = route(event("cart_add", 2), journeys=(WELCOME,))
    assert cart[2] is None


def test_the_size_limit_applies_to_what_the_shard_keeps() -> None:
    big = {"items": ["x" * 1000] * 5}  # ~5 kB in a field no journey reads
    records, unrouted = routed(
        event("cart_add", 1, productListItems=[{"SKU": "S", "name": "n" * 5000}]),
        event("cart_add", 2, web=big),
        event("registration", 3, web=big),
        limit=2048,
    )
    [(index, reason)] = [(r["index"], r["reason"]) for r in unrouted]
    assert index == 0 and reason.startswith("event is ") and reason.endswith(" bytes as stored, over the limit of 2048")
    # the big field travels nowhere, so it costs the shard nothing and is not refused
    assert [r[4] for r in records] == ["cart_add-2", "registration-3"]
    assert all(len(msgpack.packb(r)) <= 2048 for r in records)


def test_an_event_that_cannot_be_encoded_is_refused_alone() -> None:
    records, unrouted = routed(
        event("cart_add", 1, productListItems=[{"SKU": "S", "quantity": 2**70}]),
        event("cart_add", 2, web={"count": 2**70}),  # not stored: never encoded
        event("cart_add", 3),
        event("cart_add", 4, productListItems=[{"SKU": "\ud800"}]),  # a lone surrogate (msgpack input)
    )
    assert unrouted == [
        {"index": 0, "reason": "event cannot be encoded: Integer value out of range"},
        {
            "index": 3,
            "reason": "event cannot be encoded: 'utf-8' codec can't encode character '\\ud800' in position 0: "
            "surrogates not allowed",
        },
    ]
    assert [r[4] for r in records] == ["cart_add-2", "cart_add-3"]


def test_a_batch_of_packed_records_is_the_msgpack_array_of_the_records() -> None:
    for count in (0, 1, 15, 16, 70_000):  # each length form of msgpack's array header
        records = [[f"k{n}", "cart_add", None, 1.5, f"id{n}", {"Email": [{"id": "a"}]}] for n in range(count)]
        joined = pack_batch([msgpack.packb(record) for record in records])
        assert joined == msgpack.packb(records)
