"""The XDM traffic generator: deterministic, valid, realistic in size and in its mix."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest

from itinerary.engine.ingest import parse_body, pick_identity, validate_events
from itinerary.traffic import DEFAULT_RATE, STORES, TrafficGenerator, iso

TS0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC).timestamp()
KINDS = ("registration", "product_view", "cart_add", "purchase", "poi_entry")


def make(generator: TrafficGenerator, kind: str, p: int, ts: float = TS0) -> dict[str, Any]:
    maker = getattr(generator, kind)
    return maker(p, ts)  # type: ignore[no-any-return]


def by_type(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(e["eventType"] for e in events)


def test_same_seed_same_events_other_seed_other_events() -> None:
    one = list(TrafficGenerator(300, seed=5).scenario(TS0))
    assert one == list(TrafficGenerator(300, seed=5).scenario(TS0))
    other = list(TrafficGenerator(300, seed=6).scenario(TS0))
    assert one != other
    assert {e["_id"] for e in one}.isdisjoint({e["_id"] for e in other})
    assert TrafficGenerator(50, seed=1).stream(500, TS0) == TrafficGenerator(50, seed=1).stream(500, TS0)
    zipf = TrafficGenerator(50, seed=1, skew="zipf")
    assert zipf.stream(500, TS0) == TrafficGenerator(50, seed=1, skew="zipf").stream(500, TS0)


def test_a_profile_is_the_same_person_for_every_seed() -> None:
    a, b = TrafficGenerator(10, seed=1), TrafficGenerator(10, seed=2)
    for p in range(10):
        assert a.registration(p, TS0)["person"] == b.registration(p, TS0)["person"]
        assert (
            a.identity_map(p)
            == b.identity_map(p)
            == {
                "Email": [{"id": f"user{p}@example.com", "primary": True}],
                "ECID": [{"id": TrafficGenerator.ecid(p)}],
            }
        )
    ecids = {TrafficGenerator.ecid(p) for p in range(2000)}
    assert len(ecids) == 2000 and all(len(e) == 38 and e.isdigit() for e in ecids)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_validates_and_routes_by_email(kind: str) -> None:
    generator = TrafficGenerator(100, seed=3)
    events = [make(generator, kind, p, TS0 + p) for p in range(100)]
    body = json.dumps(events).encode()
    accepted, rejected = validate_events(parse_body(body, "application/json", max_events=1000), now=TS0 + 100)
    assert rejected == [] and len(accepted) == 100
    for p, (_, event) in enumerate(accepted):
        assert pick_identity(event, ["Email", "ECID"]) == ("Email", f"user{p}@example.com")
        assert pick_identity(event, ["ECID"]) == ("ECID", TrafficGenerator.ecid(p))
        assert event["_ts"] == pytest.approx(TS0 + p, abs=1e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_events_weigh_like_real_sdk_events(kind: str) -> None:
    generator = TrafficGenerator(500, seed=4)
    sizes = [len(json.dumps(make(generator, kind, p))) for p in range(500)]
    assert min(sizes) >= 700 and max(sizes) <= 1500, (min(sizes), max(sizes))


def test_the_event_kinds_carry_their_fields() -> None:
    g = TrafficGenerator(10, seed=1)
    reg = g.registration(3, TS0)
    assert reg["eventType"] == "web.formFilledOut"
    assert reg["web"]["webPageDetails"]["name"] == "Registration"
    assert reg["personalEmail"]["address"] == "user3@example.com"
    assert reg["person"]["name"]["firstName"] and reg["person"]["name"]["lastName"]

    view = g.product_view(3, TS0, sku="SKU-1005")
    assert view["eventType"] == "commerce.productViews"
    assert view["commerce"]["productViews"]["value"] == 1
    assert view["productListItems"][0] | {} == {
        "SKU": "SKU-1005",
        "name": "Two-person tent",
        "priceTotal": 349.0,
        "currencyCode": "EUR",
        "quantity": 1,
        "productCategory": "Camping",
    }

    cart = g.cart_add(3, TS0)
    assert cart["eventType"] == "commerce.productListAdds"
    assert cart["commerce"]["productListAdds"]["value"] == 1
    assert {"SKU", "name", "priceTotal", "currencyCode", "quantity"} <= set(cart["productListItems"][0])

    order = g.purchase(3, TS0, sku="SKU-1004")
    assert order["eventType"] == "commerce.purchases"
    assert order["commerce"]["purchases"]["value"] == 1
    assert order["commerce"]["order"]["priceTotal"] == 45.0
    assert order["commerce"]["order"]["currencyCode"] == "EUR"
    assert order["commerce"]["order"]["purchaseID"].startswith("ORD-")

    entry = g.poi_entry(3, TS0)
    assert entry["eventType"] == "location.entry"
    poi = entry["placeContext"]["POIinteraction"]
    assert poi["poiEntries"]["value"] == 1 and poi["POIID"] == "store-paris-01"
    assert poi["category"] == "Store" and poi["name"] == STORES["store-paris-01"][0]
    assert entry["placeContext"]["geo"]["_schema"] == {"latitude": 48.8719, "longitude": 2.3316}
    assert g.poi_entry(3, TS0, "store-berlin-01")["placeContext"]["geo"]["city"] == "Berlin"
    assert g.poi_entry(3, TS0, "kiosk-9")["placeContext"]["POIinteraction"]["POIID"] == "kiosk-9"

    for event in (reg, view, cart, order, entry):
        assert event["timestamp"] == "2026-11-29T10:00:00.000Z"
        assert event["environment"]["type"] in ("browser", "application")
        assert event["device"]["manufacturer"]
    assert len({e["_id"] for e in (reg, view, cart, order, entry)}) == 5


def test_iso_timestamps_have_milliseconds_in_utc() -> None:
    assert iso(TS0) == "2026-11-29T10:00:00.000Z"
    assert iso(TS0 + 0.1234) == "2026-11-29T10:00:00.123Z"
    assert iso(TS0 + 59.9996) == "2026-11-29T10:01:00.000Z"
    assert iso(0) == "1970-01-01T00:00:00.000Z"


def test_scenario_proportions() -> None:
    profiles = 3000
    events = list(TrafficGenerator(profiles, seed=11).scenario(TS0))
    per_profile: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        per_profile[e["identityMap"]["Email"][0]["id"]].append(e)
    assert len(per_profile) == profiles
    counts = by_type(events)
    assert counts["web.formFilledOut"] == profiles  # everyone registers, once
    carts = [p for p, evs in per_profile.items() if any(e["eventType"] == "commerce.productListAdds" for e in evs)]
    buyers = [p for p in carts if any(e["eventType"] == "commerce.purchases" for e in per_profile[p])]
    viewers = [p for p, evs in per_profile.items() if any(e["eventType"] == "commerce.productViews" for e in evs)]
    visitors = [p for p, evs in per_profile.items() if any(e["eventType"] == "location.entry" for e in evs)]
    assert 0.55 <= len(carts) / profiles <= 0.65
    assert 0.44 <= len(buyers) / len(carts) <= 0.56
    assert 0.20 <= len(visitors) / profiles <= 0.30
    assert 0.75 <= len(viewers) / profiles <= 0.85  # cart adders viewed first; half of the rest browse
    assert counts["commerce.purchases"] == len(buyers)  # one order each, only after a cart add

    late = 0
    for p in buyers:
        evs = per_profile[p]
        kinds = [e["eventType"] for e in evs]
        assert kinds[0] == "web.formFilledOut"
        cart = next(e for e in evs if e["eventType"] == "commerce.productListAdds")
        order = next(e for e in evs if e["eventType"] == "commerce.purchases")
        assert kinds.index("commerce.purchases") > kinds.index("commerce.productListAdds")
        assert order["productListItems"][0]["SKU"] == cart["productListItems"][0]["SKU"]
        gap = datetime.fromisoformat(order["timestamp"]) - datetime.fromisoformat(cart["timestamp"])
        if gap.total_seconds() >= 1.0:
            late += 1
    assert 0.35 <= late / len(buyers) <= 0.65  # about half buy only after a short while


def test_late_purchases_interleave_with_other_profiles() -> None:
    events = list(TrafficGenerator(2000, seed=2).scenario(TS0))
    emails = [e["identityMap"]["Email"][0]["id"] for e in events]
    jumps = 0
    for i, e in enumerate(events):
        if e["eventType"] == "commerce.purchases" and emails[i - 1] != emails[i]:
            jumps += 1
    assert jumps > 100


def test_scenario_timestamps_advance_at_the_rate() -> None:
    events = list(TrafficGenerator(200, seed=3).scenario(TS0, rate_per_s=100.0))
    stamps = [datetime.fromisoformat(e["timestamp"]).timestamp() for e in events]
    assert stamps == sorted(stamps)
    assert stamps[0] == TS0
    assert stamps[100] == pytest.approx(TS0 + 1.0, abs=1e-3)
    default = list(TrafficGenerator(200, seed=3).scenario(TS0))
    assert datetime.fromisoformat(default[100]["timestamp"]).timestamp() == pytest.approx(
        TS0 + 100 / DEFAULT_RATE, abs=1e-3
    )


def test_scenario_matches_the_demo_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    from itinerary.catalog import Catalog
    from itinerary.config.loader import load_config
    from tests.conftest import DEMO_CONFIG

    monkeypatch.setenv("ITINERARY_DEMO_TOKEN", "test")
    monkeypatch.setenv("ITINERARY_INGEST_KEY", "ingest")
    monkeypatch.setenv("ITINERARY_ADMIN_KEY", "admin")
    catalog = Catalog.build(load_config(str(DEMO_CONFIG)))
    for event in TrafficGenerator(300, seed=7).scenario(TS0):
        assert catalog.match(event) is not None, event["eventType"]  # the demo knows all of it


def test_stream_mix_and_skew() -> None:
    n = 20_000
    uniform = TrafficGenerator(1000, seed=9).stream(n, TS0)
    assert len(uniform) == n
    counts = by_type(uniform)
    assert counts.most_common(1)[0][0] == "commerce.productViews"
    assert set(counts) == {
        "web.formFilledOut",
        "commerce.productViews",
        "commerce.productListAdds",
        "commerce.purchases",
        "location.entry",
        "web.webpagedetails.pageViews",
    }
    shares = {kind: count / n for kind, count in counts.items()}
    assert shares["commerce.productViews"] == pytest.approx(0.45, abs=0.02)
    assert shares["web.webpagedetails.pageViews"] == pytest.approx(0.30, abs=0.02)
    assert shares["commerce.productListAdds"] == pytest.approx(0.12, abs=0.02)
    hottest = Counter(e["identityMap"]["Email"][0]["id"] for e in uniform).most_common(1)[0][1]
    assert hottest < 60  # about 20 each
    zipf = TrafficGenerator(1000, seed=9, skew="zipf").stream(n, TS0)
    top = Counter(e["identityMap"]["Email"][0]["id"] for e in zipf).most_common(3)
    share = 1 / sum(1 / r**1.1 for r in range(1, 1001))  # rank 1 of a Zipf law, s = 1.1
    assert top[0] == ("user0@example.com", pytest.approx(n * share, rel=0.1))
    assert [email for email, _ in top] == ["user0@example.com", "user1@example.com", "user2@example.com"]
    stamps = [e["timestamp"] for e in uniform[:3]]
    assert stamps == [iso(TS0), iso(TS0 + 0.001), iso(TS0 + 0.002)]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="profiles"):
        TrafficGenerator(0)
    with pytest.raises(ValueError, match="skew"):
        TrafficGenerator(1, skew="pareto")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rate_per_s"):
        next(TrafficGenerator(1).scenario(TS0, rate_per_s=-1))
    with pytest.raises(ValueError, match="rate_per_s"):
        next(TrafficGenerator(1).scenario(TS0, rate_per_s=0))
    with pytest.raises(ValueError, match="rate_per_s"):
        TrafficGenerator(1).stream(1, TS0, rate_per_s=0)
