"""Hostile and malformed input at the ingest boundary, and the bounds on what a profile keeps.

Property-based: whatever bytes arrive under whatever content type, `parse_body` either
returns items or refuses the body as a whole with 400, 413 or 415 and a reason; whatever
items come out, `validate_events` and then the router never raise and put every index
exactly once in accepted or rejected, each rejection with a short reason, and every
accepted event leaves as a record its shard can read, within the size limit (the router
here keeps whole events, the largest form a record can take). Then the profile side: an event
id reused with other content changes nothing, and attribute values and identities stay
within `max_attribute_bytes` and `max_profile_bytes` however many events arrive.
"""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itinerary.config.runtime import IngressSettings, ProfileSettings
from itinerary.engine.ingest import BodyError, parse_body, pick_identity, validate_events
from itinerary.engine.profile import IDENTITIES, JourneyEngine, value_size
from itinerary.engine.routing import RoutingTable
from itinerary.engine.xdm import MAX_DEPTH
from itinerary.router import EventRouter
from tests.unit.journey_helpers import catalog, echo_journey

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC).timestamp()
STAMP = "2026-11-29T09:59:00Z"
SKEW = 3600.0
MAX_EVENTS = 50
MAX_EVENT_BYTES = 4096
REFUSED = {400, 413, 415}
HUGE = 300_000  # characters: over any event limit, well under a request body

# Sized so that the whole file runs in about ten seconds.
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def event(n: int = 0, /, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "_id": f"e{n}",
        "timestamp": STAMP,
        "eventType": "web.formFilledOut",
        "identityMap": {"Email": [{"id": f"user{n}@example.com", "primary": True}]},
    }
    body.update(fields)
    return body


def parse(body: bytes, content_type: str) -> list[Any] | BodyError:
    """The items of a body, or the BodyError it was refused with (any other exception fails)."""
    try:
        return parse_body(body, content_type, max_events=MAX_EVENTS)
    except BodyError as exc:
        return exc


def _whole_event_router() -> EventRouter:
    """A router whose one definition takes any event and whose journey prints all of it,
    so every accepted event travels whole: the largest record an event can make."""
    cat = catalog(echo_journey("any"), events={"any": {"rule": "exists(event.identityMap)"}})
    return EventRouter(cat, RoutingTable(64, 1), max_record_bytes=MAX_EVENT_BYTES)


ROUTER = _whole_event_router()


def validate(items: list[Any], **options: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    """The ingress's path: validated, then routed. Accepted: (index, event, packed record)."""
    options.setdefault("now", NOW)
    options.setdefault("max_future_skew", SKEW)
    valid, rejected = validate_events(items, **options)
    per_shard, unrouted = ROUTER.route(valid, NOW)
    refused = {r["index"] for r in unrouted}
    records = iter(per_shard.get(0, []))  # one shard: the records keep the events' order
    accepted = [(index, event, next(records)) for index, event in valid if index not in refused]
    assert next(records, None) is None
    return accepted, sorted(rejected + unrouted, key=lambda r: r["index"])


def check_refusal(error: BodyError) -> None:
    assert error.status in REFUSED
    assert isinstance(error.reason, str) and 0 < len(error.reason) <= 300


def check_partition(count: int, accepted: list[Any], rejected: list[dict[str, Any]]) -> None:
    """Every index exactly once, in order; short reasons; accepted events as the shard will read them."""
    indices = [i for i, _, _ in accepted] + [r["index"] for r in rejected]
    assert sorted(indices) == list(range(count))
    assert [i for i, _, _ in accepted] == sorted(i for i, _, _ in accepted)
    assert [r["index"] for r in rejected] == sorted(r["index"] for r in rejected)
    for r in rejected:
        assert set(r) == {"index", "reason"}
        assert isinstance(r["reason"], str) and 0 < len(r["reason"]) < 400, r["reason"][:500]
    for _, ev, packed in accepted:
        assert len(packed) <= MAX_EVENT_BYTES
        assert type(ev["_id"]) is str and 0 < len(ev["_id"]) <= 256
        assert type(ev["_ts"]) is float and ev["_ts"] <= NOW + SKEW
        _, _, whole, _, event_id, identities = msgpack.unpackb(packed, raw=False)
        assert event_id == ev["_id"] and identities == ev["identityMap"]
        assert msgpack.unpackb(whole, raw=False)["_id"] == ev["_id"]


def check_body(body: bytes, content_type: str) -> None:
    outcome = parse(body, content_type)
    if isinstance(outcome, BodyError):
        check_refusal(outcome)
        return
    assert isinstance(outcome, list) and len(outcome) <= MAX_EVENTS
    check_partition(len(outcome), *validate(outcome))


# -- strategies ---------------------------------------------------------------------------

KEYS = st.sampled_from(
    [
        "timestamp",
        "_id",
        "eventType",
        "identityMap",
        "id",
        "primary",
        "Email",
        "ECID",
        "xdm:timestamp",
        "xdm:identityMap",
        "xdm:id",
        "@id",
        "schema:x",
        "_schema",
        "_ts",
        "k" * 300,
    ]
) | st.text(max_size=6)
TIMESTAMPS = st.sampled_from(
    [
        STAMP,
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+14:00",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-23:59",
        "2026-11-29T11:00:00Z",
        "2026-11-29T10:00:00",
        "2026-02-30T10:00:00Z",
        "2026-11-29T24:00:00Z",
        "2026-11-29T10:00:00+24:00",
        "1700000000",
        "",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
    | TIMESTAMPS
)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4), max_leaves=20
)
# What a msgpack body can carry beyond JSON: bytes, ext types, non-finite floats, and
# maps whose keys are not strings (its integers stop at 64 bits).
INT64 = st.integers(-(2**63), 2**64 - 1)
MSGPACK_SCALARS = st.none() | st.booleans() | INT64 | st.floats() | st.text(max_size=10) | TIMESTAMPS
MSGPACK_ONLY = (
    st.binary(max_size=6)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4))
    | st.builds(msgpack.Timestamp, st.integers(0, 2**32 - 1))
    | st.sampled_from([math.nan, math.inf, -math.inf])
    | st.dictionaries(
        INT64 | st.binary(max_size=3) | st.booleans() | st.none(),
        MSGPACK_SCALARS,
        min_size=1,
        max_size=2,
    )
)
MSGPACK = st.recursive(
    MSGPACK_SCALARS | MSGPACK_ONLY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)


def nest(depth: int, leaf: Any = 1, kind: str = "list") -> Any:
    """`depth` levels of lists (or objects under "a"), built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


def _shape(identity_map: Any) -> Any:
    """identityMap with its one Email id replaced, to tell whether it still has that form."""
    try:
        return {"Email": [{**identity_map["Email"][0], "id": "user0@example.com"}]}
    except (KeyError, IndexError, TypeError):
        return None


@st.composite
def hostile_event(draw: st.DrawFn, values: st.SearchStrategy[Any] = JSON) -> dict[str, Any]:
    """A valid event with one to three places made hostile."""
    ev = event(draw(st.integers(0, 3)))
    if draw(st.booleans()):
        del ev["_id"]
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "core", "identityMap", "entry", "drop"]))
        value = draw(
            values
            | st.integers(1, 3 * MAX_DEPTH).map(nest)
            | st.sampled_from(["x" * HUGE, ["y"] * 20_000, {"id": "z" * HUGE}])
        )
        if where == "top":
            ev[draw(KEYS)] = value
        elif where == "core":
            ev[draw(st.sampled_from(["timestamp", "_id", "eventType", "identityMap"]))] = value
        elif where == "identityMap" and type(ev.get("identityMap")) is dict:
            ev["identityMap"][draw(KEYS)] = value
        elif where == "entry" and event(0)["identityMap"] == _shape(ev.get("identityMap")):
            ev["identityMap"]["Email"][0][draw(st.sampled_from(["id", "primary", "authenticatedState", "x"]))] = value
        else:
            ev.pop(draw(st.sampled_from(["timestamp", "identityMap", "eventType"])), None)
    return ev


ITEMS = st.lists(hostile_event() | JSON, max_size=6)
MSGPACK_ITEMS = st.lists(hostile_event(MSGPACK) | MSGPACK, max_size=6)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/ld+json",
        "application/vnd.adobe.xed-full+json",
        "application/x-ndjson",
        "application/msgpack",
        "application/x-msgpack",
        "text/plain",
        "text/json",
        "multipart/form-data; boundary=x",
        "",
    ]
)


def json_text(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def damaged(draw: st.DrawFn, body: bytes) -> bytes:
    """A body cut short, or with bytes overwritten or inserted (invalid UTF-8 among them)."""
    if not body:
        return draw(st.binary(max_size=8))
    at = draw(st.integers(0, len(body)))
    how = draw(st.sampled_from(["cut", "overwrite", "insert"]))
    if how == "cut":
        return body[:at]
    noise = draw(st.binary(min_size=1, max_size=4) | st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"]))
    return body[:at] + noise + body[at + (len(noise) if how == "overwrite" else 0) :]


BODIES = (
    st.binary(max_size=64)
    | ITEMS.map(json_text)
    | JSON.map(json_text)
    | MSGPACK_ITEMS.map(lambda items: msgpack.packb(items, use_bin_type=True))
    | ITEMS.map(json_text).flatmap(damaged)
    | MSGPACK_ITEMS.map(lambda items: msgpack.packb(items, use_bin_type=True)).flatmap(damaged)
    | st.lists(JSON.map(json_text), max_size=5).map(b"\n".join)
)


# -- parse_body and validate_events: properties -----------------------------------------


@settings(FAST, max_examples=400)
@given(BODIES, CONTENT_TYPES)
def test_any_body_under_any_content_type_is_items_or_a_refusal_with_a_reason(body: bytes, content_type: str) -> None:
    check_body(body, content_type)


@SLOW
@given(ITEMS)
def test_hostile_json_events_are_each_accepted_or_refused_with_a_reason(items: list[Any]) -> None:
    body = json_text(items)
    check_body(body, "application/json")
    check_partition(len(items), *validate(copy.deepcopy(items)))  # a Python caller's list


@SLOW
@given(MSGPACK_ITEMS)
def test_hostile_msgpack_events_are_each_accepted_or_refused_with_a_reason(items: list[Any]) -> None:
    check_body(msgpack.packb(items, use_bin_type=True), "application/msgpack")


@FAST
@given(st.lists(hostile_event(), min_size=1, max_size=4), st.data())
def test_a_hostile_event_costs_only_itself(bad: list[Any], data: st.DataObject) -> None:
    """Good events mixed among bad ones are accepted whatever the bad ones hold."""
    marked: list[tuple[bool, Any]] = [(True, event(100 + n)) for n in range(3)]
    for ev in bad:
        marked.insert(data.draw(st.integers(0, len(marked))), (False, ev))
    items = [item for _, item in marked]
    accepted, rejected = validate(copy.deepcopy(items))
    check_partition(len(items), accepted, rejected)
    good = {i for i, (is_good, _) in enumerate(marked) if is_good}
    assert good <= {i for i, _, _ in accepted}


# -- wrong types and identities -----------------------------------------------------------

WRONG: dict[str, st.SearchStrategy[Any]] = {
    "timestamp": st.none() | st.booleans() | st.integers() | st.floats() | st.lists(SCALARS, max_size=2) | st.just({}),
    "_id": st.none() | st.booleans() | st.integers() | st.floats() | st.just("") | st.just([]) | st.just({"a": 1}),
    "identityMap": st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=5)
    | st.just({})
    | st.just({"Email": []})
    | st.just({"Email": "a@b"})
    | st.just({"Email": [{"id": 7}]})
    | st.just({"Email": [{"id": ""}]})
    | st.just({"Email": [{"primary": True}]}),
}


@FAST
@given(st.sampled_from(sorted(WRONG)), st.data())
def test_a_wrong_type_in_a_core_field_is_refused_naming_the_field(field: str, data: st.DataObject) -> None:
    ev = event()
    ev[field] = data.draw(WRONG[field])
    accepted, rejected = validate([ev])
    assert accepted == []
    [refusal] = rejected
    assert refusal["reason"].startswith(field), refusal


def test_missing_identities_are_refused() -> None:
    ev = event()
    del ev["identityMap"]
    assert validate([ev])[1] == [{"index": 0, "reason": "identityMap: required"}]
    too_many = event(identityMap={f"N{i}": [{"id": str(i)}] for i in range(IngressSettings().max_identities + 1)})
    assert validate([too_many])[1] == [{"index": 0, "reason": "identityMap: 21 identities, over the limit of 20"}]


@FAST
@given(st.permutations(["Email", "ECID", "CRMID", "Phone"]), st.permutations(["Email", "ECID", "CRMID"]))
def test_conflicting_identities_route_by_the_configured_order_not_by_the_event(
    in_event: list[str], order: list[str]
) -> None:
    """Two namespaces naming different people: the first configured namespace wins, in
    whatever order the event lists them and whichever one it flags primary."""
    ids = {ns: [{"id": f"{ns}-person", "primary": ns == in_event[-1]}] for ns in in_event}
    ev = event(identityMap=ids)
    [(_, accepted, _)] = validate([ev])[0]
    assert pick_identity(accepted, order) == (order[0], f"{order[0]}-person")
    # a namespace that is not configured is used only when flagged primary
    assert pick_identity(accepted, ["Loyalty"]) == (in_event[-1], f"{in_event[-1]}-person")


# -- timestamps ---------------------------------------------------------------------------


@FAST
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
    st.sampled_from(["", ".5", ".123456"]),
)
def test_any_year_is_parsed_and_only_the_future_beyond_the_skew_is_refused(
    moment: datetime, offset_minutes: int, fraction: str
) -> None:
    zone = timezone(timedelta(minutes=offset_minutes))
    text = f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}{fraction}"  # %Y does not pad years below 1000
    sign = "+" if offset_minutes >= 0 else "-"
    text += f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
    ts = (moment.replace(microsecond=0, tzinfo=zone) + timedelta(seconds=float("0" + fraction))).timestamp()
    accepted, rejected = validate([event(timestamp=text)])
    if ts <= NOW + SKEW:
        # the past is open: replays and late mobile batches are normal
        assert rejected == [] and accepted[0][1]["_ts"] == pytest.approx(ts)
    else:
        assert accepted == []
        assert rejected == [{"index": 0, "reason": f"timestamp: {text} is more than {SKEW:g} s in the future"}]


@pytest.mark.parametrize(
    ("stamp", "reason"),
    [
        ("0001-01-01T00:00:00Z", None),
        ("1969-12-31T23:59:59Z", None),
        ("9999-12-31T23:59:59Z", "timestamp: 9999-12-31T23:59:59Z is more than 3600 s in the future"),
        ("2026-11-29T11:00:01Z", "timestamp: 2026-11-29T11:00:01Z is more than 3600 s in the future"),
        ("2026-11-29T11:00:00Z", None),  # the skew is inclusive
        ("0000-01-01T00:00:00Z", "timestamp: not a valid date-time (year 0 is out of range): '0000-01-01T00:00:00Z'"),
        ("10000-01-01T00:00:00Z", "timestamp: must be an ISO-8601 date-time such as 2024-05-01T10:00:00Z"),
        ("2026-11-29T10:00:00+24:00", "timestamp: not a valid date-time"),
    ],
)
def test_timestamps_at_the_edges_of_the_calendar(stamp: str, reason: str | None) -> None:
    accepted, rejected = validate([event(timestamp=stamp)])
    if reason is None:
        assert rejected == [] and len(accepted) == 1
    else:
        assert accepted == [] and rejected[0]["reason"].startswith(reason)


def test_the_configured_skew_is_the_default_of_validate_events() -> None:
    assert IngressSettings().max_future_skew == timedelta(days=1)
    stamp = datetime.fromtimestamp(NOW + 86_400 + 1, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert validate_events([event(timestamp=stamp)], now=NOW)[1][0]["reason"].endswith("86400 s in the future")


# -- deep, huge, NaN, invalid UTF-8, msgpack oddities -------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"[" * 10_000 + b"]" * 10_000, "application/json"),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "application/json"),
        (b"\x91" * 10_000 + b"\x90", "application/msgpack"),
        (b"\x81\xa1a" * 10_000 + b"\x80", "application/msgpack"),
        (b"[" * 10_000 + b"]" * 10_000, "application/x-ndjson"),
    ],
    ids=["json-arrays", "json-objects", "msgpack-arrays", "msgpack-maps", "ndjson"],
)
def test_ten_thousand_levels_of_nesting_are_refused_as_a_body(body: bytes, content_type: str) -> None:
    outcome = parse(body, content_type)
    assert isinstance(outcome, BodyError) and outcome.status == 400
    check_refusal(outcome)


@pytest.mark.parametrize("jsonld", [False, True], ids=["short-form", "json-ld"])
@pytest.mark.parametrize("kind", ["list", "object"])
def test_ten_thousand_levels_inside_an_event_from_a_python_caller(jsonld: bool, kind: str) -> None:
    ev = event(web=nest(10_000, kind=kind))
    if jsonld:
        ev = {
            "xdm:timestamp": STAMP,
            "xdm:identityMap": {"Email": [{"xdm:id": "a"}]},
            "xdm:web": nest(10_000, kind=kind),
        }
    accepted, rejected = validate([ev])
    assert accepted == []
    assert rejected[0]["reason"].startswith(f"nested deeper than {MAX_DEPTH} levels at ")
    assert len(rejected[0]["reason"]) < 200


def test_nesting_within_the_json_parser_limit_is_judged_per_event() -> None:
    """The JSON parser stops at its own recursion limit (a 400 for the body); below it an
    event is judged like any other and never breaks the request."""
    for depth in (MAX_DEPTH - 1, MAX_DEPTH + 1, 150):
        items = parse(json_text([event(1, web=nest(depth)), event(2)]), "application/json")
        assert isinstance(items, list)
        accepted, rejected = validate(items)
        check_partition(2, accepted, rejected)
        assert 1 in {i for i, _, _ in accepted}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"note": "x" * HUGE}, "event is 30"),
        ({"items": list(range(100_000))}, "event is "),
        ({"_id": "i" * HUGE}, "_id: must be at most 256 characters"),
        ({"eventType": "t" * HUGE}, "eventType: must be at most 256 characters"),
        ({"timestamp": "2" * HUGE}, "timestamp: must be at most 64 characters"),
        ({"identityMap": {"Email": [{"id": "a" * HUGE}]}}, "identityMap.Email[0].id: must be at most 1024 characters"),
        ({"identityMap": {"N" * HUGE: [{"id": "a"}]}}, "identityMap: namespace names must be at most 256 characters"),
    ],
    ids=["string", "array", "_id", "eventType", "timestamp", "identity", "namespace"],
)
def test_huge_strings_and_arrays_are_refused_with_a_short_reason(fields: dict[str, Any], reason: str) -> None:
    for items in ([event(**fields)], parse(json_text([event(**fields)]), "application/json")):
        assert isinstance(items, list)
        accepted, rejected = validate(items)
        assert accepted == [] and rejected[0]["reason"].startswith(reason)
        assert len(rejected[0]["reason"]) < 200


def test_huge_keys_give_short_reasons() -> None:
    key = "k" * HUGE
    cases: list[Any] = [
        {**event(), key: {key: {1: "int key below two huge keys"}}},
        {**event(), key: {key: b"bytes"}},
        {**event(), key: nest(MAX_DEPTH + 1)},
        {"xdm:timestamp": STAMP, "xdm:identityMap": {"Email": [{"xdm:id": "a"}]}, "xdm:" + key: 1, key: 2},
        {"xdm:timestamp": STAMP, "xdm:identityMap": {"Email": [{"xdm:id": "a"}]}, "p:" + key: 1, "_p": 2},
        {"xdm:timestamp": STAMP, "xdm:identityMap": {"Email": [{"xdm:id": "a"}]}, "_" + key: 1, key + ":a": 2},
    ]
    accepted, rejected = validate(cases)
    assert accepted == [] and len(rejected) == len(cases)
    for refusal in rejected:
        assert len(refusal["reason"]) < 300, refusal["reason"][:400]


def test_too_many_events_is_a_413() -> None:
    for body, content_type in (
        (json_text([{}] * (MAX_EVENTS + 1)), "application/json"),
        (msgpack.packb([{}] * (MAX_EVENTS + 1)), "application/msgpack"),
        (b"{}\n" * (MAX_EVENTS + 1), "application/x-ndjson"),
    ):
        outcome = parse(body, content_type)
        assert isinstance(outcome, BodyError) and outcome.status == 413
        assert outcome.reason == f"{MAX_EVENTS + 1} events in one request, over the limit of {MAX_EVENTS}"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf", b"1e", b"--1", b"0x10"])
def test_nan_and_infinity_literals_are_not_json(literal: bytes) -> None:
    body = b'[{"_id": "e", "timestamp": "2026-11-29T09:59:00Z", "n": ' + literal + b"}]"
    outcome = parse(body, "application/json")
    assert isinstance(outcome, BodyError) and outcome.status == 400
    assert outcome.reason.startswith("body is not valid JSON: ")


def test_numbers_json_cannot_hold_are_judged_per_event() -> None:
    """1e400 overflows to infinity in the parser and a msgpack float may be NaN: neither
    breaks anything (they are numbers to the expressions); a 5,000-digit integer is
    refused by the parser."""
    body = json_text([event(1), event(2)]).replace(b'"e2"', b'"e2", "n": 1e400')
    items = parse(body, "application/json")
    assert isinstance(items, list)
    check_partition(2, *validate(items))
    items = parse(msgpack.packb([event(1, n=math.nan), event(2, n=-math.inf)]), "application/msgpack")
    assert isinstance(items, list)
    check_partition(2, *validate(items))
    outcome = parse(json_text([event(1)]).replace(b'"e1"', b'"e1", "n": ' + b"9" * 5000), "application/json")
    assert isinstance(outcome, BodyError) and outcome.status == 400


@pytest.mark.parametrize(
    "body",
    [
        b'[{"_id": "\xff"}]',
        b'[{"\xc3": 1}]',
        b'[{"_id": "\xed\xa0\x80"}]',  # an encoded surrogate is not UTF-8
        b'[{"_id": "\\ud800"}]',  # nor is a lone surrogate escape
        b"\xfe\xff\x00[\x00]",  # UTF-16
    ],
)
def test_invalid_utf8_in_json_is_a_400(body: bytes) -> None:
    outcome = parse(body, "application/json")
    assert isinstance(outcome, BodyError) and outcome.status == 400
    check_refusal(outcome)


def test_invalid_utf8_in_msgpack_strings_is_a_400_and_bytes_are_refused_per_event() -> None:
    outcome = parse(b"\x91\x81\xa3_id\xa2\xff\xfe", "application/msgpack")
    assert isinstance(outcome, BodyError) and outcome.status == 400
    items = parse(msgpack.packb([event(1, _id=b"\xff\xfe"), event(2)], use_bin_type=True), "application/msgpack")
    assert isinstance(items, list)
    assert validate(items)[1] == [{"index": 0, "reason": "_id: bytes is not a JSON value"}]


def odd_key(key: Any) -> dict[Any, Any]:
    """An event with one more key that is not a string (msgpack maps allow any)."""
    ev: dict[Any, Any] = event()
    ev[key] = "x"
    return ev


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (odd_key(7), "event: keys must be strings, not a number 7"),
        (odd_key(b"k"), "event: keys must be strings, not bytes b'k'"),
        (odd_key(None), "event: keys must be strings, not null None"),
        (odd_key(True), "event: keys must be strings, not a boolean True"),
        (event(identityMap={b"Email": [{"id": "a"}]}), "identityMap: keys must be strings, not bytes b'Email'"),
        (event(web={"a": [{1.5: 2}]}), "web.a[0]: keys must be strings, not a number 1.5"),
        (event(blob=b"\x00\x01"), "blob: bytes is not a JSON value"),
        (event(ext=msgpack.ExtType(42, b"x")), "ext: ExtType is not a JSON value"),
        (event(when=msgpack.Timestamp(1)), "when: Timestamp is not a JSON value"),
        (event(timestamp=msgpack.Timestamp(1)), "timestamp: Timestamp is not a JSON value"),
        (msgpack.ExtType(1, b""), "event must be an object, not ExtType"),
        (b"\x00", "event must be an object, not bytes"),
    ],
)
def test_msgpack_values_json_does_not_have_are_refused_per_event(item: Any, reason: str) -> None:
    items = parse(msgpack.packb([event(9), item], use_bin_type=True), "application/msgpack")
    assert isinstance(items, list)
    accepted, rejected = validate(items)
    assert [i for i, _, _ in accepted] == [0]
    assert rejected == [{"index": 1, "reason": reason}]


@pytest.mark.parametrize(
    "body",
    [
        msgpack.packb(msgpack.ExtType(5, b"x")),
        msgpack.packb(b"bytes", use_bin_type=True),
        b"\xd6\xff\x00",  # a timestamp ext with bad data
        b"\x81\x91\x01\x02",  # a map with an array as a key
        b"\x81\x80\x01",  # a map with a map as a key
        b"\xdd\xff\xff\xff\xff",  # an array header claiming 4 billion items
        b"\xc1",  # the never-used byte
        b"",
    ],
)
def test_msgpack_bodies_that_are_no_events_are_a_400(body: bytes) -> None:
    outcome = parse(body, "application/msgpack")
    assert isinstance(outcome, BodyError) and outcome.status == 400
    check_refusal(outcome)


# -- an event id reused with other content ------------------------------------------------

FIELDS = {
    "registration": (
        ("firstName", lambda scope: scope["event"].get("firstName")),
        ("note", lambda scope: scope["event"].get("note")),
        ("extra", lambda scope: scope["event"].get("extra")),
    )
}


def engine(**bounds: Any) -> JourneyEngine:
    return JourneyEngine([], profile_fields=FIELDS, **bounds)


def test_an_event_id_reused_with_other_content_is_ignored() -> None:
    eng = engine()
    profile = eng.new_profile("Email:ann@example.com", NOW)
    first = event(1, firstName="Ann", identityMap={"Email": [{"id": "ann@example.com"}]})
    again = event(1, firstName="Bob", identityMap={"Email": [{"id": "ann@example.com"}], "ECID": [{"id": "E-9"}]})
    assert eng.apply_event(profile, "registration", first, NOW) == []
    assert eng.apply_event(profile, "registration", again, NOW + 1) is None
    assert eng.observe(profile, "e1", again["identityMap"], NOW + 2) is False
    assert profile["attrs"]["firstName"] == "Ann"
    assert profile["ids"] == {"Email": ["ann@example.com"]}
    assert profile["updated"] == NOW


# -- profile size bounds ------------------------------------------------------------------


def test_engine_defaults_are_the_configured_defaults() -> None:
    """The shard builds its engine from ProfileSettings; a default that drifted would make
    a config without the key behave unlike the documentation."""
    defaults = ProfileSettings()
    eng = JourneyEngine([])
    assert eng._max_value == defaults.max_attribute_bytes == 4096
    assert eng._budget == defaults.max_profile_bytes == 64 * 1024
    assert eng._max_attrs == defaults.max_attributes
    assert eng._max_ids == defaults.max_ids_per_namespace
    assert eng._recent == defaults.recent_event_ids


def test_value_sizes() -> None:
    assert value_size("abc") == 3
    assert value_size("é" * 10) == 20  # UTF-8 bytes, not characters
    assert value_size(1.5) == value_size(True) == value_size(None) == value_size(2**64 - 1) == 9
    assert value_size({"a": [1, 2]}) == len(msgpack.packb({"a": [1, 2]}))
    assert value_size(2**64) is None and value_size(-(2**63) - 1) is None  # msgpack cannot hold them
    assert value_size([1, 2**70]) is None
    assert value_size(object()) is None
    assert value_size(nest(5000)) is None  # deeper than msgpack packs


def test_an_attribute_value_over_its_bound_is_skipped_and_the_rest_applies() -> None:
    eng = engine(max_attribute_bytes=100)
    profile = eng.new_profile("Email:a", NOW)
    eng.apply_event(profile, "registration", event(1, firstName="A" * 101, note="ok"), NOW)
    assert "firstName" not in profile["attrs"] and profile["attrs"]["note"] == "ok"
    eng.apply_event(profile, "registration", event(2, firstName="A" * 100, note=["x"] * 99), NOW)
    assert profile["attrs"]["firstName"] == "A" * 100  # exactly the bound is fine
    assert profile["attrs"]["note"] == "ok"  # 99 one-character strings pack to 201 bytes: kept the old
    eng.apply_event(profile, "registration", event(3, note=2**64, extra={"n": 2**70}), NOW)
    assert profile["attrs"]["note"] == "ok" and "extra" not in profile["attrs"]
    assert profile["size"] == JourneyEngine.measure(profile)


def test_the_profile_bound_holds_attributes_and_identities_together() -> None:
    eng = engine(max_attribute_bytes=1000, max_profile_bytes=2000)
    profile = eng.new_profile("Email:a", NOW)
    ids = {"Email": [{"id": "a"}]}
    eng.apply_event(profile, "registration", event(1, identityMap=ids, firstName="F" * 900, note="N" * 900), NOW)
    used = profile["size"]
    assert used == 2 * (len("Email") + 1) + 1800 == JourneyEngine.measure(profile)
    # a third value would pass its own bound but not the profile's: skipped
    eng.apply_event(profile, "registration", event(2, identityMap=ids, extra="X" * 500), NOW)
    assert "extra" not in profile["attrs"] and profile["size"] == used
    # replacing a value counts the difference
    eng.apply_event(profile, "registration", event(3, identityMap=ids, note="n" * 100, extra="X" * 500), NOW)
    assert profile["attrs"]["note"] == "n" * 100 and profile["attrs"]["extra"] == "X" * 500
    # identities share the bound: the ones that fit are kept, the first in each namespace first
    many = {f"NS{i:03d}": [{"id": "i" * 200}] for i in range(20)}
    eng.observe(profile, "e4", many, NOW)
    assert profile["size"] == JourneyEngine.measure(profile) <= 2000
    assert 0 < len(profile["ids"]) < 21
    assert set(profile["ids"]) == set(profile["attrs"][IDENTITIES])


def test_the_identities_attribute_cannot_be_overwritten_by_a_field() -> None:
    eng = JourneyEngine([], profile_fields={"registration": ((IDENTITIES, lambda scope: "oops"),)})
    profile = eng.new_profile("Email:a", NOW)
    eng.apply_event(profile, "registration", event(1), NOW)
    eng.apply_event(profile, "registration", event(2, identityMap={"ECID": [{"id": "E"}]}), NOW)
    assert profile["attrs"][IDENTITIES] == {"Email": "user1@example.com", "ECID": "E"}


def test_a_profile_from_an_old_snapshot_is_measured_once() -> None:
    eng = engine(max_profile_bytes=1100)
    profile = eng.new_profile("Email:a", NOW)
    eng.apply_event(profile, "registration", event(1, note="n" * 1000), NOW)
    del profile["size"]  # as written before sizes were kept
    eng.apply_event(profile, "registration", event(2, firstName="F" * 200), NOW)
    assert "firstName" not in profile["attrs"]
    assert profile["size"] == JourneyEngine.measure(profile)


ATTR_VALUES = (
    st.none()
    | st.integers(min_value=-(2**66), max_value=2**66)
    | st.text(max_size=600)
    | st.lists(st.text(max_size=40), max_size=30)
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=20)
)


@FAST
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["firstName", "note", "extra"]),
            ATTR_VALUES,
            st.dictionaries(
                st.sampled_from(["Email", "ECID", "Phone", "N" * 100, "Ümlaut"]),
                st.lists(st.builds(dict, id=st.text(min_size=1, max_size=120)), min_size=1, max_size=3),
                min_size=1,
                max_size=3,
            ),
        ),
        max_size=30,
    ),
    st.integers(200, 3000),
)
def test_a_profile_stays_within_its_bounds_whatever_arrives(
    events: list[tuple[str, Any, dict[str, Any]]], budget: int
) -> None:
    eng = engine(max_attribute_bytes=500, max_profile_bytes=budget, max_ids_per_namespace=3)
    profile = eng.new_profile("Email:a", NOW)
    for n, (field, value, identity_map) in enumerate(events):
        ev = event(n, identityMap=identity_map, **{field: value})
        if n % 2:
            eng.observe(profile, ev["_id"], identity_map, NOW)
        else:
            eng.apply_event(profile, "registration", ev, NOW)
        assert profile["size"] == JourneyEngine.measure(profile) <= budget
        for name, kept in profile["attrs"].items():
            if name != IDENTITIES:
                size = value_size(kept)
                assert size is not None and size <= 500
        assert all(0 < len(known) <= 3 for known in profile["ids"].values())
        assert {ns: known[0] for ns, known in profile["ids"].items()} == profile["attrs"][IDENTITIES]
    msgpack.packb(profile)  # whatever was kept, a snapshot can hold it


def test_a_namespace_with_a_colon_is_refused_so_profile_keys_cannot_collide() -> None:
    from itinerary.engine.ingest import validate_events

    event = {"timestamp": "2026-11-29T10:00:00Z", "identityMap": {"Email:x": [{"id": "y", "primary": True}]}}
    accepted, rejected = validate_events([event], now=1.8e9)
    assert accepted == [] and rejected == [{"index": 0, "reason": "identityMap: namespace names must not contain ':'"}]
