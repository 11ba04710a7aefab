"""Config loading: the demo config, environment overrides, errors that name file and path."""

from __future__ import annotations

from pathlib import Path

import pytest

from itinerary.catalog import Catalog
from itinerary.config.loader import load_config
from itinerary.errors import ConfigError
from tests.conftest import DEMO_CONFIG

ENV = {"ITINERARY_DEMO_TOKEN": "demo-secret-token", "ITINERARY_INGEST_KEY": "ingest", "ITINERARY_ADMIN_KEY": "admin"}


def test_demo_config_loads_and_compiles() -> None:
    app = load_config(DEMO_CONFIG, env=ENV)
    catalog = Catalog.build(app, str(DEMO_CONFIG))
    assert {j.id for j in catalog.journeys} == {"welcome", "cart-abandonment", "store-offer"}
    assert app.runtime.shards == 2


def test_environment_overrides_reach_nested_keys_and_hyphenated_names() -> None:
    env = {
        **ENV,
        "ITINERARY__RUNTIME__SHARDS": "4",
        "ITINERARY__RUNTIME__INGRESS__PORT": "9999",
        "ITINERARY__CHANNELS__LOYALTY_API__URL": "http://10.1.2.3:8000/hook",
        "ITINERARY__JOURNEYS__0__STATUS": "closed",
    }
    app = load_config(DEMO_CONFIG, env=env)
    assert app.runtime.shards == 4
    assert app.runtime.ingress.port == 9999
    assert app.channels["loyalty-api"].url == "http://10.1.2.3:8000/hook"  # type: ignore[union-attr]
    assert app.journeys[0].status == "closed"


def test_secret_from_environment_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    app = load_config(DEMO_CONFIG, env=ENV)
    assert "demo-secret-token" not in repr(app)
    assert "demo-secret-token" not in app.model_dump_json()


def test_missing_secret_names_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ITINERARY_DEMO_TOKEN", raising=False)
    with pytest.raises(ConfigError) as err:
        load_config(DEMO_CONFIG, env={k: v for k, v in ENV.items() if k != "ITINERARY_DEMO_TOKEN"})
    assert err.value.path.startswith("channels.loyalty-api.")
    assert "ITINERARY_DEMO_TOKEN" in err.value.reason


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def test_invalid_duration_names_file_and_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
events: {buy: {rule: "event.eventType == 'x'"}}
journeys:
  - id: j
    nodes:
      start: {type: entry, event: buy, next: pause}
      pause: {type: wait, duration: PT1, next: end}
      end: {type: end}
""",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert err.value.file == str(path)
    assert err.value.path == "journeys[0].nodes.pause.wait.duration"
    assert str(path) in str(err.value)


def test_bad_rule_reports_the_position(tmp_path: Path) -> None:
    path = write(tmp_path, 'events: {buy: {rule: "event.eventType == "}}\n')
    app = load_config(path, env={})
    with pytest.raises(ConfigError) as err:
        Catalog.build(app, str(path))
    assert err.value.path == "events.buy.rule"
    assert "position" in err.value.reason


def test_unknown_keys_and_bad_yaml_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"runtime\.shardz"):
        load_config(write(tmp_path, "runtime: {shardz: 2}\n"), env={})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "runtime: [\n"), env={})


def test_reserved_profile_field_and_colon_namespace_are_refused_at_load() -> None:
    import pytest
    from pydantic import ValidationError

    from itinerary.config.events import EventDefinition

    with pytest.raises(ValidationError, match="cannot be a profile field"):
        EventDefinition(rule="true", profile_fields={"identities": "event.x"})
    with pytest.raises(ValidationError, match="without ':'"):
        EventDefinition(rule="true", namespace="Email:x")


def test_gateway_groups_place_channels_and_the_rest_get_an_actor_each() -> None:
    demo = load_config(DEMO_CONFIG, env=ENV)
    assert demo.gateway_hosts() == {"gateway-messages": ("email", "loyalty-api", "store-push")}
    app = load_config(DEMO_CONFIG, env={**ENV, "ITINERARY__RUNTIME__GATEWAY_GROUPS": "{}"})
    assert app.gateway_hosts() == {
        "gateway-email": ("email",),
        "gateway-loyalty-api": ("loyalty-api",),
        "gateway-store-push": ("store-push",),
    }
    grouped = load_config(
        DEMO_CONFIG, env={**ENV, "ITINERARY__RUNTIME__GATEWAY_GROUPS": "{apps: [store-push, loyalty-api]}"}
    )
    assert grouped.gateway_hosts() == {"gateway-apps": ("store-push", "loyalty-api"), "gateway-email": ("email",)}
    assert grouped.gateway_of() == {
        "store-push": "gateway-apps",
        "loyalty-api": "gateway-apps",
        "email": "gateway-email",
    }


@pytest.mark.parametrize(
    ("groups", "reason"),
    [
        ("{apps: [store-push, sms]}", "gateway group 'apps' names channels that are not configured: ['sms']"),
        ("{a: [email], b: [email, store-push]}", "channel 'email' is in gateway groups 'a' and 'b'"),
        ("{apps: []}", "gateway group 'apps' names no channel"),
        ("{'a b': [email]}", "gateway group name 'a b' must be letters, digits"),
        ("{email: [store-push]}", "gateway group 'email' has the name of channel 'email', which it does not hold"),
    ],
)
def test_bad_gateway_groups_are_refused_with_the_reason(groups: str, reason: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(DEMO_CONFIG, env={**ENV, "ITINERARY__RUNTIME__GATEWAY_GROUPS": groups})
    assert reason in str(error.value) and "demo.yaml" in str(error.value)
