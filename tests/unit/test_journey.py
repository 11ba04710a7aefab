"""The journey engine, driven with explicit times: entry, conditions, waits, timeouts,
outcomes, re-entrance; and the compiler's refusals."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from itinerary.engine.effects import ScheduleTimer, Send, StepEvent
from itinerary.engine.messages import outcome_for
from itinerary.errors import ConfigError
from tests.unit.journey_helpers import CART, WELCOME, catalog, event

T0 = 1_800_000_000.0


def kinds(effects: list[Any]) -> list[tuple[str, str]]:
    return [(e.node, e.kind) for e in effects if isinstance(e, StepEvent)]


def sends(effects: list[Any]) -> list[Send]:
    return [e for e in effects if isinstance(e, Send)]


def timers(effects: list[Any]) -> list[ScheduleTimer]:
    return [e for e in effects if isinstance(e, ScheduleTimer)]


def sent(send: Send, outcome: str = "sent", reason: str | None = None) -> dict[str, Any]:
    request = {
        "id": send.message_id,
        "channel": send.channel,
        "shard": 0,
        "profile": "Email:ann@example.com",
        "journey": send.journey,
        "instance": send.instance,
        "node": send.node,
    }
    return outcome_for(request, outcome, at=T0, reason=reason)


def test_welcome_entry_renders_and_sends_then_ends_on_sent() -> None:
    engine = catalog(WELCOME).engine()
    profile = engine.new_profile("Email:ann@example.com", T0)
    effects = engine.apply_event(profile, "registration", event("registration", 1), T0)
    assert effects is not None
    assert kinds(effects) == [("start", "entered"), ("send", "node"), ("send", "action")]
    [send] = sends(effects)
    assert send.channel == "email"
    assert send.payload == {"to": "ann@example.com", "subject": "Welcome Ann", "text": "Hi Ann", "html": None}
    assert send.message_id == "Email:ann@example.com/welcome/1/send/1"
    assert profile["journeys"]["welcome"]["st"] == "awaiting"
    # a throttled notice changes nothing; the final outcome moves it on
    assert engine.apply_outcome(profile, sent(send, "throttled"), T0 + 1) == []
    done = engine.apply_outcome(profile, sent(send), T0 + 2)
    assert kinds(done) == [("done", "node"), ("done", "exited")]
    assert "welcome" not in profile["journeys"]
    assert profile["hist"]["welcome"] == [1, T0 + 2]


def test_failed_outcome_takes_the_error_path_with_the_reason() -> None:
    engine = catalog(WELCOME).engine()
    profile = engine.new_profile("Email:ann@example.com", T0)
    [send] = sends(engine.apply_event(profile, "registration", event("registration", 1), T0) or [])
    effects = engine.apply_outcome(profile, sent(send, "failed", "capped: over 10/1s"), T0)
    assert kinds(effects) == [("send", "error"), ("failed", "node"), ("failed", "exited")]
    assert effects[0].reason == "failed: capped: over 10/1s"


def test_an_outcome_for_another_message_is_ignored() -> None:
    engine = catalog(WELCOME).engine()
    profile = engine.new_profile("Email:ann@example.com", T0)
    [send] = sends(engine.apply_event(profile, "registration", event("registration", 1), T0) or [])
    other = dict(sent(send), id="someone-else")
    assert engine.apply_outcome(profile, other, T0) == []
    assert profile["journeys"]["welcome"]["st"] == "awaiting"


def test_missing_recipient_takes_the_error_path() -> None:
    engine = catalog(WELCOME).engine()
    profile = engine.new_profile("Email:ann@example.com", T0)
    registration = event("registration", 1)
    del registration["personalEmail"]
    effects = engine.apply_event(profile, "registration", registration, T0) or []
    assert sends(effects) == []
    assert ("send", "error") in kinds(effects) and ("failed", "exited") in kinds(effects)


def test_purchase_before_the_timeout_sends_no_reminder() -> None:
    engine = catalog(CART).engine()
    profile = engine.new_profile("Email:ann@example.com", T0)
    effects = engine.apply_event(profile, "cart_add", event("cart_add", 1), T0) or []
    [timer] = timers(effects)
    assert timer.due == T0 + 1800
    bought = engine.apply_event(profile, "purchase", event("purchase", 2), T0 + 60) or []
    assert kinds(bought) == [("bought", "node"), ("bought", "exited")]
    # the timer still fires later, but it is stale: nothing happens
    assert engine.apply_timer(profile, "cart", timer.instance, "wait", timer.due, T0 + 1800) == []
    assert sends(bought) == []


def test_timeout_at_the_exact_instant_sends_the_reminder_to_the_email_branch() -> None:
    engine = catalog(CART).engine()
    profile = engine.new_profile("Email:ann@example.com", T0)
    engine.apply_event(profile, "registration", event("registration", 0), T0 - 5)  # gives an email
    [timer] = timers(engine.apply_event(profile, "cart_add", event("cart_add", 1), T0) or [])
    effects = engine.apply_timer(profile, "cart", timer.instance, "wait", timer.due, timer.due)
    assert kinds(effects)[:3] == [("wait", "timeout"), ("has_email", "node"), ("mail", "node")]
    [send] = sends(effects)
    assert send.payload["subject"] == "You left Trail shoes"


def test_else_branch_when_no_condition_matches() -> None:
    engine = catalog(CART).engine()
    profile = engine.new_profile("Email:ann@example.com", T0)
    [timer] = timers(engine.apply_event(profile, "cart_add", event("cart_add", 1), T0) or [])
    [send] = sends(engine.apply_timer(profile, "cart", timer.instance, "wait", timer.due, timer.due))
    assert send.channel == "push"
    assert send.payload == {"sku": "SKU-1", "who": "ann@example.com"}


def test_reentrance_waits_for_the_period_and_refuses_while_active() -> None:
    engine = catalog(CART).engine()
    profile = engine.new_profile("Email:ann@example.com", T0)
    engine.apply_event(profile, "cart_add", event("cart_add", 1), T0)
    busy = engine.apply_event(profile, "cart_add", event("cart_add", 2), T0 + 1) or []
    assert kinds(busy) == [("start", "discarded")] and busy[0].reason == "profile already in the journey"
    engine.apply_event(profile, "purchase", event("purchase", 3), T0 + 2)  # exits at T0 + 2
    early = engine.apply_event(profile, "cart_add", event("cart_add", 4), T0 + 2 + 599) or []
    assert early[0].reason == "within the re-entrance wait period"
    again = engine.apply_event(profile, "cart_add", event("cart_add", 5), T0 + 2 + 600) or []
    assert kinds(again)[0] == ("start", "entered")
    assert profile["journeys"]["cart"]["id"].endswith("/cart/2")


def test_no_reentrance_when_not_allowed() -> None:
    engine = catalog(WELCOME).engine()
    profile = engine.new_profile("Email:ann@example.com", T0)
    [send] = sends(engine.apply_event(profile, "registration", event("registration", 1), T0) or [])
    engine.apply_outcome(profile, sent(send), T0)
    refused = engine.apply_event(profile, "registration", event("registration", 2), T0 + 10**6) or []
    assert refused[0].reason == "re-entrance not allowed"


def test_duplicate_event_ids_are_ignored() -> None:
    engine = catalog(WELCOME).engine()
    profile = engine.new_profile("Email:ann@example.com", T0)
    assert engine.apply_event(profile, "registration", event("registration", 1), T0)
    assert engine.apply_event(profile, "registration", event("registration", 1), T0 + 1) is None


def test_wait_node_then_entry_condition() -> None:
    journey = {
        "id": "vip",
        "nodes": {
            "start": {
                "type": "entry",
                "event": "purchase",
                "condition": "event.productListItems[0].priceTotal > 50",
                "next": "pause",
            },
            "pause": {"type": "wait", "duration": "PT1H", "next": "thank"},
            "thank": {"type": "action", "channel": "push", "payload": {"kind": "'thanks'"}, "next": "end"},
            "end": {"type": "end"},
        },
    }
    engine = catalog(journey).engine()
    profile = engine.new_profile("Email:ann@example.com", T0)
    cheap = event("purchase", 1, productListItems=[{"priceTotal": 10}])
    assert engine.apply_event(profile, "purchase", cheap, T0) == []
    [timer] = timers(engine.apply_event(profile, "purchase", event("purchase", 2), T0) or [])
    assert timer.due == T0 + 3600
    assert engine.apply_timer(profile, "vip", timer.instance, "pause", timer.due - 1, T0 + 3599) == []
    [send] = sends(engine.apply_timer(profile, "vip", timer.instance, "pause", timer.due, T0 + 3600))
    assert send.payload == {"kind": "thanks"}


def test_action_without_outcome_times_out_to_the_error_path() -> None:
    engine = catalog(WELCOME).engine()
    profile = engine.new_profile("Email:ann@example.com", T0)
    effects = engine.apply_event(profile, "registration", event("registration", 1), T0) or []
    [timer] = timers(effects)
    late = engine.apply_timer(profile, "welcome", timer.instance, "send", timer.due, timer.due)
    assert ("send", "error") in kinds(late) and ("failed", "exited") in kinds(late)


def test_step_does_not_mutate_its_input_instance() -> None:
    from itinerary.engine import journey as jr

    cat = catalog(CART)
    [compiled] = cat.journeys
    profile: dict[str, Any] = {"identities": {}}
    instance, _ = jr.try_enter(
        compiled, jr.EventInput("cart_add", event("cart_add", 1)), profile, (0, None), False, "p", T0
    )
    assert instance is not None
    before = copy.deepcopy(instance)
    jr.step(compiled, instance, jr.TimerInput("wait", instance["due"]), profile, T0 + 1800)
    assert instance == before


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [
        (
            lambda j: j["nodes"]["wait"].update(on_timeout="nowhere"),
            "journeys[0].nodes.wait.on_timeout",
            "edge to unknown node 'nowhere'",
        ),
        (
            lambda j: j["nodes"].update(orphan={"type": "end"}),
            "journeys[0].nodes.orphan",
            "not reachable from the entry node",
        ),
        (lambda j: j["nodes"]["push"].update(channel="fax"), "journeys[0].nodes.push.channel", "unknown channel 'fax'"),
        (
            lambda j: j["nodes"]["start"].update(event="teleport"),
            "journeys[0].nodes.start.event",
            "unknown event 'teleport'",
        ),
        (
            lambda j: j["nodes"]["has_email"]["branches"][0].update(when="exists(profile.email"),
            "journeys[0].nodes.has_email.branches[0].when",
            "position",
        ),
        (
            lambda j: j["nodes"]["mail"]["message"].update(subject="{{ oops"),
            "journeys[0].nodes.mail.message",
            "template",
        ),
        (
            lambda j: j["nodes"]["has_email"].update(
                branches=[{"when": "false", "next": "has_email"}, {"when": "true", "next": "mail"}]
            ),
            "journeys[0].nodes.has_email",
            "loop without a wait",
        ),
        (
            lambda j: j["nodes"]["push"].update(payload=None, message={"subject": "s", "text": "t"}),
            "journeys[0].nodes.push",
            "custom action",
        ),
    ],
)
def test_compiler_refuses_broken_journeys(change: Any, path: str, reason: str) -> None:
    journey = copy.deepcopy(CART)
    change(journey)
    with pytest.raises(ConfigError) as err:
        catalog(journey)
    assert err.value.path == path
    assert reason in err.value.reason


def test_more_than_fifty_activities_is_refused() -> None:
    nodes: dict[str, Any] = {"start": {"type": "entry", "event": "purchase", "next": "w0"}}
    for i in range(50):
        nodes[f"w{i}"] = {"type": "wait", "duration": "PT1M", "next": f"w{i + 1}" if i < 49 else "end"}
    nodes["end"] = {"type": "end"}
    with pytest.raises(Exception, match="over the limit of 50"):
        catalog({"id": "long", "nodes": nodes})
