"""The load tool's receivers: the demo channels' endpoints, timing every message they get.

Both are the load tool's own: `HttpReceiver` (itinerary/load/http_server.py) and
`SmtpServer` (itinerary/load/smtp_server.py) cost a fraction of the CPU per message of
aiohttp's web server and aiosmtpd, which the tests and the demo use: CPU the engine under
test needs when both share a machine. Both read the
`X-Itinerary-Event-Time` header the gateways add to each delivery (see
channels/webhook.py and channels/email.py) and record arrival minus that time: the
event-to-delivery latency, per channel and per journey, in a DeliveryStats.

The journey is the second component of a message's idempotency key,
`<profile key>/<journey>/<entry>/<node>/<k>` (itinerary/engine/journey.py). Channels are
named from a config file when given (the demo's by default): an HTTP path or an SMTP port
maps to the channel that points there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from itinerary.channels.email import EVENT_TIME_HEADER as MAIL_EVENT_TIME
from itinerary.channels.email import IDEMPOTENCY_HEADER as MAIL_IDEMPOTENCY_KEY
from itinerary.channels.webhook import EVENT_TIME_HEADER as HTTP_EVENT_TIME
from itinerary.load.http_server import HttpReceiver, ReceivedCall
from itinerary.load.recent import RecentKeys
from itinerary.load.smtp_server import ReceivedMessage, SmtpServer
from itinerary.load.stats import DeliveryStats

__all__ = [
    "ChannelNames",
    "DeliveryReceivers",
    "event_time_of_mail",
    "idempotency_key_of_mail",
    "journey_of",
    "mail_header",
]


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


_MAIL_EVENT_TIME = MAIL_EVENT_TIME.encode()
_MAIL_IDEMPOTENCY_KEY = MAIL_IDEMPOTENCY_KEY.encode()


def mail_header(raw: bytes, name: bytes) -> bytes | None:
    """The value of header `name` (exact case, as the gateways write it) in a raw message.

    A scan for one name, not a parse of the header block: the receiver reads two headers
    of every message at load-test rates. Folded values are not unfolded (the gateways'
    headers are never folded)."""
    end = raw.find(b"\r\n\r\n")
    headers = b"\r\n" + (raw if end == -1 else raw[:end])
    at = headers.find(b"\r\n" + name + b":")
    if at == -1:
        return None
    start = at + len(name) + 3
    stop = headers.find(b"\r\n", start)
    return headers[start : stop if stop != -1 else len(headers)].strip()


def event_time_of_mail(raw: bytes) -> float | None:
    """The X-Itinerary-Event-Time of a raw message, read without a full header parse."""
    return _float(mail_header(raw, _MAIL_EVENT_TIME))


def idempotency_key_of_mail(raw: bytes) -> str | None:
    """The X-Itinerary-Idempotency-Key of a raw message, read without a full header parse."""
    value = mail_header(raw, _MAIL_IDEMPOTENCY_KEY)
    return None if value is None else value.decode("utf-8", "replace")


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

    Both run on the caller's event loop and record each message as it arrives.
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.names = names or ChannelNames()
        self.stats = stats or DeliveryStats(clock())
        self.smtp = SmtpServer(host, smtp_port, on_message=self._mail_delivery, clock=clock)
        self.http = HttpReceiver(
            host, http_port, token=token, on_call=self._http_delivery, event_time_header=HTTP_EVENT_TIME, clock=clock
        )
        # Keys per kind of receiver: a resend comes back through the same one.
        self._mail_keys = RecentKeys()
        self._http_keys = RecentKeys()

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

    async def stop(self) -> None:
        await self.smtp.stop()
        await self.http.stop()

    @property
    def duplicates(self) -> int:
        """Messages received again under an idempotency key seen recently (resends; see
        RecentKeys for how far back)."""
        return self._mail_keys.duplicates + self._http_keys.duplicates

    def _mail_delivery(self, message: ReceivedMessage) -> None:
        key = idempotency_key_of_mail(message.content)
        self._mail_keys.add(key)
        channel = self.names.of_mail(self.smtp.port)
        self.stats.delivered(channel, journey_of(key), message.arrived, event_time_of_mail(message.content))

    def _http_delivery(self, call: ReceivedCall) -> None:
        self._http_keys.add(call.idempotency_key)
        self.stats.delivered(
            self.names.of_http(call.path), journey_of(call.idempotency_key), call.arrived, call.event_time
        )
