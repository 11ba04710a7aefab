"""End to end on real Ray: HTTP ingest -> shards -> journeys -> gateways -> real receivers."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import msgpack
import pytest

from tests.integration.system import ev, http, post_events, registration, wait_until

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "xdm"
NOW = "2026-11-29T10:00:00.000Z"


def cart_add(email: str) -> dict[str, Any]:
    return ev("commerce.productListAdds", email, productListItems=[{"SKU": "S1", "name": "Tent", "priceTotal": 199.0}])


def mails_to(system: dict[str, Any], address: str) -> list[Any]:
    return [m for m in system["smtp"].messages if address in m.rcpt_tos]


def calls(system: dict[str, Any], path: str, predicate: Any = lambda body: True) -> list[Any]:
    return [r for r in system["hooks"].received if r.path == path and predicate(r.body)]


def test_welcome_journey_sends_email_then_calls_the_custom_action(system: dict[str, Any]) -> None:
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    status, body = post_events(system["url"], registration(email, "Ada"))
    assert status == 202 and body == {"accepted": 1, "rejected": []}
    assert wait_until(lambda: len(mails_to(system, email)) == 1)
    [mail] = mails_to(system, email)
    assert mail.subject == "Welcome Ada"
    assert mail.message_id and "welcome" in mail.message_id
    assert wait_until(lambda: len(calls(system, "/loyalty", lambda b: b.get("email") == email)) == 1)
    [call] = calls(system, "/loyalty", lambda b: b.get("email") == email)
    assert call.body == {"email": email, "name": "Ada"}
    assert call.idempotency_key and call.idempotency_key.endswith("/enrol/2")
    # the journey finished: the profile shows it in its history, not as active
    assert wait_until(lambda: http("GET", f"{system['url']}/v1/profiles/Email/{email}")[1]["journeys"] == [])
    code, profile, _ = http("GET", f"{system['url']}/v1/profiles/Email/{email}")
    assert code == 200
    assert profile["attributes"]["firstName"] == "Ada"
    assert profile["history"]["welcome"]["entries"] == 1


def test_cart_abandonment_reminds_after_the_timeout_but_not_after_a_purchase(system: dict[str, Any]) -> None:
    ray = pytest.importorskip("ray")
    abandoner = f"a-{uuid.uuid4().hex[:8]}@example.com"
    buyer = f"b-{uuid.uuid4().hex[:8]}@example.com"
    assert post_events(system["url"], [cart_add(abandoner), cart_add(buyer)])[0] == 202
    purchase = ev("commerce.purchases", buyer, commerce={"order": {"purchaseID": "P1"}})
    assert post_events(system["url"], purchase)[0] == 202

    def node_of(email: str) -> list[str]:
        return [j["node"] for j in http("GET", f"{system['url']}/v1/profiles/Email/{email}")[1]["journeys"]]

    assert wait_until(lambda: node_of(abandoner) == ["wait"] and node_of(buyer) == [])
    # time travel: 30 minutes pass on every shard's clock, so the timeout fires now
    ray.get(system["supervisor"].advance_clock.remote(31 * 60))
    assert wait_until(lambda: len(mails_to(system, abandoner)) == 1)
    assert mails_to(system, abandoner)[0].subject == "Still want Tent?"
    assert wait_until(lambda: node_of(abandoner) == [])
    assert mails_to(system, buyer) == []


def test_a_throttled_channel_delivers_at_its_rate(system: dict[str, Any]) -> None:
    hooks = system["hooks"]
    run = uuid.uuid4().hex[:6]
    events = [ev("test.ping", f"p{i}-{run}@example.com", n=i) for i in range(60)]
    assert post_events(system["url"], events) == (202, {"accepted": 60, "rejected": []})

    def arrivals() -> list[float]:
        return sorted(r.at for r in hooks.received if r.path == "/limited" and run in (r.idempotency_key or ""))

    assert wait_until(lambda: len(arrivals()) == 60, timeout=30)
    times = arrivals()
    # 20/s with a burst of 1: 59 intervals after the first call should take ~2.95 s
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert 20 * 0.85 <= rate <= 20 * 1.10, rate


def test_a_500_then_200_is_delivered_once_after_a_retry(system: dict[str, Any]) -> None:
    flaky = system["flaky"]
    flaky.script([500])
    before = flaky.attempts
    email = f"f-{uuid.uuid4().hex[:8]}@example.com"
    assert post_events(system["url"], ev("test.flaky", email, n=1))[0] == 202
    assert wait_until(lambda: any(r.idempotency_key and email in r.idempotency_key for r in flaky.received))
    assert flaky.attempts - before == 2
    assert len([r for r in flaky.received if r.idempotency_key and email in r.idempotency_key]) == 1
    assert flaky.duplicates == 0


def test_a_401_is_not_retried_and_the_journey_takes_its_error_path(system: dict[str, Any]) -> None:
    flaky = system["flaky"]
    flaky.script([401])
    before = flaky.attempts
    email = f"u-{uuid.uuid4().hex[:8]}@example.com"
    assert post_events(system["url"], ev("test.flaky", email, n=2))[0] == 202

    def history() -> dict[str, Any]:
        return http("GET", f"{system['url']}/v1/profiles/Email/{email}")[1].get("history", {})

    assert wait_until(lambda: history().get("fragile", {}).get("last_exit") is not None)
    assert flaky.attempts - before == 1
    _, status, _ = http("GET", f"{system['url']}/v1/status")
    steps = [s for shard in status["shards"] for s in shard["steps"]]
    assert any(j == "fragile" and node == "failed" and kind == "exited" for j, node, kind, _ in steps)


# -- bad input gets the documented answers and crashes nothing --------------------------


def test_malformed_json_is_a_400(system: dict[str, Any]) -> None:
    code, body, _ = http("POST", f"{system['url']}/v1/events", b"{not json")
    assert code == 400 and "not valid JSON" in body["error"]


def test_unsupported_content_type_is_a_415(system: dict[str, Any]) -> None:
    code, _, _ = http("POST", f"{system['url']}/v1/events", b"a,b", content_type="text/csv")
    assert code == 415


def test_oversize_body_is_a_413(system: dict[str, Any]) -> None:
    big = json.dumps([ev("page-view", "x@example.com", pad="x" * 1024)] * 1200).encode()
    code, body, _ = http("POST", f"{system['url']}/v1/events", big)
    assert code == 413 and "over the limit" in body["error"]


def test_each_bad_event_gets_a_reason_and_the_good_ones_are_accepted(system: dict[str, Any]) -> None:
    good = ev("page-view", "ok@example.com")
    unknown = ev("media.sessionStart", "ok@example.com")
    no_identity = {"_id": "x1", "timestamp": NOW, "eventType": "page-view"}
    wrong_namespace = {
        "_id": "x2",
        "timestamp": NOW,
        "eventType": "page-view",
        "identityMap": {"Loyalty": [{"id": "42"}]},
    }
    bad_time = dict(good, _id="x3", timestamp="yesterday")
    code, body = post_events(system["url"], [good, unknown, no_identity, wrong_namespace, bad_time, 7])
    assert code == 202 and body["accepted"] == 1
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert set(reasons) == {1, 2, 3, 4, 5}
    assert reasons[1] == "no event definition matches eventType 'media.sessionStart'"
    assert "identityMap" in reasons[2]
    assert "no identity in namespace" in reasons[3]
    assert "timestamp" in reasons[4]
    code, body = post_events(system["url"], [unknown])
    assert code == 400 and body["accepted"] == 0


def fast_path_bodies(system: dict[str, Any]) -> int:
    code, status, _ = http("GET", f"{system['url']}/v1/status")
    assert code == 200
    return sum(ingress["fast_path_bodies"] for ingress in status["ingresses"])


def test_valid_json_takes_the_fast_path_and_a_bad_event_the_general_one(system: dict[str, Any]) -> None:
    before = fast_path_bodies(system)
    code, body = post_events(system["url"], [ev("page-view", f"f{i}@example.com") for i in range(3)])
    assert code == 202 and body == {"accepted": 3, "rejected": []}
    assert fast_path_bodies(system) == before + 1
    code, body = post_events(system["url"], [ev("page-view", "g@example.com"), dict(ev("page-view", "h"), _id="")])
    assert code == 202 and body["accepted"] == 1
    assert body["rejected"] == [{"index": 1, "reason": "_id: must be a non-empty string"}]
    assert fast_path_bodies(system) == before + 1


def test_msgpack_batches_are_accepted(system: dict[str, Any]) -> None:
    events = [ev("page-view", f"m{i}@example.com") for i in range(10)]
    code, body, _ = http("POST", f"{system['url']}/v1/events", msgpack.packb(events), "application/msgpack")
    assert code == 202 and body["accepted"] == 10


def test_jsonld_fixtures_get_their_documented_answers(system: dict[str, Any]) -> None:
    answers = {}
    for path in sorted(FIXTURES.glob("*.json")):
        code, body = post_events(system["url"], json.loads(path.read_text()))
        answers[path.name] = (code, body)
    # a purchase with ECID identities (JSON-LD namespace URIs) is accepted and routed by ECID
    assert answers["experienceevent.example.1.json"] == (202, {"accepted": 1, "rejected": []})
    # a beacon entry into a point of interest
    assert answers["experienceevent.example.3.json"] == (202, {"accepted": 1, "rejected": []})
    # the Web SDK page view (no _id: a stable one is derived)
    assert answers["aep-web-sdk-experienceevent.example.1.json"][0] == 202
    # a media event nobody defined: rejected with the reason, not an error
    code, body = answers["experienceevent.example.4.json"]
    assert code == 400 and "no event definition" in body["rejected"][0]["reason"]
    # fragments and profiles are not events: refused with reasons, never a 5xx
    for name, (code, body) in answers.items():
        assert code in (202, 400), (name, code, body)
    code, profile, _ = http("GET", f"{system['url']}/v1/profiles/ECID/92312748749128")
    assert code == 200 and "ECID" in profile["identities"]


def test_the_system_is_healthy_after_bad_input(system: dict[str, Any]) -> None:
    code, body, _ = http("GET", f"{system['url']}/healthz")
    assert code == 200 and body["status"] == "ok"
    code, status, _ = http("GET", f"{system['url']}/v1/status")
    assert code == 200
    assert all("error" not in s for s in status["shards"]) and len(status["shards"]) == 2
    assert {g["name"] for g in status["gateways"]} == {"email", "loyalty", "limited", "flaky", "receipts"}
    # e-mail and receipts share the actor of their group (see tests/integration/system.py)
    assert {g["name"]: g["gateway"] for g in status["gateways"]} == {
        "email": "gateway-mail",
        "receipts": "gateway-mail",
        "loyalty": "gateway-loyalty",
        "limited": "gateway-limited",
        "flaky": "gateway-flaky",
    }
    actors = {a["name"] for a in status["gateway_actors"]}
    assert actors == {"gateway-mail", "gateway-loyalty", "gateway-limited", "gateway-flaky"}
    for shard in status["shards"]:
        assert set(shard["gateway_calls"]) <= actors  # a shard calls actors, not channels
        # Batches came on the shard's direct stream, not as Ray calls; no peer was refused.
        assert shard["stream"]["calls"] > 0 and shard["stream"]["refused"] == 0
        assert "token" not in shard["stream"]
    mail = next(a for a in status["gateway_actors"] if a["name"] == "gateway-mail")
    assert mail["stream"]["calls"] > 0 and mail["stream"]["refused"] == 0
    code, _, _ = http("GET", f"{system['url']}/v1/profiles/Email/nobody@example.com")
    assert code == 404
