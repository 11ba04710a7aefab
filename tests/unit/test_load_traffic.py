"""Load traffic: Zipf and uniform profile choice, fast encoding, journeys' trigger sequences."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from typing import Any

import msgpack
import pytest

from itinerary.engine.ingest import parse_body, validate_events
from itinerary.load.traffic import EventEncoder, JourneyTraffic, ProfileChooser
from itinerary.traffic import TrafficGenerator, iso

TS = 1_795_945_573.135  # 2026-11-29T09:46:13.135Z
NAMESPACES = {"Email": 0, "ECID": 1, "CRMID": 2}


def validate(body: bytes, media_type: str) -> tuple[list[Any], list[Any]]:
    items = parse_body(body, media_type, max_events=10_000)
    return validate_events(items, max_identities=20, now=TS + 60, namespace_codes=NAMESPACES)


def test_zipf_choice_matches_the_expected_shares() -> None:
    chooser = ProfileChooser(1000, random.Random(3), zipf=1.1)
    draws = Counter(chooser.rank() for _ in range(60_000))
    for rank in (0, 1, 9):
        assert draws[rank] / 60_000 == pytest.approx(chooser.share(rank), rel=0.08)
    top10 = sum(chooser.share(r) for r in range(10))
    assert sum(draws[r] for r in range(10)) / 60_000 == pytest.approx(top10, rel=0.03)
    assert top10 > 0.35  # skewed: 1 % of the profiles get over a third of the sessions
    assert chooser.share(0) / chooser.share(1) == pytest.approx(2**1.1)


def test_uniform_choice_is_flat() -> None:
    chooser = ProfileChooser(20, random.Random(3))
    draws = Counter(chooser.choose() for _ in range(40_000))
    assert set(draws) == set(range(20))
    assert max(draws.values()) / min(draws.values()) < 1.15


def test_each_sender_process_owns_its_share_of_the_profiles() -> None:
    owned = [ProfileChooser(10, random.Random(1), zipf=1.0, process=i, processes=3) for i in range(3)]
    seen = [{c.choose() for _ in range(2000)} for c in owned]
    assert seen == [{0, 3, 6, 9}, {1, 4, 7}, {2, 5, 8}]
    assert owned[0].profile_of(0) == 0 and owned[1].profile_of(0) == 1  # the busiest of each
    with pytest.raises(ValueError):
        ProfileChooser(2, random.Random(1), processes=3)


def test_a_run_can_number_its_population_from_any_first_profile() -> None:
    chooser = ProfileChooser(10, random.Random(1), process=1, processes=2, first=5000)
    assert {chooser.choose() for _ in range(500)} == {5001, 5003, 5005, 5007, 5009}


@pytest.mark.parametrize("kind", ["registration", "page_view", "product_view", "cart_add", "purchase", "poi_entry"])
def test_encoded_events_are_the_generators_events_with_fresh_values(kind: str) -> None:
    encoder = EventEncoder("json", seed=5)
    variant = "SKU-1005" if kind in ("product_view", "cart_add", "purchase") else None
    first = json.loads(encoder.encode(kind, 70, TS, variant))
    second = json.loads(encoder.encode(kind, 4242, TS + 1, variant))
    valid, rejected = validate(encoder.body([encoder.encode(kind, 70, TS, variant)]), encoder.media_type)
    assert rejected == [] and len(valid) == 1
    assert first["timestamp"] == iso(TS) and second["timestamp"] == iso(TS + 1)
    assert first["_id"] != second["_id"]
    assert first["identityMap"]["Email"][0]["id"] == TrafficGenerator.email(70)
    assert second["identityMap"]["ECID"][0]["id"] == TrafficGenerator.ecid(4242)
    # The same shape and size as the generator's own event for that persona.
    reference = getattr(TrafficGenerator(64, seed=5), kind)
    assert set(first) == set(reference(70 % 64, TS) if variant is None else reference(70 % 64, TS, sku=variant))
    assert 600 < len(encoder.encode(kind, 70, TS, variant)) < 2000
    if kind == "registration":
        assert first["personalEmail"]["address"] == TrafficGenerator.email(70)
    if kind == "purchase":
        assert first["commerce"]["order"]["purchaseID"] != second["commerce"]["order"]["purchaseID"]
    if "localTime" in first.get("placeContext", {}):
        offset = -first["placeContext"]["localTimezoneOffset"]
        assert first["placeContext"]["localTime"].endswith("Z" if offset == 0 else f"{offset // 60:+03d}:00")


def test_msgpack_bodies_carry_the_same_events_as_json() -> None:
    as_json, as_msgpack = EventEncoder("json", seed=9, id_seed=1), EventEncoder("msgpack", seed=9, id_seed=1)
    for kind, variant in (("purchase", "SKU-1001"), ("poi_entry", None), ("page_view", 2)):
        one = json.loads(as_json.encode(kind, 12, TS, variant))
        other = msgpack.unpackb(as_msgpack.encode(kind, 12, TS, variant))
        assert one.keys() == other.keys() and one["identityMap"] == other["identityMap"]
        assert one["_id"] == other["_id"]  # same id seed, same ids
    body = as_msgpack.body([as_msgpack.encode("cart_add", p, TS, "SKU-1002") for p in range(20)])
    valid, rejected = validate(body, as_msgpack.media_type)
    assert len(valid) == 20 and not rejected


def sessions(traffic: JourneyTraffic, batches: int, rate: float = 2000.0) -> list[dict[str, Any]]:
    events = []
    for k in range(batches):
        events += [json.loads(e) for e in traffic.events(100, TS + k * 100 / rate)]
    return events


def test_journey_sequences_interleave_in_order_for_each_profile() -> None:
    chooser = ProfileChooser(500, random.Random(1), zipf=1.1)
    traffic = JourneyTraffic(chooser, EventEncoder("json", seed=1), seed=1)
    events = sessions(traffic, 100)  # 10,000 events over 5 s
    by_profile: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_profile[event["identityMap"]["Email"][0]["id"]].append(event)
    types = Counter(e["eventType"] for e in events)
    assert types["web.webpagedetails.pageViews"] > types["commerce.productListAdds"] > types["commerce.purchases"] > 0
    assert types["web.formFilledOut"] > 0 and types["location.entry"] > 0
    for stream in by_profile.values():
        kinds = [e["eventType"] for e in stream]
        # registration once, on the profile's first visit
        assert kinds.count("web.formFilledOut") <= 1
        if "web.formFilledOut" in kinds:
            assert kinds[0] == "web.formFilledOut"
        # a purchase follows a cart add of the same item
        carted: set[str] = set()
        for event in stream:
            if event["eventType"] == "commerce.productListAdds":
                carted.add(event["productListItems"][0]["SKU"])
            elif event["eventType"] == "commerce.purchases":
                assert event["productListItems"][0]["SKU"] in carted
    # Zipf: the busiest profile comes back for many sessions
    assert max(len(s) for s in by_profile.values()) > 10 * (len(events) / len(by_profile))
    assert traffic.kinds.total() == 10_000 and traffic.sessions > 1000


def test_traffic_is_deterministic_for_a_seed_and_event_ids_are_new_each_run() -> None:
    def run(seed: int, id_seed: int | None) -> list[bytes]:
        encoder = EventEncoder("json", seed=seed, id_seed=id_seed)
        traffic = JourneyTraffic(ProfileChooser(100, random.Random(seed)), encoder, seed=seed)
        return [traffic.body(50, TS + k * 0.05) for k in range(20)]

    assert run(4, id_seed=1) == run(4, id_seed=1)
    assert run(4, id_seed=1) != run(5, id_seed=1)

    def shape(bodies: list[bytes]) -> list[tuple[str, str]]:
        return [(e["eventType"], e["identityMap"]["Email"][0]["id"]) for b in bodies for e in json.loads(b)]

    def ids(bodies: list[bytes]) -> set[str]:
        return {e["_id"] for b in bodies for e in json.loads(b)}

    # Without an id seed the same traffic gets fresh event ids: shards would drop repeats.
    first, second = run(4, id_seed=None), run(4, id_seed=None)
    assert shape(first) == shape(second)
    assert not ids(first) & ids(second)
