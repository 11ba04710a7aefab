"""Webhook provider: one JSON HTTP call per send request, over pooled keep-alive connections."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from itinerary.channels.http1 import ProtocolError, header_value_problem, request_head
from itinerary.channels.http_client import ConnectFailed, Http1Client, ServerDisconnected
from itinerary.channels.retry import DeliveryResult, classify_http
from itinerary.config.channels import WebhookChannelConfig
from itinerary.engine.messages import SendRequest
from itinerary.netpolicy import address_refusal, host_refusal

log = logging.getLogger(__name__)
DNS_TTL = 60  # seconds a host's addresses (and so the decision on them) are kept
# When the ingress accepted the event that led to this call (epoch seconds), so a
# receiver can measure event-to-delivery latency (the load tool does).
EVENT_TIME_HEADER = "X-Itinerary-Event-Time"
USER_AGENT = "itinerary-webhook/1"


class DestinationRefused(OSError):
    """A host resolved to an address that custom actions may not call."""


class PolicyResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses loopback, link-local, metadata
    and unspecified addresses.

    It sits inside the connector, so the addresses checked are the ones connected to: a
    DNS answer that changes between a check and the connection (rebinding) cannot slip
    through. The connector keeps accepted answers for DNS_TTL seconds; refusals are kept
    here as long, so a refused host is not looked up on every attempt.
    """

    def __init__(self, inner: AbstractResolver, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._inner = inner
        self._clock = clock
        self._refused: dict[str, tuple[float, str]] = {}

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        cached = self._refused.get(host)
        if cached is not None and cached[0] > self._clock():
            raise DestinationRefused(cached[1])
        answers = await self._inner.resolve(host, port, family)
        for answer in answers:
            reason = address_refusal(answer["host"])
            if reason is not None:
                text = f"destination address not allowed: {host} resolves to {answer['host']} ({reason})"
                self._refused[host] = (self._clock() + DNS_TTL, text)
                raise DestinationRefused(text)
        self._refused.pop(host, None)
        return answers

    async def close(self) -> None:
        await self._inner.close()


class WebhookProvider:
    """Delivers send requests to one HTTP endpoint with a bearer token and an idempotency key.

    Each call is `<method> <url>` with the request's payload as a JSON body, the channel's
    headers, `Authorization: Bearer <token>`, `Idempotency-Key: <message id>` and, when
    known, `X-Itinerary-Event-Time`. Redirects are final answers (a redirect could carry the
    token to another host). The answer's status and Retry-After decide the outcome
    (channels/retry.py); the transport is http_client.Http1Client.
    """

    def __init__(
        self,
        config: WebhookChannelConfig,
        *,
        clock: Callable[[], float] = time.time,
        resolver: AbstractResolver | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._config = config
        self._clock = clock  # only to read HTTP-date Retry-After headers
        self._timeout = config.timeout.total_seconds()
        self._resolver = resolver  # None: aiohttp's default, made in start() (it needs a loop)
        self._owned_resolver: AbstractResolver | None = None
        self._client: Http1Client | None = None
        parts = urlsplit(config.url)
        self._host = parts.hostname or ""
        self._https = parts.scheme == "https"
        self._port = parts.port or (443 if self._https else 80)
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._tls = tls
        # The config refuses such URLs already; this also covers a config built without
        # validation. Address literals never reach the resolver, so they are judged here.
        reason = None if config.allow_private else host_refusal(self._host)
        self._refused = f"destination address not allowed: {self._host} ({reason})" if reason else None
        self._fixed_headers = self._channel_headers(parts.netloc)

    def __repr__(self) -> str:
        # The URL is safe to show: the config refuses credentials in it.
        return f"WebhookProvider({self._config.method} {self._config.url})"

    def _channel_headers(self, netloc: str) -> list[tuple[str, str]]:
        """The headers every call carries; a refusal reason is set if one cannot be sent."""
        headers = [("Host", netloc), ("User-Agent", USER_AGENT), ("Accept", "*/*")]
        named = {name.lower() for name in self._config.headers}
        if "content-type" not in named:
            headers.append(("Content-Type", "application/json"))
        headers.extend(self._config.headers.items())
        if self._config.token is not None:
            headers.append(("Authorization", f"Bearer {self._config.token.get_secret_value()}"))
        for name, value in headers:
            problem = header_value_problem(value)
            if problem is not None and self._refused is None:
                # The value is a secret for Authorization: name the header, never the value.
                self._refused = f"header {name} {problem}"
        return headers

    async def start(self) -> None:
        """Prepare the connection pool (up to max_connections connections to the endpoint)."""
        if self._client is not None:
            return
        resolver = self._resolver or aiohttp.DefaultResolver()
        if self._resolver is None:
            self._owned_resolver = resolver
        if not self._config.allow_private:
            resolver = PolicyResolver(resolver)
        tls = self._tls
        if self._https and tls is None:
            tls = ssl.create_default_context()
        self._client = Http1Client(
            self._host,
            self._port,
            tls=tls if self._https else None,
            resolver=resolver,
            max_connections=self._config.max_connections,
        )

    async def close(self) -> None:
        """Close the pool; in-flight calls fail."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
        if self._owned_resolver is not None:
            resolver, self._owned_resolver = self._owned_resolver, None
            await resolver.close()

    async def deliver(self, request: SendRequest) -> DeliveryResult:
        """Make one attempt to deliver `request`; never raises for network or HTTP errors."""
        client = self._client
        if client is None:
            raise RuntimeError("WebhookProvider.deliver() called before start()")
        if self._refused is not None:
            return DeliveryResult.permanent(self._refused)
        try:
            body = json.dumps(request["payload"], separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:  # payload that is not JSON-serialisable
            return DeliveryResult.permanent(f"bad payload: {exc}"[:200])
        key = str(request["id"])
        if header_value_problem(key) is not None:
            return DeliveryResult.permanent("bad message id: contains a line break or NUL")
        headers = [*self._fixed_headers, ("Idempotency-Key", key), ("Content-Length", str(len(body)))]
        event_ts = request.get("event_ts")
        if event_ts is not None:
            headers.append((EVENT_TIME_HEADER, f"{float(event_ts):.6f}"))
        data = request_head(self._config.method, self._target, headers) + body
        try:
            async with asyncio.timeout(self._timeout):
                response = await client.request(data)
        except TimeoutError:
            return DeliveryResult.transient(f"timeout after {self._timeout}s")
        except DestinationRefused as exc:
            return DeliveryResult.permanent(str(exc))
        except ConnectFailed as exc:
            return DeliveryResult.transient(_connect_reason(exc))
        except ServerDisconnected as exc:
            return DeliveryResult.transient(f"http error: {exc}"[:200])
        except ProtocolError as exc:
            return DeliveryResult.transient(f"http error: bad response: {exc}"[:200])
        except OSError as exc:  # name resolution failed, or the connection broke mid-call
            return DeliveryResult.transient(f"http error: {type(exc).__name__}: {exc}"[:200])
        return classify_http(response.status, response.retry_after, self._clock())


def _connect_reason(exc: ConnectFailed) -> str:
    where = f"{exc.host}:{exc.port}"
    cause = exc.cause
    if isinstance(cause, ConnectionRefusedError):
        return f"connection refused: {where}"
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"cannot connect: {where} (certificate: {cause.verify_message})"
    detail: Any = getattr(cause, "strerror", None) or type(cause).__name__
    return f"cannot connect: {where} ({detail})"
