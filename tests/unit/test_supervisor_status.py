"""The supervisor's status lists every channel, with the gateway actor that serves it,
even when that actor does not answer (no Ray needed: the aggregation is plain code)."""

from __future__ import annotations

from itinerary.config.loader import load_config
from itinerary.supervisors.supervisor import Supervisor
from tests.conftest import DEMO_CONFIG

ENV = {"ITINERARY_DEMO_TOKEN": "t", "ITINERARY_INGEST_KEY": "i", "ITINERARY_ADMIN_KEY": "a"}


def test_channels_of_a_silent_group_actor_are_listed_with_its_error() -> None:
    app = load_config(
        DEMO_CONFIG, env={**ENV, "ITINERARY__RUNTIME__GATEWAY_GROUPS": "{apps: [store-push, loyalty-api]}"}
    )
    supervisor = Supervisor(app)
    actors = [
        {"name": "gateway-apps", "error": "actor died"},
        {"name": "gateway-email", "channels": [{"name": "email", "queue_depth": 3}], "stalls": {}},
    ]
    assert supervisor._channel_stats(actors) == [
        {"name": "store-push", "gateway": "gateway-apps", "error": "actor died"},
        {"name": "loyalty-api", "gateway": "gateway-apps", "error": "actor died"},
        {"name": "email", "queue_depth": 3, "gateway": "gateway-email"},
    ]
