"""The load tool's receivers: the demo channels' endpoints, timing every message they get.

They are the project's `SmtpReceiver` and `WebhookReceiver` (real aiosmtpd and aiohttp
servers), extended to read the `X-Itinerary-Event-Time` header the gateways add to each
delivery (see channels/webhook.py and channels/email.py) and to record arrival minus that
time: the event-to-delivery latency, per channel and per journey, in a DeliveryStats.

The journey is the second component of a message's idempotency key,
`<profile key>/<journey>/<entry>/<node>/<k>` (itinerary/engine/journey.py). Channels are
named from a config file when given (the demo's by default): an HTTP path or an SMTP port
maps to the channel that points there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from aiohttp import web

from itinerary.channels.email import EVENT_TIME_HEADER as MAIL_EVENT_TIME
from itinerary.channels.webhook import EVENT_TIME_HEADER as HTTP_EVENT_TIME
from itinerary.load.stats import DeliveryStats
from itinerary.receivers import ReceivedMail, SmtpReceiver, WebhookReceiver

__all__ = [
    "ChannelNames",
    "DeliveryReceivers",
    "LatencySmtpReceiver",
    "LatencyWebhookReceiver",
    "event_time_of_mail",
    "journey_of",
]

OnDelivery = Callable[[str, str | None, float, float | None], None]  # (path, key, arrived, event_ts)
POLL = 0.2  # seconds between reads of the SMTP thread's new messages


def journey_of(message_id: str | None) -> str | None:
    """The journey id in `<profile key>/<journey>/<entry>/<node>/<k>`; None if not that shape."""
    if not message_id:
        return None
    parts = message_id.split("/")
    return parts[1] if len(parts) >= 5 else None


def _float(text: str | bytes | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


_MAIL_HEADER = b"\r\n" + MAIL_EVENT_TIME.encode() + b":"


def event_time_of_mail(raw: bytes) -> float | None:
    """The X-Itinerary-Event-Time of a raw message, read without a full header parse."""
    end = raw.find(b"\r\n\r\n")
    headers = raw[: end if end != -1 else len(raw)]
    at = headers.find(_MAIL_HEADER)
    if at == -1:
        return None
    start = at + len(_MAIL_HEADER)
    stop = headers.find(b"\r\n", start)
    return _float(headers[start : stop if stop != -1 else len(headers)].strip())


class LatencyWebhookReceiver(WebhookReceiver):
    """A WebhookReceiver that reports each accepted call's event time to `on_delivery`.

    It keeps no request records (the base class's `received` and `requests` lists would
    grow for the whole run); idempotency keys are still counted, so `duplicates` works.
    """

    def __init__(self, token: str | None, host: str, port: int, *, on_delivery: OnDelivery) -> None:
        super().__init__(token, host, port)
        self._on_delivery = on_delivery

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        response = await super()._handle(request)
        self.requests.clear()
        return response

    async def _answer(self, request: web.Request, arrived: float) -> web.Response:
        response = await super()._answer(request, arrived)
        if response.status == 200:
            self.received.clear()
            self._on_delivery(
                request.path,
                request.headers.get("Idempotency-Key"),
                arrived,
                _float(request.headers.get(HTTP_EVENT_TIME)),
            )
        return response


class LatencySmtpReceiver(SmtpReceiver):
    """An SmtpReceiver whose new messages can be taken away (and so are not kept)."""

    def take(self) -> list[ReceivedMail]:
        """The messages accepted since the previous call, oldest first."""
        handler = self._handler
        with handler.lock:
            mails, handler.messages = handler.messages, []
        return mails


@dataclass
class ChannelNames:
    """Names the channel a delivery came through, from where it arrived."""

    smtp: dict[int, str] = field(default_factory=dict)  # SMTP port -> email channel
    http: dict[str, str] = field(default_factory=dict)  # URL path -> webhook channel

    @classmethod
    def from_config(cls, path: str | Path | None) -> ChannelNames:
        """Read the channels of a config file (plain YAML; no secrets are resolved)."""
        names = cls()
        if path is None:
            return names
        try:
            config = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError):
            return names
        for name, channel in (config.get("channels") or {}).items():
            if not isinstance(channel, dict):
                continue
            if channel.get("type") == "email":
                names.smtp[int(channel.get("port", 25))] = str(name)
            elif channel.get("type") == "webhook" and channel.get("url"):
                names.http[urlsplit(str(channel["url"])).path or "/"] = str(name)
        return names

    def of_mail(self, port: int) -> str:
        if port in self.smtp:
            return self.smtp[port]
        # Receivers moved to another port: with one email channel there is no doubt.
        return next(iter(self.smtp.values())) if len(self.smtp) == 1 else "email"

    def of_http(self, path: str) -> str:
        return self.http.get(path, f"http {path}")


class DeliveryReceivers:
    """Runs an SMTP and an HTTP receiver and fills a DeliveryStats from what they get.

    The webhook receiver runs on the caller's event loop, the SMTP one in its own thread;
    its messages are collected every POLL seconds (arrival times are taken on arrival, so
    the polling adds nothing to the latencies).
    """

    def __init__(
        self,
        host: str,
        smtp_port: int,
        http_port: int,
        *,
        token: str | None,
        names: ChannelNames | None = None,
        stats: DeliveryStats | None = None,
    ) -> None:
        self.names = names or ChannelNames()
        self.stats = stats or DeliveryStats(time.time())
        self.smtp = LatencySmtpReceiver(host, smtp_port)
        self.http = LatencyWebhookReceiver(token, host, http_port, on_delivery=self._http_delivery)
        self._poller: asyncio.Task[None] | None = None

    def describe(self) -> str:
        return f"SMTP {self.smtp.host}:{self.smtp.port}, HTTP {self.http.url}"

    async def start(self) -> None:
        """Listen on both ports; raises OSError (and listens on neither) if one is taken."""
        await self.http.start()
        try:
            await self.smtp.start()
        except BaseException:
            await self.http.stop()
            raise
        self._poller = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        self.collect()
        await self.smtp.stop()
        await self.http.stop()
        self.collect()

    @property
    def duplicates(self) -> int:
        """Messages received again under an idempotency key already seen (resends)."""
        return self.smtp.duplicates + self.http.duplicates

    def collect(self) -> None:
        """Record the SMTP messages that arrived since the last call."""
        channel = self.names.of_mail(self.smtp.port)
        for mail in self.smtp.take():
            self.stats.delivered(channel, journey_of(mail.idempotency_key), mail.at, event_time_of_mail(mail.raw))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL)
            self.collect()

    def _http_delivery(self, path: str, key: str | None, arrived: float, event_ts: float | None) -> None:
        self.stats.delivered(self.names.of_http(path), journey_of(key), arrived, event_ts)
