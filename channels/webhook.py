"""Webhook provider: one JSON HTTP call per send request, over a pooled aiohttp session."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from itinerary.channels.retry import DeliveryResult, classify_http
from itinerary.config.channels import WebhookChannelConfig
from itinerary.engine.messages import SendRequest
from itinerary.netpolicy import address_refusal, host_refusal

log = logging.getLogger(__name__)
DNS_TTL = 60  # seconds a host's addresses (and so the decision on them) are kept
# When the ingress accepted the event that led to this call (epoch seconds), so a
# receiver can measure event-to-delivery latency (the load tool does).
EVENT_TIME_HEADER = "X-Itinerary-Event-Time"


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
    """Delivers send requests to one HTTP endpoint with a bearer token and an idempotency key."""

    def __init__(
        self,
        config: WebhookChannelConfig,
        *,
        clock: Callable[[], float] = time.time,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._config = config
        self._clock = clock  # only to read HTTP-date Retry-After headers
        self._timeout = config.timeout.total_seconds()
        self._resolver = resolver  # None: aiohttp's default, made in start() (it needs a loop)
        self._owned_resolver: AbstractResolver | None = None
        self._session: aiohttp.ClientSession | None = None
        # The config refuses such URLs already; this also covers a config built without
        # validation. Address literals never reach the resolver, so they are judged here.
        host = urlsplit(config.url).hostname or ""
        reason = None if config.allow_private else host_refusal(host)
        self._refused = f"destination address not allowed: {host} ({reason})" if reason else None

    def __repr__(self) -> str:
        # The URL is safe to show: the config refuses credentials in it.
        return f"WebhookProvider({self._config.method} {self._config.url})"

    async def start(self) -> None:
        """Open the connection pool (max_connections connections to the endpoint)."""
        if self._session is not None:
            return
        headers: dict[str, str] = dict(self._config.headers)
        if self._config.token is not None:
            headers["Authorization"] = f"Bearer {self._config.token.get_secret_value()}"
        resolver = self._resolver or aiohttp.DefaultResolver()
        if self._resolver is None:
            self._owned_resolver = resolver  # the connector does not close a resolver it was given
        if not self._config.allow_private:
            resolver = PolicyResolver(resolver)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self._config.max_connections, resolver=resolver, ttl_dns_cache=DNS_TTL
            ),
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            headers=headers,
        )

    async def close(self) -> None:
        """Close the pool; in-flight calls fail."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        if self._owned_resolver is not None:
            resolver, self._owned_resolver = self._owned_resolver, None
            await resolver.close()

    async def deliver(self, request: SendRequest) -> DeliveryResult:
        """Make one attempt to deliver `request`; never raises for network or HTTP errors."""
        if self._session is None:
            raise RuntimeError("WebhookProvider.deliver() called before start()")
        if self._refused is not None:
            return DeliveryResult.permanent(self._refused)
        headers = {"Idempotency-Key": str(request["id"])}
        event_ts = request.get("event_ts")
        if event_ts is not None:
            headers[EVENT_TIME_HEADER] = f"{float(event_ts):.6f}"
        try:
            async with self._session.request(
                self._config.method,
                self._config.url,
                json=request["payload"],
                headers=headers,
                # A redirect could carry the bearer token to another host: treat it as final.
                allow_redirects=False,
            ) as response:
                await response.read()  # drain the body so the connection goes back to the pool
                return classify_http(response.status, response.headers.get("Retry-After"), self._clock())
        except TimeoutError:
            return DeliveryResult.transient(f"timeout after {self._timeout}s")
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, DestinationRefused):
                return DeliveryResult.permanent(str(exc.os_error))
            return DeliveryResult.transient(_connect_reason(exc))
        except aiohttp.ClientError as exc:
            # Exception texts from aiohttp name the URL at most, never request headers.
            return DeliveryResult.transient(f"http error: {type(exc).__name__}: {exc}"[:200])
        except (TypeError, ValueError) as exc:  # payload that is not JSON-serialisable
            return DeliveryResult.permanent(f"bad payload: {exc}"[:200])


def _connect_reason(exc: aiohttp.ClientConnectorError) -> str:
    where = f"{exc.host}:{exc.port}"
    if isinstance(exc.os_error, ConnectionRefusedError):
        return f"connection refused: {where}"
    detail: Any = exc.os_error.strerror or type(exc.os_error).__name__
    return f"cannot connect: {where} ({detail})"
