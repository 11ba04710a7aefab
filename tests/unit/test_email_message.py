"""The hand-written RFC 5322 message parses back to what the journey rendered."""

from __future__ import annotations

import email
import email.policy
from email.header import decode_header, make_header

import pytest

from itinerary.channels.email import IDEMPOTENCY_HEADER, build_message, message_id_for


def request(**payload: object) -> dict[str, object]:
    base = {"to": "ann@example.com", "subject": "Hello", "text": "Hi Ann"}
    return {"id": "Email:ann@example.com/welcome/1/send/1", "payload": {**base, **payload}}


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def test_plain_text_message_round_trips() -> None:
    msg = parse(build_message(request(), "Shop <shop@example.com>"))
    assert msg["From"] == "Shop <shop@example.com>"
    assert msg["To"] == "ann@example.com"
    assert msg["Subject"] == "Hello"
    assert msg["Message-ID"] == message_id_for("Email:ann@example.com/welcome/1/send/1")
    assert msg[IDEMPOTENCY_HEADER] == "Email:ann@example.com/welcome/1/send/1"
    assert msg.get_content().strip() == "Hi Ann"


def test_unicode_subject_and_html_alternative() -> None:
    raw = build_message(
        request(subject="Bienvenue Zoë — 10 % offerts", text="Déjà là ?", html="<p>Déjà <b>là</b> ?</p>"),
        "shop@example.com",
    )
    msg = parse(raw)
    assert str(make_header(decode_header(msg["Subject"]))) == "Bienvenue Zoë — 10 % offerts"
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and plain.get_content().strip() == "Déjà là ?"
    assert html is not None and "<b>là</b>" in html.get_content()


@pytest.mark.parametrize("to", ["no-at-sign", "a@b.c\r\nBcc: victim@example.com", "x@y.z, other@y.z", ""])
def test_header_injection_and_bad_recipients_are_refused(to: str) -> None:
    with pytest.raises(ValueError, match="invalid recipient"):
        build_message(request(to=to), "shop@example.com")


def test_newlines_in_the_subject_cannot_add_headers() -> None:
    msg = parse(build_message(request(subject="Hi\r\nBcc: victim@example.com"), "shop@example.com"))
    assert msg["Bcc"] is None
