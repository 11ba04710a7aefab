"""What one delivery attempt gave, whether it is worth retrying, and when.

Providers turn protocol answers into a `DeliveryResult` with the classifiers here; the
gateway asks a `RetryPolicy` for the delay before the next attempt, and feeds each result
to its circuit breaker (`unanswered` failures count against the endpoint). All pure: time
comes in as arguments and jitter is supplied by the caller (a seeded RNG in tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime

# A server may ask for a longer pause than our backoff cap; honour it, but only up to this
# so that one endpoint cannot park a message (and its connection slot) for hours.
RETRY_AFTER_LIMIT = 60.0

# 401/403/404 mean the call itself is wrong (credentials, permissions, address): sending it
# again cannot help, and the reference product never retries them.
NEVER_RETRIED = frozenset({401, 403, 404})


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The outcome of one delivery attempt: success, or a failure that may be retried."""

    ok: bool
    status: int | None
    retryable: bool
    retry_after: float | None
    reason: str | None

    @property
    def unanswered(self) -> bool:
        """A failure without any answer from the provider: a timeout, or a connection that
        was refused, could not be made or broke. Circuit breakers count these and only these;
        an error *answer* (5xx, 429, SMTP 4xx) shows the endpoint is there and talking."""
        return not self.ok and self.retryable and self.status is None

    @property
    def unjudged(self) -> bool:
        """A failure decided on our side before the provider saw the call (a payload that
        cannot be sent, a refused destination, a provider bug): it says nothing about the
        endpoint, so a circuit breaker ignores it."""
        return not self.ok and not self.retryable and self.status is None

    @classmethod
    def delivered(cls, status: int | None) -> DeliveryResult:
        """A successful attempt."""
        return cls(ok=True, status=status, retryable=False, retry_after=None, reason=None)

    @classmethod
    def transient(cls, reason: str, status: int | None = None) -> DeliveryResult:
        """A failure worth retrying (network error, timeout, server busy)."""
        return cls(ok=False, status=status, retryable=True, retry_after=None, reason=reason)

    @classmethod
    def permanent(cls, reason: str, status: int | None = None) -> DeliveryResult:
        """A failure that another attempt would repeat (bad request, refused recipient)."""
        return cls(ok=False, status=status, retryable=False, retry_after=None, reason=reason)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive one is read as such
            return None
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def classify_http(status: int, retry_after_header: str | None, now: float) -> DeliveryResult:
    """Classify an HTTP response status: 2xx delivered, 429/5xx retryable, other 4xx final.

    408 (the server gave up waiting for our request) is retried like a network timeout.
    3xx is final: redirects are not followed, so a bearer token never leaves for another host.
    """
    reason = f"http {status}"
    if 200 <= status < 300:
        return DeliveryResult.delivered(status)
    if status in NEVER_RETRIED:
        return DeliveryResult.permanent(reason, status)
    if status == 429 or 500 <= status < 600:
        # 429 and 503 are the statuses RFC 9110 pairs with Retry-After.
        wait = parse_retry_after(retry_after_header, now) if status in (429, 503) else None
        return DeliveryResult(ok=False, status=status, retryable=True, retry_after=wait, reason=reason)
    if status == 408:
        return DeliveryResult.transient(reason, status)
    return DeliveryResult.permanent(reason, status)


def classify_smtp(code: int, message: str) -> DeliveryResult:
    """Classify an SMTP reply: 2xx delivered, 4xx (transient) retryable, 5xx final."""
    text = " ".join(message.split())[:200]  # one line, bounded: it ends up in outcomes
    reason = f"smtp {code} {text}".rstrip()
    if 200 <= code < 300:
        return DeliveryResult.delivered(code)
    if 400 <= code < 500:
        return DeliveryResult.transient(reason, code)
    return DeliveryResult.permanent(reason, code)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with caller-supplied jitter, a retry budget and Retry-After."""

    max_retries: int = 3
    base: float = 0.2
    cap: float = 10.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if not (self.base > 0 and self.cap >= self.base):
            raise ValueError(f"need 0 < base <= cap, got base={self.base} cap={self.cap}")

    def next_delay(self, attempt: int, result: DeliveryResult, jitter: float) -> float | None:
        """Seconds before the next attempt, or None when there must be no other attempt.

        `attempt` counts the attempts already made (1 after the first); `jitter` is a factor
        in [0.5, 1.5] that spreads retries of many messages apart. A Retry-After from the
        server is used as is (no jitter), up to `max(cap, RETRY_AFTER_LIMIT)` seconds.
        """
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt}")
        if not 0.5 <= jitter <= 1.5:
            raise ValueError(f"jitter must be in [0.5, 1.5], got {jitter}")
        if result.ok or not result.retryable or attempt > self.max_retries:
            return None
        if result.retry_after is not None:
            return min(result.retry_after, max(self.cap, RETRY_AFTER_LIMIT))
        return min(self.cap, self.base * 2.0 ** (attempt - 1)) * jitter
