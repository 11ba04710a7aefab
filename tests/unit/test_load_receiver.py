"""The event-time header on deliveries, and how the load tool's receivers read it."""

from __future__ import annotations

from itinerary.channels.email import EVENT_TIME_HEADER, build_message
from itinerary.load.main import DEMO_CONFIG
from itinerary.load.receiver import ChannelNames, event_time_of_mail, idempotency_key_of_mail, journey_of, mail_header


def request(event_ts: float | None) -> dict[str, object]:
    return {
        "id": "Email:ann@example.com/welcome/1/send_welcome/1",
        "payload": {"to": "ann@example.com", "subject": "Welcome", "text": "Hi"},
        "event_ts": event_ts,
    }


def test_emails_carry_the_event_time_when_there_is_one() -> None:
    raw = build_message(request(1_795_945_573.125), "hello@outfitters.example")
    assert f"\r\n{EVENT_TIME_HEADER}: 1795945573.125000\r\n".encode() in raw
    assert event_time_of_mail(raw) == 1_795_945_573.125
    plain = build_message(request(None), "hello@outfitters.example")
    assert EVENT_TIME_HEADER.encode() not in plain and event_time_of_mail(plain) is None


def test_the_event_time_in_the_body_is_not_taken_for_the_header() -> None:
    raw = b"Subject: x\r\nFrom: a@b\r\n\r\nX-Itinerary-Event-Time: 12.5\r\n"
    assert event_time_of_mail(raw) is None


def test_journey_is_the_second_part_of_the_message_id() -> None:
    assert journey_of("Email:ann@example.com/cart-abandonment/3/remind_email/1") == "cart-abandonment"
    assert journey_of("not-a-message-id") is None and journey_of(None) is None


def test_channel_names_come_from_the_demo_config() -> None:
    names = ChannelNames.from_config(DEMO_CONFIG)
    assert names.of_mail(2525) == "email" and names.of_mail(2600) == "email"
    assert names.of_http("/v1/loyalty/members") == "loyalty-api"
    assert names.of_http("/v1/push/send") == "store-push"
    assert names.of_http("/other") == "http /other"
    assert ChannelNames.from_config("/nonexistent.yaml").of_mail(25) == "email"


def test_the_idempotency_key_is_read_from_the_header_block_only() -> None:
    raw = build_message(request(None), "hello@outfitters.example")
    assert idempotency_key_of_mail(raw) == "Email:ann@example.com/welcome/1/send_welcome/1"
    assert mail_header(b"X-Itinerary-Idempotency-Key: first\r\nSubject: x\r\n\r\n", b"X-Itinerary-Idempotency-Key")
    assert idempotency_key_of_mail(b"Subject: x\r\n\r\nX-Itinerary-Idempotency-Key: k\r\n") is None
