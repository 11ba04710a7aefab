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
from typing import cast
from urllib.parse import quote

import aiosmtplib

from itinerary.channels.retry import DeliveryResult, classify_smtp
from itinerary.channels.smtp_session import SmtpSession, prepare_data
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
    """Delivers send requests as e-mails through one SMTP relay, reusing sessions.

    aiosmtplib opens each session (greeting, EHLO, STARTTLS, AUTH); the transactions then
    run on `SmtpSession`, pipelined when the relay advertises PIPELINING.
    """

    def __init__(self, config: EmailChannelConfig) -> None:
        self._config = config
        # Checked to be ASCII, with no brackets or line breaks, by the channel config.
        self._envelope_sender = parseaddr(config.sender)[1].encode("ascii")
        self._timeout = config.timeout.total_seconds()
        self._idle: list[tuple[SmtpSession, float]] = []  # (session, idle since)
        self._busy: set[SmtpSession] = set()
        # Bounds open sessions even if the provider is used without a gateway in front.
        self._slots = asyncio.Semaphore(config.max_connections)

    def __repr__(self) -> str:
        return f"EmailProvider({self._config.host}:{self._config.port})"

    async def start(self) -> None:
        """Nothing to do: sessions open on first use, so a relay that is down does not block."""

    async def close(self) -> None:
        """Say QUIT on idle sessions and drop busy ones."""
        idle, self._idle = self._idle, []
        for session, _ in idle:
            await session.quit()
        for session in list(self._busy):
            session.close()
        self._busy.clear()

    async def deliver(self, request: SendRequest) -> DeliveryResult:
        """Make one attempt to deliver `request`; never raises for SMTP or network errors."""
        try:
            message = build_message(request, self._config.sender)
            # build_message refused anything but a plain ASCII address with an @.
            recipient = str(request["payload"]["to"]).encode("ascii")
        except (KeyError, TypeError, ValueError) as exc:
            return DeliveryResult.permanent(f"bad payload: {type(exc).__name__}: {exc}"[:200])
        data = prepare_data(message)
        async with self._slots:
            try:
                session = await self._acquire()
            except aiosmtplib.SMTPResponseException as exc:
                return classify_smtp(exc.code, exc.message)
            except (aiosmtplib.SMTPException, OSError) as exc:
                return DeliveryResult.transient(self._network_reason(exc))
            try:
                reply = await session.send_mail(self._envelope_sender, recipient, data)
            except (OSError, TimeoutError) as exc:  # SmtpSessionClosed is a ConnectionError
                self._discard(session)
                return DeliveryResult.transient(self._network_reason(exc))
            except BaseException:
                self._discard(session)  # cancelled mid-transaction: the session state is unknown
                raise
            # A refused transaction was reset: the session goes back to the pool unless
            # the relay closed it (421) or would not reset it.
            if session.is_open:
                self._release(session)
            else:
                self._discard(session)
            if not 200 <= reply.code < 300:
                return classify_smtp(reply.code, reply.text)
            return DeliveryResult.delivered(reply.code)

    async def _acquire(self) -> SmtpSession:
        now = time.monotonic()
        while self._idle:
            session, since = self._idle.pop()
            if session.is_open and now - since < _MAX_IDLE:
                self._busy.add(session)
                return session
            await session.quit()
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
            if smtp.is_ehlo_or_helo_needed:  # connect() greets only before STARTTLS or AUTH
                try:
                    await smtp.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await smtp.helo()
            # Ray runs actors on uvloop, whose transports are not asyncio.Transport
            # subclasses but have the same methods.
            transport = cast(asyncio.Transport | None, smtp.transport)
            if transport is None or transport.is_closing():
                raise aiosmtplib.SMTPServerDisconnected("the relay closed the session after the greeting")
        except BaseException:
            smtp.close()  # the greeting, STARTTLS or AUTH failed after the socket opened
            raise
        # From here the session's transport belongs to SmtpSession; aiosmtplib's object
        # is not used again.
        session = SmtpSession(transport, smtp.supports_extension("pipelining"), self._timeout)
        self._busy.add(session)
        return session

    def _release(self, session: SmtpSession) -> None:
        self._busy.discard(session)
        self._idle.append((session, time.monotonic()))

    def _discard(self, session: SmtpSession) -> None:
        self._busy.discard(session)
        session.close()

    def _network_reason(self, exc: BaseException) -> str:
        where = f"{self._config.host}:{self._config.port}"
        if isinstance(exc, TimeoutError):
            return f"timeout after {self._timeout}s"
        if isinstance(exc, ConnectionRefusedError) or isinstance(exc.__cause__, ConnectionRefusedError):
            return f"connection refused: {where}"
        # Session errors name host and port, never the credentials.
        return f"smtp connection error: {where}: {exc}"[:200]
