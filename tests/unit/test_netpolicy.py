"""Which destinations custom actions may call, and the webhook config's `allow_private`."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from itinerary.config.channels import ChannelConfig, WebhookChannelConfig
from itinerary.netpolicy import address_refusal, host_refusal, parse_address

ADAPTER: TypeAdapter[Any] = TypeAdapter(ChannelConfig)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("169.254.1.1", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("0.0.0.0", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("febf::1", "link-local"),
        ("fd00:ec2::254", "cloud metadata"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("::ffff:0.0.0.0", "unspecified"),
        ("8.8.8.8", None),
        ("10.1.2.3", None),
        ("192.168.0.1", None),
        ("169.255.0.1", None),
        ("128.0.0.1", None),
        ("2001:db8::1", None),
        ("fec0::1", None),
        ("fd00:ec2::253", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_address_classification(address: str, reason: str | None) -> None:
    assert address_refusal(address) == reason


def test_address_refusal_wants_an_address() -> None:
    with pytest.raises(ValueError):
        address_refusal("example.com")


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("localhost", "loopback"),
        ("LOCALHOST.", "loopback"),
        ("api.localhost", "loopback"),
        ("metadata.google.internal", "cloud metadata"),
        ("metadata.google.internal.", "cloud metadata"),
        ("[::1]", "loopback"),
        ("127.1", "loopback"),  # the C resolver's short form of 127.0.0.1
        ("2130706433", "loopback"),
        ("0x7f.0.0.1", "loopback"),
        ("api.example.com", None),
        ("localhost.example.com", None),
        ("1e100.net", None),
        ("8.8.8.8", None),
    ],
)
def test_host_classification_without_dns(host: str, reason: str | None) -> None:
    assert host_refusal(host) == reason


def test_parse_address_tells_names_from_addresses() -> None:
    assert str(parse_address("[fe80::1%lo]")) == "fe80::1"
    assert parse_address("partner.example") is None
    assert parse_address("12.ab") is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8091/hook",
        "http://localhost/hook",
        "https://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[fd00:ec2::254]/",
        "http://0.0.0.0:80/",
        "http://[fe80::1]/",
    ],
)
def test_private_webhook_urls_are_refused_at_load_naming_the_field(url: str) -> None:
    with pytest.raises(ValidationError) as err:
        ADAPTER.validate_python({"type": "webhook", "url": url})
    error = err.value.errors()[0]
    assert error["loc"][-1] == "url"
    assert "allow_private" in error["msg"] and "refused" in error["msg"]


def test_allow_private_lets_a_local_receiver_through() -> None:
    config = ADAPTER.validate_python({"type": "webhook", "url": "http://127.0.0.1:8091/hook", "allow_private": True})
    assert isinstance(config, WebhookChannelConfig) and config.allow_private


def test_public_and_private_network_urls_need_no_flag() -> None:
    for url in ("https://partner.example/v1", "http://10.1.2.3:8000/hook", "https://8.8.8.8/"):
        config = ADAPTER.validate_python({"type": "webhook", "url": url})
        assert not config.allow_private
