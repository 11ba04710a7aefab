"""Webhook provider: one JSON HTTP call per send request, over a pooled aiohttp session."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from itinerary.channels.retry import DeliveryResult, classify_http
from itinerary.config.channels import WebhookChannelConfig
from itinerary.engine.messages import SendRequest

log = logging.getLogger(__name__)


class WebhookProvider:
    """Delivers send requests to one HTTP endpoint with a bearer token and an idempotency key."""

    def __init__(self, config: WebhookChannelConfig, *, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._clock = clock  # only to read HTTP-date Retry-After headers
        self._timeout = config.timeout.total_seconds()
        self._session: aiohttp.ClientSession | None = None

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
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._config.max_connections),
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            headers=headers,
        )

    async def close(self) -> None:
        """Close the pool; in-flight calls fail."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def deliver(self, request: SendRequest) -> DeliveryResult:
        """Make one attempt to deliver `request`; never raises for network or HTTP errors."""
        if self._session is None:
            raise RuntimeError("WebhookProvider.deliver() called before start()")
        try:
            async with self._session.request(
                self._config.method,
                self._config.url,
                json=request["payload"],
                headers={"Idempotency-Key": str(request["id"])},
                # A redirect could carry the bearer token to another host: treat it as final.
                allow_redirects=False,
            ) as response:
                await response.read()  # drain the body so the connection goes back to the pool
                return classify_http(response.status, response.headers.get("Retry-After"), self._clock())
        except TimeoutError:
            return DeliveryResult.transient(f"timeout after {self._timeout}s")
        except aiohttp.ClientConnectorError as exc:
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
