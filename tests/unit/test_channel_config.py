"""Channel config models: valid shapes, refusals with useful messages, and masked secrets."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from itinerary.config.channels import (
    ChannelConfig,
    EmailChannelConfig,
    LimitConfig,
    RetryConfig,
    WebhookChannelConfig,
)
from itinerary.engine.ratelimit import Rate

ADAPTER: TypeAdapter[ChannelConfig] = TypeAdapter(ChannelConfig)
SECRET = "s3cr3t-t0ken-value"


def webhook(**fields: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": "https://api.example.com/send", **fields}


def test_minimal_webhook_has_the_documented_defaults() -> None:
    config = ADAPTER.validate_python(webhook())
    assert isinstance(config, WebhookChannelConfig)
    assert config.method == "POST"
    assert config.token is None and config.limit is None and config.headers == {}
    assert config.timeout == timedelta(seconds=10)
    assert config.max_connections == 50 and config.queue_size == 10_000
    assert config.retry == RetryConfig()
    assert config.retry.policy().max_retries == 3


def test_full_webhook_with_limit() -> None:
    config = ADAPTER.validate_python(
        webhook(
            method="PUT",
            headers={"X-Tenant": "acme"},
            timeout="PT2S",
            limit={"calls": 200, "period": "PT1S", "burst": 20, "mode": "cap"},
            max_connections=400,
            queue_size=5,
            retry={"max_retries": 1, "backoff": "PT0.5S", "max_backoff": "PT5S"},
        )
    )
    assert isinstance(config, WebhookChannelConfig)
    assert config.limit is not None
    assert config.limit.rate() == Rate(calls=200, period=1.0, burst=20)
    assert config.limit.mode == "cap"
    assert config.limit.max_age == timedelta(hours=6)
    assert config.retry.policy().base == 0.5


def test_minimal_email_defaults() -> None:
    config = ADAPTER.validate_python({"type": "email", "sender": "news@example.com"})
    assert isinstance(config, EmailChannelConfig)
    assert (config.host, config.port, config.max_connections) == ("127.0.0.1", 25, 4)
    assert not config.starttls and not config.use_tls


def test_limit_in_seconds_and_hours() -> None:
    limit = LimitConfig.model_validate({"calls": 50_000, "period": "PT1H"})
    assert limit.rate().interval == pytest.approx(0.072)
    assert LimitConfig.model_validate({"calls": 5, "period": 0.5}).rate().period == 0.5


def errors_of(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        ADAPTER.validate_python(data)
    return str(info.value)


def test_unknown_or_missing_type_is_refused() -> None:
    assert "does not match any of the expected tags" in errors_of({"type": "sms", "url": "x"})
    assert "Unable to extract tag using discriminator" in errors_of({"url": "http://x"})


def test_fields_of_the_other_type_are_refused() -> None:
    assert "Extra inputs are not permitted" in errors_of(webhook(sender="a@b.c"))


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "example.com/x", "http://", "https://user:pw@example.com/x"],
)
def test_bad_urls(url: str) -> None:
    assert "url" in errors_of(webhook(url=url))


def test_period_must_be_positive() -> None:
    assert "longer than 0 s" in errors_of(webhook(limit={"calls": 10, "period": "PT0S"}))
    assert "greater than 0" in errors_of(webhook(limit={"calls": 0, "period": "PT1S"}))


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"max_connections": 401}, "less than or equal to 400"),
        ({"max_connections": 0}, "greater than or equal to 1"),
        ({"timeout": "PT31S"}, "between 1 s and 30 s"),
        ({"retry": {"max_retries": 4}}, "less than or equal to 3"),
        ({"retry": {"backoff": "PT2S", "max_backoff": "PT1S"}}, "at least backoff"),
        ({"queue_size": 0}, "greater than or equal to 1"),
        ({"headers": {"Authorization": "Basic abc"}}, "use `token`"),
        ({"headers": {"Content-Length": "10"}}, "it frames the request"),
        ({"headers": {"transfer-encoding": "chunked"}}, "it frames the request"),
        ({"headers": {"X Tenant": "acme"}}, "not a valid HTTP field name"),
        ({"headers": {"X-Tenant": "acme\r\nX-Injected: 1"}}, "line break or NUL"),
        ({"headers": {"X-Tenant": "acme\x00"}}, "line break or NUL"),
    ],
)
def test_bounds(fields: dict[str, Any], text: str) -> None:
    assert text in errors_of(webhook(**fields))


def test_email_consistency() -> None:
    base = {"type": "email", "sender": "a@example.com"}
    assert "choose one" in errors_of({**base, "starttls": True, "use_tls": True})
    assert "go together" in errors_of({**base, "username": "bob"})
    assert "e-mail address" in errors_of({**base, "sender": "nobody"})
    # The sender goes into MAIL FROM and the From header as it is: ASCII, one address.
    assert "ASCII e-mail address" in errors_of({**base, "sender": "Zoë <news@example.com>"})
    assert ADAPTER.validate_python({**base, "sender": "News <news@example.com>"}).sender == "News <news@example.com>"


def test_secrets_come_from_env_and_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ITINERARY_TEST_TOKEN", SECRET)
    config = ADAPTER.validate_python(webhook(token={"env": "ITINERARY_TEST_TOKEN"}))
    assert isinstance(config, WebhookChannelConfig)
    assert config.token is not None and config.token.get_secret_value() == SECRET
    for shown in (repr(config), str(config), config.model_dump_json(), str(config.model_dump())):
        assert SECRET not in shown

    monkeypatch.setenv("ITINERARY_TEST_PASSWORD", SECRET)
    email = ADAPTER.validate_python(
        {
            "type": "email",
            "sender": "a@example.com",
            "username": "bob",
            "password": {"env": "ITINERARY_TEST_PASSWORD"},
        }
    )
    assert SECRET not in repr(email) and SECRET not in email.model_dump_json()


def test_secret_from_file(tmp_path: Any) -> None:
    path = tmp_path / "token"
    path.write_text(SECRET + "\n", encoding="utf-8")
    config = ADAPTER.validate_python(webhook(token={"file": str(path)}))
    assert isinstance(config, WebhookChannelConfig)
    assert config.token is not None and config.token.get_secret_value() == SECRET


def test_inline_or_missing_secrets_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as info:
        WebhookChannelConfig.model_validate(webhook(token=SECRET))
    assert "not inline" in str(info.value)
    assert SECRET not in str(info.value)  # the refused input is not echoed
    monkeypatch.delenv("ITINERARY_NOT_SET", raising=False)
    assert "ITINERARY_NOT_SET is not set" in errors_of(webhook(token={"env": "ITINERARY_NOT_SET"}))


def test_configs_are_frozen() -> None:
    config = ADAPTER.validate_python(webhook())
    with pytest.raises(ValidationError):
        config.url = "http://other"  # type: ignore[misc]
