"""E-mail provider: hands messages to an SMTP relay over a small pool of kept-alive sessions.

Opening an SMTP session costs several round trips (greeting, EHLO, maybe STARTTLS and
AUTH), so connections are reused; one that saw any error is dropped and a fresh one is
opened on the next attempt. The request id travels in the Message-ID and in
`X-Itinerary-Idempotency-Key`, so a relay or a receiver can recognise a resend.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from email.header import Header
from email.utils import formatdate, parseaddr
from urllib.parse import quote

import aiosmtplib

from itinerary.channels.retry import DeliveryResult, classify_smtp
from itinerary.config.channels import EmailChannelConfig
from itinerary.engine.messages import SendRequest

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "X-Itinerary-Idempotency-Key"
# When the ingress accepted the event that led to this message (epoch seconds), so a
# receiver can measure event-to-delivery latency (the load tool does).
EVENT_TIME_HEADER = "X-Itinerary-Event-Time"
MESSAGE_ID_DOMAIN = "itinerary"

# Relays drop idle sessions (RFC 5321 suggests a 5 minute server timeout); a pooled session
# idle for longer than this is closed rather than risked.
_MAX_IDLE = 60.0


def message_id_for(request_id: str) -> str:
    """The Message-ID that carries `request_id`, reversibly (percent-encoded, no dots)."""
    local = quote(request_id, safe="").replace(".", "%2E")
    return f"<{local}@{MESSAGE_ID_DOMAIN}>"


def build_message(request: SendRequest, sender: str) -> bytes:
    """The e-mail for `request` as RFC 5322 bytes: payload {"to", "subject", "text", "html"?}.

    Written directly rather than through `email.message`: its generator re-parses and
    re-folds every header and cost close to a millisecond a message, the whole CPU budget
    of a channel sending hundreds a second. Bodies are base64 (safe for any relay, no
    8BITMIME needed); non-ASCII or long subjects use RFC 2047 encoding.
    """
    payload = request["payload"]
    to = str(payload["to"])
    if any(c in to for c in "\r\n<>,;") or "@" not in to or len(to) > 254:
        raise ValueError(f"invalid recipient {to[:80]!r}")
    subject = str(payload["subject"]).replace("\r", " ").replace("\n", " ")
    if not subject.isascii() or len(subject) > 900:
        subject = Header(subject, "utf-8").encode()
    headers = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {formatdate(localtime=False)}",
        f"Message-ID: {message_id_for(str(request['id']))}",
        f"{IDEMPOTENCY_HEADER}: {_header_safe(str(request['id']))}",
        "MIME-Version: 1.0",
    ]
    event_ts = request.get("event_ts")
    if event_ts is not None:
        headers.append(f"{EVENT_TIME_HEADER}: {float(event_ts):.6f}")
    text = _part("plain", str(payload["text"]))
    html = payload.get("html")
    if html:
        boundary = f"=_itinerary_{uuid.uuid4().hex}"
        headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        body = f"--{boundary}\r\n{text}\r\n--{boundary}\r\n{_part('html', str(html))}\r\n--{boundary}--\r\n"
        return ("\r\n".join(headers) + "\r\n\r\n" + body).encode("ascii")
    return ("\r\n".join(headers) + "\r\n" + text).encode("ascii")


def _part(subtype: str, content: str) -> str:
    encoded = base64.encodebytes(content.encode("utf-8")).decode("ascii").replace("\n", "\r\n")
    return f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}'


def _header_safe(value: str) -> str:
    return value.replace("\r", "").replace("\n", "") if value.isascii() else quote(value, safe="/:@")


class EmailProvider:
    """Delivers send requests as e-mails through one SMTP relay, reusing sessions."""

    def __init__(self, config: EmailChannelConfig) -> None:
        self._config = config
        self._envelope_sender = parseaddr(config.sender)[1] or config.sender
        self._timeout = config.timeout.total_seconds()
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []  # (session, idle since)
        self._busy: set[aiosmtplib.SMTP] = set()
        # Bounds open sessions even if the provider is used without a gateway in front.
        self._slots = asyncio.Semaphore(config.max_connections)

    def __repr__(self) -> str:
        return f"EmailProvider({self._config.host}:{self._config.port})"

    async def start(self) -> None:
        """Nothing to do: sessions open on first use, so a relay that is down does not block."""

    async def close(self) -> None:
        """Say QUIT on idle sessions and drop busy ones."""
        idle, self._idle = self._idle, []
        for smtp, _ in idle:
            await _quit(smtp)
        for smtp in list(self._busy):
            smtp.close()
        self._busy.clear()

    async def deliver(self, request: SendRequest) -> DeliveryResult:
        """Make one attempt to deliver `request`; never raises for SMTP or network errors."""
        try:
            message = build_message(request, self._config.sender)
        except (KeyError, TypeError, ValueError) as exc:
            return DeliveryResult.permanent(f"bad payload: {type(exc).__name__}: {exc}"[:200])
        async with self._slots:
            try:
                smtp = await self._acquire()
            except aiosmtplib.SMTPResponseException as exc:
                return classify_smtp(exc.code, exc.message)
            except (aiosmtplib.SMTPException, OSError) as exc:
                return DeliveryResult.transient(self._network_reason(exc))
            try:
                await smtp.sendmail(self._envelope_sender, [request["payload"]["to"]], message)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                self._discard(smtp)
                first = exc.recipients[0]
                return classify_smtp(first.code, first.message)
            except aiosmtplib.SMTPResponseException as exc:
                self._discard(smtp)
                return classify_smtp(exc.code, exc.message)
            except (aiosmtplib.SMTPException, OSError) as exc:
                self._discard(smtp)
                return DeliveryResult.transient(self._network_reason(exc))
            except BaseException:
                self._discard(smtp)  # cancelled mid-transaction: the session state is unknown
                raise
            self._release(smtp)
            return DeliveryResult.delivered(250)

    async def _acquire(self) -> aiosmtplib.SMTP:
        now = time.monotonic()
        while self._idle:
            smtp, since = self._idle.pop()
            if smtp.is_connected and now - since < _MAX_IDLE:
                self._busy.add(smtp)
                return smtp
            await _quit(smtp)
        config = self._config
        smtp = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            username=config.username,
            password=config.password.get_secret_value() if config.password else None,
            use_tls=config.use_tls,
            start_tls=config.starttls,
            timeout=self._timeout,
        )
        try:
            await smtp.connect()
        except BaseException:
            smtp.close()  # the greeting, STARTTLS or AUTH failed after the socket opened
            raise
        self._busy.add(smtp)
        return smtp

    def _release(self, smtp: aiosmtplib.SMTP) -> None:
        self._busy.discard(smtp)
        self._idle.append((smtp, time.monotonic()))

    def _discard(self, smtp: aiosmtplib.SMTP) -> None:
        self._busy.discard(smtp)
        smtp.close()

    def _network_reason(self, exc: BaseException) -> str:
        where = f"{self._config.host}:{self._config.port}"
        if isinstance(exc, TimeoutError):
            return f"timeout after {self._timeout}s"
        if isinstance(exc, ConnectionRefusedError) or isinstance(exc.__cause__, ConnectionRefusedError):
            return f"connection refused: {where}"
        # aiosmtplib messages name host and port, never the credentials.
        return f"smtp connection error: {where}: {exc}"[:200]


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    try:
        if smtp.is_connected:
            await smtp.quit(timeout=2.0)
    except (aiosmtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()
