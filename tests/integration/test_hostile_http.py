"""Hostile input over real HTTP against the real system: nothing answers 5xx, nothing crashes.

Hypothesis generates bodies (random JSON, deep nesting, huge strings and arrays, wrong
types, invalid UTF-8, missing or conflicting identities, timestamps from year 1 to 9999,
msgpack with bytes, ext types and non-str keys) and posts them as JSON, msgpack or text.
Every answer must be 202, 400, 413 or 415 (429 only with Retry-After), every event of a
request must come back accepted or rejected with its index and a reason, and afterwards
the ingress, the shards and the gateways must still answer. Then two explicit cases: an
event id reused with other content, and identities that name different people.
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from itinerary.engine.ingest import BodyError, parse_body
from tests.integration.system import http, post_events

ANSWERS = {202, 400, 413, 415}
# JSON and msgpack twice as often as a type the ingress refuses outright
CONTENT_TYPES = ["application/json", "application/msgpack"] * 2 + ["text/plain"]
EVENT_TYPES = ["page-view", "web.formFilledOut", "media.ping", "", "x" * 300]


def stamp(offset: timedelta) -> str:
    return (datetime.now(UTC) + offset).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def page_view(email: str, **fields: Any) -> dict[str, Any]:
    return {
        "_id": uuid.uuid4().hex,
        "timestamp": stamp(timedelta(0)),
        "eventType": "page-view",
        "identityMap": {"Email": [{"id": email}]},
        **fields,
    }


def status(url: str) -> dict[str, Any]:
    code, body, _ = http("GET", f"{url}/v1/status")
    assert code == 200
    return body  # type: ignore[no-any-return]


def duplicates(url: str) -> int:
    return sum(shard["duplicates"] for shard in status(url)["shards"])


# -- generated bodies ---------------------------------------------------------------------

TIMESTAMPS = st.sampled_from(
    [
        "0001-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "2026-13-01T00:00:00Z",
        "yesterday",
        "1700000000",
    ]
) | st.sampled_from([timedelta(0), timedelta(days=-400), timedelta(hours=23), timedelta(days=2)]).map(stamp)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | TIMESTAMPS
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
IDENTITY_MAPS = (
    st.dictionaries(
        st.sampled_from(["Email", "ECID", "CRMID", "Loyalty", ""]),
        st.lists(
            st.fixed_dictionaries(
                {"id": st.sampled_from(["ann@example.com", "bob@example.com", "E-1", ""]) | st.text(max_size=8)},
                optional={"primary": st.booleans() | st.just("yes")},
            ),
            max_size=3,
        ),
        max_size=3,
    )
    | JSON
)
HUGE = st.sampled_from(["x" * 70_000, ["y"] * 20_000, {"deep": json.loads("[" * 150 + "]" * 150)}])


@st.composite
def hostile_event(draw: st.DrawFn) -> Any:
    ev: dict[str, Any] = {
        "timestamp": draw(TIMESTAMPS | JSON),
        "eventType": draw(st.sampled_from(EVENT_TYPES) | JSON),
        "identityMap": draw(IDENTITY_MAPS),
    }
    if draw(st.booleans()):
        ev["_id"] = draw(st.sampled_from(["hostile-1", "hostile-2"]) | JSON)
    for key in draw(st.lists(st.sampled_from(["web", "note", "@id", "xdm:name", "_ts"]), max_size=2)):
        ev[key] = draw(JSON | HUGE)
    for key in draw(st.lists(st.sampled_from(["timestamp", "identityMap", "eventType"]), max_size=1)):
        del ev[key]
    return ev


ITEMS = st.lists(hostile_event() | st.builds(page_view, st.just("fine@example.com")) | JSON, max_size=5)
MSGPACK_EXTRAS = st.sampled_from(
    [b"\x00\xff", msgpack.ExtType(3, b"x"), msgpack.Timestamp(1), float("nan"), {1: "int key"}, {b"k": "bytes key"}]
)


@st.composite
def body_and_type(draw: st.DrawFn) -> tuple[bytes, str]:
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    items: list[Any] = draw(ITEMS)
    form = draw(st.sampled_from(["items", "one", "deep", "bytes", "damaged"]))
    extra = draw(st.booleans())
    if content_type == "application/msgpack" and items and extra:
        target = items[0] if isinstance(items[0], dict) else None
        if target is not None:
            target[draw(st.sampled_from(["web", "_id", "timestamp"]))] = draw(MSGPACK_EXTRAS)
    encode = (
        (lambda value: msgpack.packb(value, use_bin_type=True))
        if content_type == "application/msgpack"
        else (lambda value: json.dumps(value).encode())
    )
    if form == "one" and items:
        body = encode(items[0])
    elif form == "deep":
        depth = draw(st.sampled_from([100, 199, 201, 10_000]))
        body = b"[" * depth + b"]" * depth if content_type != "application/msgpack" else b"\x91" * depth + b"\x90"
    elif form == "bytes":
        body = draw(st.binary(max_size=40))
    else:
        body = encode(items)
        if form == "damaged" and body:
            at = draw(st.integers(0, len(body) - 1))
            body = body[:at] + draw(st.sampled_from([b"\xff", b"\xc3(", b"\x00", b""])) + body[at + 1 :]
    return body, content_type


def expected_count(body: bytes, content_type: str, max_events: int) -> int | None:
    """How many events the ingress must answer for (None: refused as a whole)."""
    try:
        return len(parse_body(body, content_type, max_events=max_events))
    except BodyError:
        return None


def check_answer(body: bytes, content_type: str, limits: Any, code: int, answer: Any, headers: Any) -> None:
    if code == 429:
        assert headers.get("Retry-After"), headers
        return
    assert code in ANSWERS, (code, answer)
    assert isinstance(answer, dict), answer
    if len(body) > limits.max_body_bytes:
        assert code == 413 and "over the limit" in answer["error"], answer
        return
    count = expected_count(body, content_type, limits.max_events_per_request)
    if "error" in answer:  # the body as a whole
        assert code in (400, 413, 415) and isinstance(answer["error"], str) and answer["error"]
        assert count is None, answer
        return
    assert count is not None
    rejected = answer["rejected"]
    for refusal in rejected:
        assert type(refusal["index"]) is int and isinstance(refusal["reason"], str) and refusal["reason"]
    indices = [r["index"] for r in rejected]
    assert indices == sorted(set(indices)) and all(0 <= i < count for i in indices)
    assert answer["accepted"] + len(rejected) == count, answer
    assert code == (400 if answer["accepted"] == 0 and rejected else 202), (code, answer)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(body_and_type())
def test_hostile_bodies_never_get_a_5xx(system: dict[str, Any], generated: tuple[bytes, str]) -> None:
    body, content_type = generated
    code, answer, headers = http("POST", f"{system['url']}/v1/events", body, content_type)
    event(f"{content_type} -> {code}")  # --hypothesis-show-statistics: what the run covered
    check_answer(body, content_type, system["app"].runtime.ingress, code, answer, headers)


def test_bodies_refused_as_a_whole_say_why(system: dict[str, Any]) -> None:
    url = f"{system['url']}/v1/events"
    limit = system["app"].runtime.ingress.max_body_bytes
    cases: list[tuple[bytes, str, dict[str, str], int]] = [
        (b"x" * (limit + 1), "application/json", {}, 413),
        (b"[{}]" + b" " * limit, "application/json", {}, 413),
        (b"[" * 10_000 + b"]" * 10_000, "application/json", {}, 400),
        (b"\x91" * 10_000 + b"\x90", "application/msgpack", {}, 400),
        (b'[{"a": "\xff\xfe"}]', "application/json", {}, 400),
        (b'[{"a": NaN}]', "application/json", {}, 400),
        (b"[{}, {}]", "text/plain", {}, 415),
        (json.dumps([{}] * 10_001).encode(), "application/json", {}, 413),
        (b"not gzip at all", "application/json", {"Content-Encoding": "gzip"}, 400),
        (b"not deflate", "application/json", {"Content-Encoding": "deflate"}, 400),
        (gzip.compress(b"[" + b" " * (2 * limit) + b"]"), "application/json", {"Content-Encoding": "gzip"}, 413),
    ]
    for body, content_type, headers, expected in cases:
        code, answer, _ = http("POST", url, body, content_type, headers)
        assert code == expected, (body[:40], headers, code, answer)
        assert isinstance(answer, dict) and answer["error"], answer
    # a compressed body that is fine is read like any other
    code, answer, _ = http(
        "POST",
        url,
        gzip.compress(json.dumps([page_view("gz@example.com")]).encode()),
        headers={"Content-Encoding": "gzip"},
    )
    assert (code, answer) == (202, {"accepted": 1, "rejected": []})


def test_timestamps_far_in_the_past_are_taken_and_beyond_the_skew_refused(system: dict[str, Any]) -> None:
    skew = system["app"].runtime.ingress.max_future_skew.total_seconds()
    email = f"t-{uuid.uuid4().hex[:8]}@example.com"
    events = [
        page_view(email, timestamp="0001-01-01T00:00:00Z"),
        page_view(email, timestamp=stamp(timedelta(seconds=skew - 60))),
        page_view(email, timestamp=stamp(timedelta(seconds=skew + 60))),
        page_view(email, timestamp="9999-12-31T23:59:59Z"),
    ]
    code, answer = post_events(system["url"], events)
    assert code == 202 and answer["accepted"] == 2
    assert [r["index"] for r in answer["rejected"]] == [2, 3]
    assert all(f"more than {skew:g} s in the future" in r["reason"] for r in answer["rejected"])


def test_an_event_id_reused_with_other_content_is_ignored_the_second_time(system: dict[str, Any]) -> None:
    url = system["url"]
    email = f"dup-{uuid.uuid4().hex[:8]}@example.com"
    event_id = f"dup-{uuid.uuid4().hex}"
    first = page_view(email, _id=event_id)
    before = duplicates(url)
    assert post_events(url, first) == (202, {"accepted": 1, "rejected": []})
    assert duplicates(url) == before
    # the same id with other content: a registration that would set a name and start a journey
    other = {
        "_id": event_id,
        "timestamp": stamp(timedelta(0)),
        "eventType": "web.formFilledOut",
        "identityMap": {"Email": [{"id": email}], "ECID": [{"id": f"E-{event_id}"}]},
        "personalEmail": {"address": email},
        "person": {"name": {"firstName": "Mallory"}},
    }
    assert post_events(url, other) == (202, {"accepted": 1, "rejected": []})  # accepted at the edge
    assert duplicates(url) == before + 1  # and ignored by the profile
    code, profile, _ = http("GET", f"{url}/v1/profiles/Email/{email}")
    assert code == 200
    assert "firstName" not in profile["attributes"]
    assert profile["identities"] == {"Email": [email]}
    assert profile["history"] == {} and profile["journeys"] == []


def test_conflicting_identities_route_by_the_configured_namespace_order(system: dict[str, Any]) -> None:
    url = system["url"]
    order = system["app"].runtime.identity.namespaces
    assert order[:2] == ("Email", "ECID")
    tag = uuid.uuid4().hex[:8]
    email, ecid, crmid = f"c-{tag}@example.com", f"E-{tag}", f"C-{tag}"
    events = [
        # Email and ECID name different people; ECID is even flagged primary: Email wins
        {**page_view(email), "identityMap": {"ECID": [{"id": ecid, "primary": True}], "Email": [{"id": email}]}},
        # the same in the other order
        {**page_view(email), "identityMap": {"Email": [{"id": email}], "ECID": [{"id": ecid, "primary": True}]}},
        # without Email, ECID comes before CRMID whatever the event says
        {**page_view(email), "identityMap": {"CRMID": [{"id": crmid, "primary": True}], "ECID": [{"id": ecid}]}},
    ]
    code, answer = post_events(url, events)
    assert (code, answer) == (202, {"accepted": 3, "rejected": []})
    code, by_email, _ = http("GET", f"{url}/v1/profiles/Email/{email}")
    assert code == 200 and by_email["identities"] == {"ECID": [ecid], "Email": [email]}
    code, by_ecid, _ = http("GET", f"{url}/v1/profiles/ECID/{ecid}")
    assert code == 200 and by_ecid["identities"] == {"CRMID": [crmid], "ECID": [ecid]}
    assert http("GET", f"{url}/v1/profiles/CRMID/{crmid}")[0] == 404


def test_nothing_crashed(system: dict[str, Any]) -> None:
    """Runs last in this module: after everything above the actors still answer."""
    url = system["url"]
    code, body, _ = http("GET", f"{url}/healthz")
    assert code == 200 and body["status"] == "ok"
    state = status(url)
    assert len(state["shards"]) == system["app"].runtime.shards
    for part in ("shards", "gateways", "ingresses"):
        assert state[part] and all("error" not in actor for actor in state[part]), state[part]
    assert state["restarts"] == {}, state["restarts"]  # the supervisor re-created no actor
    assert sum(i["errors"] for i in state["ingresses"]) == 0
    # and they still take events
    deadline = time.monotonic() + 10
    while post_events(url, page_view("after@example.com"))[0] != 202 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert post_events(url, page_view("after@example.com")) == (202, {"accepted": 1, "rejected": []})
