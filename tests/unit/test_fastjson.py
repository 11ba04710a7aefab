"""The ingest fast path answers exactly like the general path, or not at all.

Every test here compares the two paths on the same body: when FastJsonDecoder decodes a
body, the general path (parse_body, validate_events) must accept every event of it and
the router must make byte-identical records from both; when it declines (None), the
general path is what answers. Generated bodies (hypothesis) mutate valid events in every
way the general path judges: core fields of every JSON type, JSON-LD keys, escapes,
numbers msgpack cannot hold, identities in every shape.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from itinerary.bench import make_bodies
from itinerary.catalog import Catalog
from itinerary.config.loader import load_config
from itinerary.config.runtime import IngressSettings
from itinerary.engine.fastjson import FastJsonDecoder, identities_or_none, nested_deeper_than
from itinerary.engine.ingest import BodyError, parse_body, validate_events
from itinerary.engine.reader import EventReader
from itinerary.engine.routing import RoutingTable
from itinerary.engine.xdm import DEFAULT_NAMESPACE_CODES, MAX_DEPTH, is_jsonld, normalise
from itinerary.router import EventRouter
from tests.unit.journey_helpers import CART, EVENTS, WELCOME, catalog
from tests.xdm_fixtures import event_files

NOW = time.time()
STAMP = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - 60))
DEMO = Path(__file__).resolve().parents[2] / "config" / "examples" / "demo.yaml"
DEMO_ENV = {"ITINERARY_INGEST_KEY": "i" * 32, "ITINERARY_ADMIN_KEY": "a" * 32, "ITINERARY_DEMO_TOKEN": "t" * 32}


def demo_catalog() -> Catalog:
    return Catalog.build(load_config(DEMO, env=DEMO_ENV))


CATALOG = catalog(WELCOME, CART)
DEMO_CATALOG = demo_catalog()


def records(cat: Catalog, accepted: list[Any]) -> tuple[dict[int, list[bytes]], list[dict[str, Any]]]:
    limit = cat.config.runtime.ingress.max_event_bytes
    return EventRouter(cat, RoutingTable(64, 4), max_record_bytes=limit).route(accepted, NOW)


def compare(body: bytes, cat: Catalog = CATALOG, **limits: Any) -> bool:
    """Whether the fast path took the body; asserts it answered as the general path does."""
    ingress = cat.config.runtime.ingress.model_copy(update=limits)
    decoder = FastJsonDecoder.for_settings(cat, ingress)
    assert decoder is not None
    fast = decoder.decode(body, NOW)
    if fast is None:
        return False
    items = parse_body(body, "application/json", max_events=ingress.max_events_per_request)
    accepted, rejected = validate_events(
        items,
        max_identities=ingress.max_identities,
        now=NOW,
        max_future_skew=ingress.max_future_skew.total_seconds(),
        namespace_codes=cat.config.runtime.identity.namespace_codes,
    )
    assert rejected == []
    assert [index for index, _ in fast] == [index for index, _ in accepted]
    assert [event["_ts"] for _, event in fast] == [event["_ts"] for _, event in accepted]
    assert records(cat, fast) == records(cat, accepted)
    return True


def valid(n: int = 0, **fields: Any) -> dict[str, Any]:
    event = {
        "_id": f"e-{n}",
        "timestamp": STAMP,
        "eventType": "commerce.productListAdds",
        "identityMap": {"Email": [{"id": f"p{n}@example.com", "primary": True}]},
        "productListItems": [{"SKU": "SKU-1", "name": "Trail shoes", "priceTotal": 89.0}],
        "web": {"webPageDetails": {"name": "Tents"}},
    }
    event.update(fields)
    return event


def body(*events: Any, **dumps: Any) -> bytes:
    return json.dumps(list(events), **dumps).encode()


# -- what it takes ---------------------------------------------------------------------------


def test_the_load_tools_traffic_takes_the_fast_path_with_identical_records() -> None:
    bodies = make_bodies(2_000, 300, 250)
    assert all(compare(b, DEMO_CATALOG) for b in bodies)


def test_valid_events_of_every_definition_take_the_fast_path() -> None:
    events = [
        valid(1),
        valid(2, eventType="web.formFilledOut", personalEmail={"address": "a@example.com"}),
        valid(3, eventType="commerce.purchases", commerce={"order": {"purchaseID": "o-1"}}),
        valid(4, eventType="nothing.matches"),  # the router refuses it, the same way on both paths
        valid(5, identityMap={"Phone": [{"id": "123"}]}),  # no routing identity: refused by the router
        valid(6, identityMap={"Email": [{"id": "x", "authenticatedState": "ambiguous"}]}),
    ]
    assert compare(body(*events))
    fast = FastJsonDecoder.for_settings(CATALOG, CATALOG.config.runtime.ingress)
    assert fast is not None
    accepted = fast.decode(body(*events), NOW)
    assert accepted is not None
    _, unrouted = records(CATALOG, accepted)
    assert [r["index"] for r in unrouted] == [3, 4]


def test_only_the_fields_read_are_decoded() -> None:
    fast = FastJsonDecoder.for_settings(CATALOG, CATALOG.config.runtime.ingress)
    assert fast is not None
    assert fast.extra == ("person", "personalEmail", "productListItems")
    [(_, event)] = fast.decode(body(valid(1, device={"type": "mobile"})), NOW) or []
    assert set(event) == {"timestamp", "_id", "eventType", "identityMap", "_ts", "productListItems"}


def test_escapes_and_non_ascii_text_are_decoded_like_the_general_path() -> None:
    event = valid(1, productListItems=[{"name": 'Crème brûlée \U0001f600 "q" \\ /'}])
    assert compare(body(event))
    assert compare(body(event, ensure_ascii=False))


@pytest.mark.parametrize("path", event_files(), ids=lambda p: p.name)
def test_xdm_fixtures_are_taken_or_declined_never_answered_differently(path: Path) -> None:
    events = json.loads(path.read_text(encoding="utf-8"))
    items = events if isinstance(events, list) else [events]
    compare(body(*items))
    compare(body(*items), DEMO_CATALOG)


def test_the_fixtures_in_short_form_take_the_fast_path() -> None:
    # The examples are JSON-LD, which the fast path leaves to the general one; the same
    # events as a client sends them in short form (what normalise makes) take it.
    taken = 0
    for path in event_files():
        item = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(item, dict) and is_jsonld(item):
            short = normalise(item, DEFAULT_NAMESPACE_CODES)
            if "identityMap" in short and "_id" in short:
                short["timestamp"] = STAMP
                taken += compare(body(short), DEMO_CATALOG)
    assert taken >= 5


# -- what it declines --------------------------------------------------------------------------

DECLINED = {
    "no _id (derived from the whole event)": body({k: v for k, v in valid().items() if k != "_id"}),
    "JSON-LD key": body(valid(**{"xdm:timestamp": STAMP})),
    "JSON-LD key, escaped": body(valid()).replace(b'"web"', b'"\\u0078dm:web"'),
    "JSON-LD @id, escaped": body(valid()).replace(b'"web"', b'"\\u0040id"'),
    "@type": body(valid(**{"@type": "x"})),
    "lowercase z": body(valid(timestamp=STAMP[:-1] + "z")),
    "space for T": body(valid(timestamp=STAMP.replace("T", " "))),
    "no seconds": body(valid(timestamp=STAMP[:16] + "Z")),
    "no timezone": body(valid(timestamp=STAMP[:-1])),
    "seven fraction digits": body(valid(timestamp=STAMP[:-1] + ".1234567Z")),
    "a day that does not exist": body(valid(timestamp="2026-02-30T10:00:00Z")),
    "a trailing newline": body(valid(timestamp=STAMP + "\n")),
    "too far in the future": body(valid(timestamp="2999-01-01T00:00:00Z")),
    "eventType null": body(valid(eventType=None)),
    "_id empty": body(valid(_id="")),
    "_id too long": body(valid(_id="x" * 257)),
    "namespace with a colon": body(valid(identityMap={"a:b": [{"id": "x"}]})),
    "identity without id": body(valid(identityMap={"Email": [{"primary": True}]})),
    "primary not a bool": body(valid(identityMap={"Email": [{"id": "x", "primary": 1}]})),
    "no identities": body(valid(identityMap={})),
    "too many identities": body(valid(identityMap={"Email": [{"id": f"x{i}"} for i in range(21)]})),
    "not an array": json.dumps(valid()).encode(),
    "empty array": b"[]",
    "not JSON": b"[{",
    "NaN": body(valid()).replace(b"89.0", b"NaN"),
    "a read number beyond a double": body(valid()).replace(b"89.0", b"1e400"),
    "invalid UTF-8 in an unread field": body(valid(device="\u00e9")).replace(b"\\u00e9", b"\xff"),
    "an unread string with a lone surrogate": body(valid(device="\ud800")),
    "a byte order mark": b"\xef\xbb\xbf" + body(valid()),
    "an event that is not an object": body(valid(), 7),
}


@pytest.mark.parametrize("raw", DECLINED.values(), ids=DECLINED.keys())
def test_what_the_general_path_must_judge_is_declined(raw: bytes) -> None:
    assert not compare(raw)


def test_more_events_than_a_request_may_hold_are_declined() -> None:
    assert compare(body(valid(1), valid(2)), max_events_per_request=2)
    assert not compare(body(valid(1), valid(2), valid(3)), max_events_per_request=2)


def test_a_value_msgpack_cannot_hold_is_refused_by_the_router_as_on_the_general_path() -> None:
    assert compare(body(valid(productListItems=[{"qty": 2**70}])))


def test_nesting_deeper_than_the_general_parser_allows_in_an_unread_field_is_skipped() -> None:
    # The one deliberate difference (see the module): the general parser refuses the body
    # at 200 levels; the fast path skips the field as it skips any field no journey reads.
    deep = body(valid()).replace(b'"web":', b'"device": ' + b"[" * 300 + b"]" * 300 + b', "web":')
    with pytest.raises(BodyError):
        parse_body(deep, "application/json", max_events=10)
    fast = FastJsonDecoder.for_settings(CATALOG, CATALOG.config.runtime.ingress)
    assert fast is not None and fast.decode(deep, NOW) is not None
    far_too_deep = body(valid()).replace(b'"web":', b'"device": ' + b"[" * 100_000 + b"]" * 100_000 + b', "web":')
    assert fast.decode(far_too_deep, NOW) is None  # bounded by Python's recursion limit


@pytest.mark.parametrize("depth", [1, 2, 62, 63, 64, 65, 150, 300])
def test_what_is_kept_nests_at_most_max_depth_levels(depth: int) -> None:
    # A read field's value at `depth` levels: the event itself is one more (MAX_DEPTH 64).
    nested = b"[" * depth + b"]" * depth
    raw = body(valid(productListItems=[])).replace(b'"productListItems": []', b'"productListItems": ' + nested)
    assert compare(raw) is (depth < MAX_DEPTH)
    assert not compare(body(valid(identityMap={"Email": [{"id": "x", "extra": {"a": {"b": 1}}}]})))


def test_nested_deeper_than_counts_levels() -> None:
    assert not nested_deeper_than([{"a": [1, {"b": 2}]}], 3)
    assert nested_deeper_than([{"a": [1, {"b": []}]}], 3)
    assert not nested_deeper_than([[], {}], 1)


def test_no_decoder_when_a_rule_or_a_journey_reads_whole_events() -> None:
    events = dict(EVENTS, cart_add={"rule": "event.eventType == 'x' and exists(event)"})
    assert FastJsonDecoder.for_settings(catalog(WELCOME, CART, events=events), IngressSettings()) is None
    assert FastJsonDecoder.for_settings(CATALOG, IngressSettings(fast_json=False)) is None


def test_a_system_event_id_is_read_when_a_definition_has_one() -> None:
    events = dict(EVENTS, promo={"event_id": "abc123"})
    cat = catalog(WELCOME, CART, events=events)
    fast = FastJsonDecoder.for_settings(cat, cat.config.runtime.ingress)
    assert fast is not None and "_experience" in fast.extra
    system = valid(1, eventType="x", _experience={"campaign": {"orchestration": {"eventID": "abc123"}}})
    assert compare(body(system), cat)


@pytest.mark.parametrize(
    ("identity_map", "count"),
    [
        ({"Email": [{"id": "a"}, {"id": "b", "primary": False}], "ECID": [{"id": "1", "authenticatedState": "x"}]}, 3),
        ({"Email": [{"id": "a", "x": None}]}, None),  # kept by the general path, which is left to keep it
        ({"Email": [{"id": "a", "authenticatedState": 3}]}, None),
        ({"Email": []}, None),
        ({"Email": {"id": "a"}}, None),
        ({"": [{"id": "a"}]}, None),
        ({"E" * 257: [{"id": "a"}]}, None),
        ({"Email": [{"id": "a" * 1025}]}, None),
        ({"Email": ["a"]}, None),
        ([], None),
    ],
)
def test_identity_maps_are_judged_by_the_general_paths_rules(identity_map: Any, count: int | None) -> None:
    assert identities_or_none(identity_map) == count
    compare(body(valid(identityMap=identity_map)))


# -- generated: whatever the body, never a different answer ----------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
TIMESTAMPS = st.sampled_from(
    [
        STAMP,
        STAMP[:-1] + ".5Z",
        STAMP[:-1] + "+01:00",
        STAMP[:-1] + "-23:59",
        STAMP[:-1] + "+24:00",
        "2026-13-01T00:00:00Z",
    ]
) | st.builds(
    lambda d, frac, zone: d.strftime("%Y-%m-%dT%H:%M:%S") + frac + zone,
    st.datetimes(),
    st.sampled_from(["", ".1", ".123456", ".1234567"]),
    st.sampled_from(["Z", "+00:00", "-05:30", "+23:59", "z", ""]),
)
IDENTITY_MAPS = st.dictionaries(
    st.sampled_from(["Email", "ECID", "a:b", "", "CRMID"]),
    st.lists(
        st.fixed_dictionaries(
            {"id": st.text(max_size=4) | JSON_VALUES},
            optional={"primary": st.booleans() | JSON_VALUES, "authenticatedState": st.text(max_size=3) | JSON_VALUES},
        )
        | JSON_VALUES,
        max_size=3,
    ),
    max_size=3,
)
FIELDS = st.sampled_from(
    ["_id", "timestamp", "eventType", "identityMap", "productListItems", "person", "personalEmail", "web", "_ts"]
)


@st.composite
def events(draw: st.DrawFn) -> Any:
    event = valid(draw(st.integers(0, 5)))
    event["eventType"] = draw(
        st.sampled_from(["commerce.productListAdds", "commerce.purchases", "web.formFilledOut", "other"])
    )
    for _ in range(draw(st.integers(0, 3))):
        field = draw(FIELDS)
        kind = draw(st.integers(0, 4))
        if kind == 0:
            event.pop(field, None)
        elif field == "timestamp":
            event[field] = draw(TIMESTAMPS)
        elif field == "identityMap":
            event[field] = draw(IDENTITY_MAPS)
        else:
            event[field] = draw(JSON_VALUES)
    if draw(st.booleans()):
        event[draw(st.sampled_from(["xdm:x", "@id", "device", "x\u00e9"]))] = draw(JSON_VALUES)
    return event


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), min_size=1, max_size=4), st.booleans())
def test_generated_bodies_are_answered_as_the_general_path_does_or_declined(items: list[Any], ascii: bool) -> None:
    event("taken" if compare(body(*items, ensure_ascii=ascii)) else "declined")  # about 1 in 6 taken


@settings(max_examples=300, deadline=None)
@given(st.datetimes(), st.sampled_from(["", ".5", ".000001", ".999999"]), st.integers(-23 * 60 - 59, 23 * 60 + 59))
def test_every_strict_timestamp_is_taken_with_the_general_paths_time(moment: Any, fraction: str, offset: int) -> None:
    sign, minutes = ("+" if offset >= 0 else "-"), abs(offset)
    zone = "Z" if offset == 0 else f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    stamp = f"{moment.date().isoformat()}T{moment.time().isoformat(timespec='seconds')}{fraction}{zone}"
    if moment.year < 2:  # year 1 minus an offset leaves the calendar: both refuse or decline
        return
    assert compare(body(valid(timestamp=stamp)), max_future_skew=timedelta(days=3_000_000))


def test_a_failure_inside_the_fast_path_leaves_the_body_to_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = EventReader(CATALOG, CATALOG.config.runtime.ingress, DEFAULT_NAMESPACE_CODES)
    assert reader.fast is not None

    def broken(body: bytes, now: float) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(reader.fast, "decode", broken)
    accepted, rejected = reader.read(body(valid(1), valid(2, _id="")), "application/json", NOW)
    assert [index for index, _ in accepted] == [0]
    assert rejected == [{"index": 1, "reason": "_id: must be a non-empty string"}]
    assert reader.fast_bodies == 0
