"""Journey instances keep only the event fields their journey's nodes read."""

from __future__ import annotations

from typing import Any

from itinerary.engine import journey as jr
from itinerary.engine.expressions import event_fields, mapping_event_fields
from itinerary.engine.templates import template_event_fields
from tests.unit.journey_helpers import CART, catalog, event


def test_expressions_name_the_top_level_event_keys_they_read() -> None:
    assert event_fields("event.web.webPageDetails.name == 'x' or exists(event['commerce'].order)") == {
        "web",
        "commerce",
    }
    assert event_fields("profile.email") == frozenset()
    assert event_fields("exists(event)") is None  # the whole event
    assert event_fields("event[profile.key]") is None  # a computed key: any of it
    assert mapping_event_fields({"sku": "event.productListItems[0].SKU", "who": ["profile.email"]}) == {
        "productListItems"
    }


def test_templates_name_the_top_level_event_keys_they_read() -> None:
    assert template_event_fields("You left {{ event.productListItems[0].name }}") == {"productListItems"}
    assert template_event_fields("{{ event['web'].webPageDetails.name }}") == {"web"}
    assert template_event_fields("{{ event }}") is None
    assert template_event_fields("{% for k in event %}{{ k }}{% endfor %}") is None
    assert template_event_fields("{{ event[k] }}") is None


def test_an_instance_keeps_only_what_later_nodes_read_and_still_renders_them() -> None:
    cart = catalog(CART).journeys[0]
    assert cart.event_fields is not None and "productListItems" in cart.event_fields
    added = event("cart_add", 1)
    added["environment"] = {"browserDetails": {"userAgent": "x" * 500}}  # read by no node
    instance, _ = jr.try_enter(cart, jr.EventInput("cart_add", added), {}, (0, None), False, "Email:a", 0.0)
    assert instance is not None
    kept: dict[str, Any] = instance["ev"]
    assert "environment" not in kept and kept["productListItems"] == added["productListItems"]
    # the reminder, rendered from the kept event after the wait, names the product
    _, effects = jr.step(cart, instance, jr.TimerInput("wait", instance["due"]), {"email": "a@x.example"}, 3600.0)
    sends = [e for e in effects if isinstance(e, jr.Send)]
    assert sends and added["productListItems"][0]["name"] in sends[0].payload["subject"]
