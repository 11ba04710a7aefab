"""The ingest boundary: body parsing, per-event validation with reasons, routing identity."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itinerary.engine import ingest
from itinerary.engine.ingest import BodyError, parse_body, pick_identity, validate_events
from tests.xdm_fixtures import event_files, load

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC).timestamp()
STAMP = "2026-11-29T09:59:00.250Z"


def event(n: int = 0, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "_id": f"e{n}",
        "timestamp": STAMP,
        "eventType": "commerce.productListAdds",
        "identityMap": {"Email": [{"id": f"user{n}@example.com", "primary": True}], "ECID": [{"id": f"{n:038d}"}]},
        "commerce": {"productListAdds": {"value": 1}},
        "productListItems": [{"SKU": "SKU-1", "name": "Tent", "priceTotal": 199.0, "quantity": 1}],
    }
    body.update(fields)
    return body


def without(key: str, n: int = 0) -> dict[str, Any]:
    body = event(n)
    del body[key]
    return body


def validate(items: list[Any], **options: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    options.setdefault("now", NOW)
    return validate_events(items, **options)


# -- parse_body ---------------------------------------------------------------------------


def test_json_object_is_one_item() -> None:
    assert parse_body(b'{"a": 1}', "application/json", max_events=10) == [{"a": 1}]


def test_json_array_is_its_items_and_content_type_parameters_are_ignored() -> None:
    body = json.dumps([{"a": 1}, {"b": 2}, 3]).encode()
    assert parse_body(body, "application/json; charset=utf-8", max_events=10) == [{"a": 1}, {"b": 2}, 3]
    assert parse_body(body, "Application/JSON", max_events=10) == [{"a": 1}, {"b": 2}, 3]


def test_structured_json_types_and_a_byte_order_mark_are_accepted() -> None:
    assert parse_body(b'{"a": 1}', "application/vnd.adobe.xed-full+json", max_events=1) == [{"a": 1}]
    assert parse_body(b'{"a": 1}', "application/ld+json", max_events=1) == [{"a": 1}]
    assert parse_body(b'\xef\xbb\xbf[{"a": 1}]', "application/json", max_events=1) == [{"a": 1}]


def test_empty_array_is_no_items() -> None:
    assert parse_body(b"[]", "application/json", max_events=10) == []
    assert parse_body(msgpack.packb([]), "application/msgpack", max_events=10) == []


def test_msgpack_map_and_array() -> None:
    one = {"a": 1, "b": [1.5, "x"]}
    assert parse_body(msgpack.packb(one), "application/msgpack", max_events=10) == [one]
    assert parse_body(msgpack.packb([one, one]), "application/x-msgpack", max_events=10) == [one, one]
    # maps with non-str keys still parse; validate_events refuses those events one by one
    assert parse_body(msgpack.packb([{1: 2}]), "application/vnd.msgpack", max_events=10) == [{1: 2}]


def test_ndjson_is_one_event_per_line() -> None:
    body = b'{"a": 1}\n\n{"b": 2}\r\n'
    assert parse_body(body, "application/x-ndjson", max_events=10) == [{"a": 1}, {"b": 2}]
    with pytest.raises(BodyError) as info:
        parse_body(b'{"a": 1}\n{"b": \n', "application/x-ndjson", max_events=10)
    assert info.value.status == 400 and info.value.reason.startswith("body is not valid JSON: line 2: ")
    with pytest.raises(BodyError) as info:
        parse_body(b"{}\n{}\n{}\n", "application/x-ndjson", max_events=2)
    assert info.value.status == 413


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b'{"a": ', "application/json", 400, "body is not valid JSON: EOF while parsing a value at line 1 column 6"),
        (
            b'{"a": "\xff"}',
            "application/json",
            400,
            "body is not valid JSON: invalid unicode code point at line 1 column 8",
        ),
        (b"", "application/json", 400, "body is not valid JSON: it is empty"),
        (b"  \n", "application/json", 400, "body is not valid JSON: it is empty"),
        (b'{"a": NaN}', "application/json", 400, "body is not valid JSON: expected value at line 1 column 7"),
        (b"42", "application/json", 400, "body must be a JSON object or an array of objects, not a number"),
        (b'"x"', "application/json", 400, "body must be a JSON object or an array of objects, not a string"),
        (b"\xc1", "application/msgpack", 400, "body is not valid msgpack: FormatError"),
        (b"\x81\xa1a", "application/msgpack", 400, "body is not valid msgpack: Unpack failed: incomplete input"),
        (
            msgpack.packb({}) + b"\x01",
            "application/msgpack",
            400,
            "body is not valid msgpack: unpack(b) received extra data.",
        ),
        (b"\xa2\xff\xfe", "application/msgpack", 400, "body is not valid msgpack: a string is not valid UTF-8"),
        (
            msgpack.packb(5),
            "application/msgpack",
            400,
            "body must be a msgpack object or an array of objects, not a number",
        ),
        (b"a,b", "text/csv", 415, "unsupported content type 'text/csv': use application/json or application/msgpack"),
        (b"{}", "", 415, "unsupported content type 'none': use application/json or application/msgpack"),
        (b"[{}, {}, {}]", "application/json", 413, "3 events in one request, over the limit of 2"),
        (msgpack.packb([{}, {}, {}]), "application/msgpack", 413, "3 events in one request, over the limit of 2"),
    ],
    ids=[
        "truncated",
        "invalid-utf8",
        "empty",
        "blank",
        "nan",
        "number",
        "string",
        "msgpack-format",
        "msgpack-truncated",
        "msgpack-extra",
        "msgpack-utf8",
        "msgpack-number",
        "csv",
        "no-type",
        "too-many",
        "too-many-msgpack",
    ],
)
def test_bodies_refused_as_a_whole(body: bytes, content_type: str, status: int, reason: str) -> None:
    with pytest.raises(BodyError) as info:
        parse_body(body, content_type, max_events=2)
    assert (info.value.status, info.value.reason) == (status, reason)
    assert str(info.value) == f"{status}: {reason}"


def test_hostile_json_nesting_is_a_400_not_a_crash() -> None:
    with pytest.raises(BodyError) as info:
        parse_body(b"[" * 100_000 + b"]" * 100_000, "application/json", max_events=2)
    assert info.value.status == 400 and "recursion limit" in info.value.reason


# -- validate_events: the rules -----------------------------------------------------------

NOT_ISO = "timestamp: must be an ISO-8601 date-time such as 2024-05-01T10:00:00Z"
TOO_MANY_IDS = "identityMap: 21 identities, over the limit of 20"
BAD_EVENTS: list[tuple[Any, str]] = [
    (7, "event must be an object, not a number"),
    ([event()], "event must be an object, not an array"),
    (None, "event must be an object, not null"),
    (without("timestamp"), "timestamp: required"),
    (event(timestamp=1_700_000_000), "timestamp: must be an ISO-8601 date-time string, not a number"),
    (event(timestamp="yesterday"), f"{NOT_ISO}: 'yesterday'"),
    (event(timestamp="1700000000"), f"{NOT_ISO}: '1700000000'"),
    (event(timestamp="2026-11-29"), f"{NOT_ISO}: '2026-11-29'"),
    (event(timestamp="2026-11-29T10:00:00"), "timestamp: needs a timezone (Z or +hh:mm): '2026-11-29T10:00:00'"),
    (
        event(timestamp="2026-13-29T10:00:00Z"),
        "timestamp: not a valid date-time (month value is outside expected range of 1-12): '2026-13-29T10:00:00Z'",
    ),
    (event(timestamp="2026-11-29T10:00:00Z" + " " * 60), "timestamp: must be at most 64 characters"),
    (event(timestamp="2026-11-30T10:00:01Z"), "timestamp: 2026-11-30T10:00:01Z is more than 86400 s in the future"),
    (event(_id=""), "_id: must be a non-empty string"),
    (event(_id=12), "_id: must be a non-empty string"),
    (event(_id="x" * 257), "_id: must be at most 256 characters"),
    (event(eventType=["a"]), "eventType: must be a string"),
    (event(eventType="x" * 257), "eventType: must be at most 256 characters"),
    (without("identityMap"), "identityMap: required"),
    (event(identityMap=[]), "identityMap: must be an object of namespace -> list of identities"),
    (event(identityMap={}), "identityMap: must hold at least one identity"),
    (event(identityMap={"Email": []}), "identityMap.Email: must hold at least one identity"),
    (event(identityMap={"Email": {"id": "a"}}), "identityMap.Email: must be a list of identities"),
    (event(identityMap={"Email": ["a@example.com"]}), "identityMap.Email[0]: must be an object with an id"),
    (event(identityMap={"Email": [{"id": ""}]}), "identityMap.Email[0].id: must be a non-empty string"),
    (event(identityMap={"Email": [{"primary": True}]}), "identityMap.Email[0].id: must be a non-empty string"),
    (event(identityMap={"Email": [{"id": 5}]}), "identityMap.Email[0].id: must be a non-empty string"),
    (
        event(identityMap={"Email": [{"id": "a"}, {"id": "x" * 1025}]}),
        "identityMap.Email[1].id: must be at most 1024 characters",
    ),
    (
        event(identityMap={"Email": [{"id": "a", "primary": "yes"}]}),
        "identityMap.Email[0].primary: must be true or false",
    ),
    (
        event(identityMap={"Email": [{"id": "a", "authenticatedState": 1}]}),
        "identityMap.Email[0].authenticatedState: must be a string",
    ),
    (event(identityMap={"": [{"id": "a"}]}), "identityMap: namespace names must be non-empty strings"),
    (event(identityMap={"N" * 257: [{"id": "a"}]}), "identityMap: namespace names must be at most 256 characters"),
    (event(identityMap={f"N{i}": [{"id": "a"}] for i in range(21)}), TOO_MANY_IDS),
    (event(identityMap={"ECID": [{"id": str(i)} for i in range(21)]}), TOO_MANY_IDS),
    (event(blob=b"\x00"), "blob: bytes is not a JSON value"),
    (event(web={"tags": ("a", "b")}), "web.tags: tuple is not a JSON value"),
    (event(web={"pages": [{1: "x"}]}), "web.pages[0]: keys must be strings, not a number 1"),
    ({**event(), 3: "x"}, "event: keys must be strings, not a number 3"),
    (
        {**event(), "xdm:name": "a", "name": "b"},
        "cannot normalise JSON-LD: name: 'name' collides with another key that maps to 'name'",
    ),
]


def test_each_bad_event_gets_its_reason_at_its_index_and_the_good_ones_go_on() -> None:
    items: list[Any] = []
    expected: list[dict[str, Any]] = []
    for n, (bad, reason) in enumerate(BAD_EVENTS):
        items.append(event(1000 + n))
        expected.append({"index": len(items), "reason": reason})
        items.append(bad)
    accepted, rejected = validate(items)
    assert rejected == expected
    assert [index for index, _ in accepted] == list(range(0, len(items), 2))
    assert [e["_id"] for _, e in accepted] == [f"e{1000 + n}" for n in range(len(BAD_EVENTS))]


@pytest.mark.parametrize(("bad", "reason"), BAD_EVENTS, ids=[r[:40] for _, r in BAD_EVENTS])
def test_bad_event_alone(bad: Any, reason: str) -> None:
    accepted, rejected = validate([copy.deepcopy(bad) if not isinstance(bad, dict) else bad])
    assert accepted == [] and rejected == [{"index": 0, "reason": reason}]


def test_good_events_are_accepted_in_order_and_completed() -> None:
    items = [event(n) for n in range(5)]
    accepted, rejected = validate(items)
    assert rejected == []
    assert [index for index, _ in accepted] == [0, 1, 2, 3, 4]
    for (index, ev), item in zip(accepted, items, strict=True):
        assert ev is item  # completed in place: no copy on the hot path
        assert ev["_ts"] == datetime(2026, 11, 29, 9, 59, 0, 250_000, tzinfo=UTC).timestamp()
        assert ev["timestamp"] == STAMP and ev["_id"] == f"e{index}"


TIMESTAMP_FORMS = [
    "2026-11-29T09:59:00Z",
    "2026-11-29T09:59:00.250Z",
    "2026-11-29T09:59:00.1234567Z",  # beyond microseconds: both cut, neither rounds
    "2026-11-29T09:59:00.123456789+02:00",
    "2026-11-29t10:00:00.123456z",  # the standard library refuses this one: the fallback
    "2026-11-29 10:00:00Z",
    "2026-11-29T10:00Z",
    "2026-11-29T10:00:00+0100",
    "2026-11-29T10:00:00-05:30",
    "2026-11-29T10:00:00,5Z",
    "2026-11-29T10:00:00.9999995Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
]


@pytest.mark.parametrize("text", TIMESTAMP_FORMS)
def test_the_fast_epoch_is_the_validators_instant(text: str) -> None:
    [core] = ingest._BATCH.validate_python([event(timestamp=text)])
    assert ingest._epoch(text, core["timestamp"]) == core["timestamp"].timestamp()


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
    st.sampled_from(["", ".5", ".123", ".123456", ".1234567891", ",25"]),
    st.sampled_from(["T", " "]),
)
def test_the_fast_epoch_agrees_on_any_instant(moment: datetime, offset: int, fraction: str, sep: str) -> None:
    sign, minutes = ("+" if offset >= 0 else "-"), abs(offset)
    zone = "Z" if offset == 0 else f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    day, time_of_day = moment.date().isoformat(), moment.time().isoformat(timespec="seconds")  # years < 1000 padded
    text = f"{day}{sep}{time_of_day}{fraction}{zone}"
    [core] = ingest._BATCH.validate_python([event(timestamp=text)])
    assert ingest._epoch(text, core["timestamp"]) == core["timestamp"].timestamp()


def test_timestamps_with_offsets_and_fractions() -> None:
    accepted, _ = validate(
        [
            event(timestamp="2026-11-29T11:00:00+01:00"),
            event(timestamp="2026-11-29t10:00:00.123456z"),
            event(timestamp="2026-11-29T10:00Z"),
        ]
    )
    assert [e["_ts"] for _, e in accepted] == [NOW, NOW + 0.123456, NOW]


def test_a_client_ts_is_replaced() -> None:
    [(_, ev)] = validate([event(_ts="whatever")])[0]
    assert ev["_ts"] == pytest.approx(NOW - 59.75)


def test_the_future_limit_is_inclusive_and_configurable() -> None:
    at_limit = event(timestamp="2026-11-30T10:00:00Z")
    assert validate([at_limit])[1] == []
    _, rejected = validate([event(timestamp="2026-11-29T10:00:10Z")], max_future_skew=5)
    assert rejected == [{"index": 0, "reason": "timestamp: 2026-11-29T10:00:10Z is more than 5 s in the future"}]
    # the past is fine: replays and late mobile batches are normal
    assert validate([event(timestamp="2001-01-01T00:00:00Z")])[1] == []


def test_derived_id_is_stable_across_retries_and_forms() -> None:
    first = without("_id")
    retry = without("_id")
    other = without("_id", n=1)
    accepted, _ = validate([first, retry, other])
    ids = [e["_id"] for _, e in accepted]
    assert ids[0] == ids[1] != ids[2]
    assert ids[0].startswith("sha1:") and len(ids[0]) == 45
    # the same event in JSON-LD form gets the same id
    jsonld = {
        "xdm:timestamp": STAMP,
        "xdm:eventType": "commerce.productListAdds",
        "xdm:identityMap": {
            "Email": [{"xdm:id": "user0@example.com", "xdm:primary": True}],
            "ECID": [{"xdm:id": f"{0:038d}"}],
        },
        "xdm:commerce": {"xdm:productListAdds": {"xdm:value": 1}},
        "xdm:productListItems": [{"xdm:SKU": "SKU-1", "xdm:name": "Tent", "xdm:priceTotal": 199.0, "xdm:quantity": 1}],
    }
    assert validate([jsonld])[0][0][1]["_id"] == ids[0]
    # and a later day's identical retry too: the id depends on content, not on arrival
    assert validate([without("_id")], now=NOW + 3600)[0][0][1]["_id"] == ids[0]


def test_values_msgpack_cannot_encode_are_left_to_the_router() -> None:
    """Validation does not encode events: the router encodes what a shard keeps and refuses
    what it cannot encode there (tests/unit/test_router.py); a field nothing keeps is free."""
    big, surrogate = event(0, big=2**64), event(1, text="\ud800")
    accepted, rejected = validate([big, surrogate])
    assert rejected == [] and [index for index, _ in accepted] == [0, 1]


def test_identity_limit_is_configurable() -> None:
    three = event(identityMap={"Email": [{"id": "a"}], "ECID": [{"id": "b"}, {"id": "c"}]})
    assert validate([three], max_identities=3)[1] == []
    assert validate([copy.deepcopy(three)], max_identities=2)[1] == [
        {"index": 0, "reason": "identityMap: 3 identities, over the limit of 2"}
    ]


def test_identity_extras_are_kept() -> None:
    ev = event(identityMap={"Email": [{"id": "a", "primary": False, "authenticatedState": "loggedOut", "extra": 1}]})
    [(_, accepted)] = validate([ev])[0]
    assert accepted["identityMap"]["Email"][0]["extra"] == 1


def test_msgpack_events_with_non_json_content_are_refused_one_by_one() -> None:
    int_key: dict[Any, Any] = {**event(1), 5: "int key"}
    body = msgpack.packb(
        [event(0), int_key, event(2, blob=b"\x01"), event(3, ts=msgpack.Timestamp(1))], use_bin_type=True
    )
    items = parse_body(body, "application/msgpack", max_events=10)
    accepted, rejected = validate(items)
    assert [index for index, _ in accepted] == [0]
    assert rejected == [
        {"index": 1, "reason": "event: keys must be strings, not a number 5"},
        {"index": 2, "reason": "blob: bytes is not a JSON value"},
        {"index": 3, "reason": "ts: Timestamp is not a JSON value"},
    ]


def test_deep_short_form_events_from_msgpack_are_refused() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(200):
        node["a"] = {}
        node = node["a"]
    items = parse_body(msgpack.packb([event(0, web=deep)]), "application/msgpack", max_events=1)
    [rejection] = validate(items)[1]
    assert rejection["reason"].startswith("nested deeper than 64 levels at web.a.a.a")


def test_json_and_msgpack_bodies_give_the_same_answers() -> None:
    items = [event(0), event(1, timestamp="nope"), without("_id", 2), 7]
    answers = []
    for body, content_type in (
        (json.dumps(items).encode(), "application/json"),
        (msgpack.packb(items), "application/msgpack"),
    ):
        accepted, rejected = validate(parse_body(body, content_type, max_events=10))
        answers.append((accepted, rejected))
    assert answers[0] == answers[1]


@pytest.mark.parametrize("path", event_files(), ids=lambda p: p.name)
def test_jsonld_examples_with_a_timestamp_and_identities_are_accepted(path: Any) -> None:
    source = json.loads(path.read_text(encoding="utf-8"))
    accepted, rejected = validate([source])
    if "xdm:timestamp" in source and "xdm:identityMap" in source:
        assert rejected == [] and len(accepted) == 1
        [(_, ev)] = accepted
        assert "identityMap" in ev and isinstance(ev["_ts"], float) and ev["_id"]
    else:  # field-group fragments are not events
        assert rejected == [{"index": 0, "reason": "timestamp: required"}]


def test_fixture_ids_and_times() -> None:
    items = [load("experienceevent.example.1.json"), load("aep-web-sdk-experienceevent.example.1.json")]
    accepted, _ = validate(items)
    assert accepted[0][1]["_id"] == "https://data.adobe.io/experienceid-123456"
    assert accepted[0][1]["_ts"] == 1506441145.0
    assert accepted[1][1]["_id"].startswith("sha1:")
    assert accepted[1][1]["_ts"] == 1578435074.143
    assert pick_identity(accepted[1][1], ["Email", "ECID"]) == (
        "Email_LC_SHA256",
        "81d1a7135b9722577fb4f094a2004296d6230512d37b68e64b73f050b919f7c4",
    )


def test_custom_namespace_codes() -> None:
    ev = {
        "xdm:timestamp": STAMP,
        "xdm:identityMap": {"https://data.adobe.io/entities/namespace/77": [{"xdm:id": "L-1"}]},
    }
    [(_, accepted)] = validate([ev], namespace_codes={"77": "Loyalty"})[0]
    assert accepted["identityMap"] == {"Loyalty": [{"id": "L-1"}]}


def test_an_unexpected_failure_of_the_batch_path_falls_back_to_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    items = [event(0), event(1, timestamp="nope"), without("_id", 2), 7]
    expected = validate(copy.deepcopy(items))

    def broken(events: list[Any]) -> list[Any]:
        raise RuntimeError("bug")

    monkeypatch.setattr(ingest, "_core_fields", broken)
    assert validate(items) == expected


# -- pick_identity --------------------------------------------------------------------------


def test_pick_identity_prefers_the_configured_order_then_primary() -> None:
    ev = {
        "identityMap": {
            "ECID": [{"id": "E1"}, {"id": "E2"}],
            "Email": [{"id": "a@x", "primary": True}],
            "Phone": [{"id": "+33", "primary": True}],
        }
    }
    assert pick_identity(ev, ["Email", "ECID"]) == ("Email", "a@x")
    assert pick_identity(ev, ["ECID", "Email"]) == ("ECID", "E1")
    assert pick_identity(ev, ["CRMID", "ECID"]) == ("ECID", "E1")
    assert pick_identity(ev, ["CRMID"]) == ("Email", "a@x")  # the first primary
    assert pick_identity(ev, ["email"]) == ("Email", "a@x")  # exact match only, then primary
    assert pick_identity({"identityMap": {"ECID": [{"id": "E1"}]}}, ["Email"]) is None
    assert pick_identity({"identityMap": {"ECID": [{"id": "E1", "primary": "true"}]}}, []) is None
    assert pick_identity({}, ["Email"]) is None
    assert pick_identity({"identityMap": "nope"}, ["Email"]) is None


# -- properties ---------------------------------------------------------------------------

KEYS = st.sampled_from(
    [
        "timestamp",
        "_id",
        "eventType",
        "identityMap",
        "id",
        "primary",
        "authenticatedState",
        "Email",
        "ECID",
        "xdm:timestamp",
        "xdm:identityMap",
        "xdm:id",
        "@id",
        "@type",
        "schema:latitude",
        "_schema",
        "_ts",
        "web",
        "https://data.adobe.io/entities/namespace/4",
    ]
) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from([STAMP, "2026-11-29T10:00:00", "2030-01-01T00:00:00Z", "", "x" * 300])
)
JSONISH = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5), max_leaves=25
)
# Not plain JSON: what a msgpack body or a Python caller can hand over.
ODD = (
    JSONISH
    | st.binary(max_size=4)
    | st.tuples(st.integers())
    | st.floats()
    | st.dictionaries(st.integers(), SCALARS, max_size=2)
)


@st.composite
def near_valid(draw: st.DrawFn, values: st.SearchStrategy[Any] = ODD) -> Any:
    """A valid event with one part replaced by something arbitrary."""
    ev = event(draw(st.integers(0, 5)))
    if draw(st.booleans()):
        del ev["_id"]
    target = draw(st.sampled_from(["top", "identityMap", "entry"]))
    value = draw(values)
    key = draw(KEYS)
    if target == "top":
        ev[key] = value
    elif target == "identityMap":
        ev["identityMap"][key] = value
    else:
        ev["identityMap"]["Email"][0][key] = value
    return ev


ITEMS = st.lists(near_valid() | near_valid(JSONISH) | JSONISH | ODD, max_size=8)


def check_partition(items: list[Any], accepted: list[Any], rejected: list[dict[str, Any]]) -> None:
    seen = [i for i, _ in accepted] + [r["index"] for r in rejected]
    assert sorted(seen) == list(range(len(items)))
    assert [i for i, _ in accepted] == sorted(i for i, _ in accepted)
    assert [r["index"] for r in rejected] == sorted(r["index"] for r in rejected)
    for r in rejected:
        assert isinstance(r["reason"], str) and 0 < len(r["reason"]) < 400
    for _, ev in accepted:
        assert isinstance(ev["_ts"], float) and isinstance(ev["_id"], str)


def as_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ITEMS)
def test_validate_never_raises_and_every_index_lands_once(items: list[Any]) -> None:
    accepted, rejected = validate(copy.deepcopy(items))
    check_partition(items, accepted, rejected)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ITEMS)
def test_a_batch_decides_like_its_events_one_at_a_time(items: list[Any]) -> None:
    accepted, rejected = validate(copy.deepcopy(items))
    alone: dict[int, Any] = {}
    for i, item in enumerate(items):
        ok, refused = validate([copy.deepcopy(item)])
        alone[i] = ok[0][1] if ok else refused[0]["reason"]
    assert {i: ev for i, ev in accepted} | {r["index"]: r["reason"] for r in rejected} == alone


@settings(max_examples=150, deadline=None)
@given(st.lists(JSONISH | near_valid(JSONISH), max_size=6))
def test_json_bodies_and_python_lists_are_judged_alike(items: list[Any]) -> None:
    body = json.dumps(items).encode()
    from_body = validate(parse_body(body, "application/json", max_events=100))
    from_list = validate(json.loads(body))
    assert from_body == from_list
