"""Classification of HTTP and SMTP answers, and the retry policy's delays."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from itinerary.channels.retry import (
    DeliveryResult,
    RetryPolicy,
    classify_http,
    classify_smtp,
    parse_retry_after,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("status", "ok", "retryable"),
    [
        (200, True, False),
        (201, True, False),
        (204, True, False),
        (301, False, False),
        (400, False, False),
        (401, False, False),
        (403, False, False),
        (404, False, False),
        (408, False, True),
        (422, False, False),
        (429, False, True),
        (500, False, True),
        (502, False, True),
        (503, False, True),
    ],
)
def test_classify_http(status: int, ok: bool, retryable: bool) -> None:
    result = classify_http(status, None, NOW)
    assert (result.ok, result.retryable, result.status) == (ok, retryable, status)
    assert result.reason == (None if ok else f"http {status}")
    assert result.retry_after is None


def test_429_retry_after_in_seconds() -> None:
    assert classify_http(429, "7", NOW).retry_after == 7.0
    assert classify_http(429, " 0 ", NOW).retry_after == 0.0


def test_429_retry_after_as_http_date() -> None:
    when = datetime.fromtimestamp(NOW + 30, tz=UTC)
    result = classify_http(429, format_datetime(when, usegmt=True), NOW)
    assert result.retryable
    assert result.retry_after == pytest.approx(30.0)


def test_503_honours_retry_after_too_and_past_dates_mean_now() -> None:
    past = format_datetime(datetime.fromtimestamp(NOW - 100, tz=UTC), usegmt=True)
    assert classify_http(503, past, NOW).retry_after == 0.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("soon", None), ("nan", None), ("-5", 0.0), ("1.5", 1.5)],
)
def test_parse_retry_after_edge_cases(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_classify_smtp() -> None:
    assert classify_smtp(250, "OK").ok
    soft = classify_smtp(451, "4.3.0 Try\r\n again later")
    assert soft.retryable and soft.status == 451 and soft.reason == "smtp 451 4.3.0 Try again later"
    hard = classify_smtp(550, "5.1.1 no such user")
    assert not hard.retryable and hard.reason == "smtp 550 5.1.1 no such user"


RETRYABLE = DeliveryResult.transient("http 503", 503)


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(max_retries=10, base=0.2, cap=1.0)
    delays = [policy.next_delay(attempt, RETRYABLE, jitter=1.0) for attempt in range(1, 6)]
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0])


def test_jitter_scales_the_delay_and_is_checked() -> None:
    policy = RetryPolicy()
    assert policy.next_delay(1, RETRYABLE, jitter=0.5) == pytest.approx(0.1)
    assert policy.next_delay(2, RETRYABLE, jitter=1.5) == pytest.approx(0.6)
    with pytest.raises(ValueError):
        policy.next_delay(1, RETRYABLE, jitter=2.0)
    with pytest.raises(ValueError):
        policy.next_delay(0, RETRYABLE, jitter=1.0)


def test_retries_are_exhausted_after_max_retries() -> None:
    policy = RetryPolicy(max_retries=3)
    assert policy.next_delay(3, RETRYABLE, jitter=1.0) is not None  # 3 attempts, 2 retries
    assert policy.next_delay(4, RETRYABLE, jitter=1.0) is None  # 1 attempt + 3 retries
    assert RetryPolicy(max_retries=0).next_delay(1, RETRYABLE, jitter=1.0) is None


def test_final_results_are_never_retried() -> None:
    policy = RetryPolicy()
    assert policy.next_delay(1, classify_http(401, None, NOW), jitter=1.0) is None
    assert policy.next_delay(1, classify_http(200, None, NOW), jitter=1.0) is None


def test_retry_after_is_the_delay_without_jitter() -> None:
    policy = RetryPolicy(cap=10.0)
    assert policy.next_delay(1, classify_http(429, "3", NOW), jitter=1.5) == 3.0
    # Beyond the backoff cap it is still honoured, up to 60 s.
    assert policy.next_delay(1, classify_http(429, "45", NOW), jitter=1.0) == 45.0
    assert policy.next_delay(1, classify_http(429, "3600", NOW), jitter=1.0) == 60.0
    assert RetryPolicy(cap=120.0).next_delay(1, classify_http(429, "90", NOW), 1.0) == 90.0
