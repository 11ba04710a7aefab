"""Channel configuration: one gateway per channel, a webhook endpoint or an SMTP relay.

Durations are ISO-8601 (`PT1S`, `PT6H`) or seconds. Secrets (`token`, `password`) are
written as `{env: NAME}` or `{file: PATH}` and stay masked in repr, str and JSON dumps.
"""

from __future__ import annotations

from datetime import timedelta
from email.utils import parseaddr
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from itinerary.channels.http1 import header_value_problem, is_token
from itinerary.channels.retry import RetryPolicy
from itinerary.config.runtime import Frozen
from itinerary.config.secrets import Secret
from itinerary.engine.circuit import CircuitSettings
from itinerary.engine.ratelimit import Rate
from itinerary.netpolicy import host_refusal

MAX_CONNECTIONS = 400  # the reference product's ceiling per endpoint


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0 s")
    return value


class LimitConfig(Frozen):
    """A channel's throughput limit: queue over the limit (throttle) or refuse (cap)."""

    calls: int = Field(gt=0)
    period: timedelta
    burst: int = Field(1, ge=1)
    mode: Literal["throttle", "cap"] = "throttle"
    max_age: timedelta = Field(timedelta(hours=6), description="throttle mode: queued messages older than this expire")

    _period_positive = field_validator("period", "max_age")(_positive)

    def rate(self) -> Rate:
        """The limiter's view of this limit."""
        return Rate(calls=self.calls, period=self.period.total_seconds(), burst=self.burst)


class RetryConfig(Frozen):
    """How often and how patiently a failed delivery is tried again."""

    max_retries: int = Field(3, ge=0, le=3)
    backoff: timedelta = timedelta(milliseconds=200)
    max_backoff: timedelta = timedelta(seconds=10)

    _backoff_positive = field_validator("backoff", "max_backoff")(_positive)

    @model_validator(mode="after")
    def _ordered(self) -> RetryConfig:
        if self.max_backoff < self.backoff:
            raise ValueError("max_backoff must be at least backoff")
        return self

    def policy(self) -> RetryPolicy:
        """The gateway's retry policy for this config."""
        return RetryPolicy(
            max_retries=self.max_retries,
            base=self.backoff.total_seconds(),
            cap=self.max_backoff.total_seconds(),
        )


class CircuitConfig(Frozen):
    """When a channel stops calling an endpoint whose calls get no answer, and for how long.

    Only attempts that got no answer at all (a timeout, a refused or broken connection)
    count as failures; an HTTP or SMTP error answer does not. See itinerary/engine/circuit.py.
    """

    enabled: bool = True
    window: int = Field(20, ge=1, le=1000, description="how many recent attempts are judged")
    min_calls: int = Field(10, ge=1, description="attempts in the window before it may open")
    failure_ratio: float = Field(0.5, gt=0, le=1, description="share of unanswered attempts that opens it")
    open_for: timedelta = Field(timedelta(seconds=30), description="how long no call is made once open")
    probes: int = Field(1, ge=1, le=100, description="calls let through when half-open")

    _open_for_positive = field_validator("open_for")(_positive)

    @model_validator(mode="after")
    def _min_calls_fit(self) -> CircuitConfig:
        if self.min_calls > self.window:
            raise ValueError("min_calls must not exceed window")
        return self

    def settings(self) -> CircuitSettings:
        """The breaker's view of this config."""
        return CircuitSettings(
            window=self.window,
            min_calls=self.min_calls,
            failure_ratio=self.failure_ratio,
            open_for=self.open_for.total_seconds(),
            probes=self.probes,
        )


class ChannelBase(Frozen):
    """Settings every channel gateway has: timeout, limit, connections, queue, retries, breaker."""

    # A secret mistakenly written inline must not be echoed by the validation error.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    timeout: timedelta = Field(timedelta(seconds=10), description="per delivery attempt")
    limit: LimitConfig | None = None
    max_connections: int = Field(50, ge=1, le=MAX_CONNECTIONS)
    queue_size: int = Field(10_000, ge=1)
    retry: RetryConfig = RetryConfig()
    circuit: CircuitConfig = CircuitConfig()

    @field_validator("timeout")
    @classmethod
    def _timeout_bounds(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(seconds=30):
            raise ValueError("timeout must be between 1 s and 30 s")
        return value


# Headers the webhook client writes itself: a second copy would make the request ambiguous.
_FRAMING_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "upgrade", "te"})


class WebhookChannelConfig(ChannelBase):
    """A third-party HTTP endpoint (custom action) called with a JSON body.

    Loopback, link-local, cloud-metadata and unspecified destinations are refused, here
    for the URL's host and at delivery for every address it resolves to, unless
    `allow_private` is set (local receivers in demos and tests).
    """

    type: Literal["webhook"]
    # Declared before `url` so that the url's validator sees it.
    allow_private: bool = Field(
        False, description="allow loopback, link-local and metadata destinations (local receivers only)"
    )
    url: str
    method: Literal["POST", "PUT"] = "POST"
    token: Secret | None = Field(None, description="sent as Authorization: Bearer <token>")
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be an http:// or https:// URL with a host, got {value!r}")
        # Credentials in the URL would show up in logs and dumps; the token field is masked.
        if parts.username is not None or parts.password is not None:
            raise ValueError("url must not carry credentials; use `token`")
        return value

    @field_validator("url")
    @classmethod
    def _public_destination(cls, value: str, info: ValidationInfo) -> str:
        host = urlsplit(value).hostname or ""
        reason = host_refusal(host)
        if reason is not None and not info.data.get("allow_private", False):
            raise ValueError(
                f"url host {host!r} is a {reason} address, refused for a custom action; "
                "set `allow_private: true` on the channel to call a local receiver"
            )
        return value

    @field_validator("headers")
    @classmethod
    def _no_auth_header(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if name.lower() in ("authorization", "idempotency-key"):
                raise ValueError(f"header {name!r} is set by the gateway; use `token` for auth")
            if name.lower() in _FRAMING_HEADERS:
                raise ValueError(f"header {name!r} is set by the gateway: it frames the request")
            if not is_token(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP field name")
            if header_value_problem(text) is not None:
                raise ValueError(f"header {name!r} contains a line break or NUL")
        return value


class EmailChannelConfig(ChannelBase):
    """An SMTP relay that the gateway hands messages to."""

    type: Literal["email"]
    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    username: str | None = None
    password: Secret | None = None
    starttls: bool = False
    use_tls: bool = False
    sender: str = Field(description="the From address")
    max_connections: int = Field(4, ge=1, le=MAX_CONNECTIONS)

    @field_validator("sender")
    @classmethod
    def _address(cls, value: str) -> str:
        # It goes into the From header and MAIL FROM as is: no SMTPUTF8, no RFC 2047.
        address = parseaddr(value)[1]
        unsafe = any(ch in value for ch in "\r\n") or any(ch in address for ch in "<> ")
        if not value.isascii() or "@" not in address or unsafe:
            raise ValueError(f"sender must be an ASCII e-mail address (Name <user@host> is fine), got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> EmailChannelConfig:
        if self.starttls and self.use_tls:
            raise ValueError("choose one of starttls (upgrade) and use_tls (TLS from the start)")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


ChannelConfig = Annotated[WebhookChannelConfig | EmailChannelConfig, Field(discriminator="type")]
"""Any channel's config; `type` picks the model."""
