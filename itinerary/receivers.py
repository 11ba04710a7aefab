"""Real webhook and SMTP servers that record what they receive, for the demo and the tests.

They listen on real sockets (127.0.0.1, a free port by default) so the gateways are tested
end to end. Both count resends of one idempotency key as duplicates, and can be scripted
to fail, so retry paths can be exercised against real protocol answers.

`WebhookReceiver` runs on the caller's event loop; `SmtpReceiver` runs aiosmtpd in its own
thread. Both have async `start()` / `stop()`.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hmac
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from functools import lru_cache
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

_POLL = 0.005  # seconds between checks in wait_for()


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One HTTP request the webhook receiver accepted."""

    path: str
    method: str
    body: Any
    idempotency_key: str | None
    at: float


@dataclass(frozen=True, slots=True)
class Attempt:
    """One HTTP request the webhook receiver answered, whatever the answer was."""

    path: str
    method: str
    status: int
    idempotency_key: str | None
    at: float


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One message the SMTP receiver accepted.

    Only the few headers recorded are read on arrival; the body is decoded when `text` is
    read, so a receiver taking hundreds of messages a second stays light.
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str | None
    message_id: str | None
    idempotency_key: str | None
    raw: bytes
    at: float

    @property
    def text(self) -> str | None:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        body = parsed.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
        return body.get_content() if body is not None else None  # type: ignore[no-any-return]


async def wait_until(done: Callable[[], bool], timeout: float) -> bool:
    """Poll `done` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL)
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (nothing listens on it after this returns)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


_OK = b'{"ok": true}'  # the answer to every accepted call, encoded once


class WebhookReceiver:
    """An HTTP endpoint that checks a bearer token and records every accepted JSON call."""

    def __init__(
        self,
        token: str | None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.port = port
        self.delay = 0.0  # seconds to wait before answering (slow or hanging endpoints)
        self.received: list[ReceivedRequest] = []
        self.attempts = 0  # requests that arrived, counted on arrival (also refused ones)
        self.requests: list[Attempt] = []  # every answered request, with its status
        self._token = token
        self._clock = clock
        self._script: deque[tuple[int, dict[str, str]]] = deque()
        self._keys: Counter[str | None] = Counter()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL; any path below it is accepted."""
        return f"http://{self.host}:{self.port}"

    @property
    def unique_keys(self) -> set[str | None]:
        """Distinct Idempotency-Key values of accepted requests."""
        return set(self._keys)

    @property
    def duplicates(self) -> int:
        """Accepted requests whose Idempotency-Key had been accepted before."""
        return sum(count - 1 for count in self._keys.values())

    def script(self, statuses: list[int | tuple[int, dict[str, str]]]) -> None:
        """Answer the next requests with these statuses (and headers) before normal 200s."""
        for entry in statuses:
            status, headers = entry if isinstance(entry, tuple) else (entry, {})
            self._script.append((status, dict(headers)))

    async def start(self) -> None:
        """Listen; with port 0 a free port is chosen and stored in `.port`."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A test receiver need not wait long for scripted slow handlers when it stops.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            await self._runner.cleanup()
            raise
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        """Close the listener and open connections."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until `count` distinct messages were accepted; False at the deadline."""
        return await wait_until(lambda: len(self._keys) >= count, timeout)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = self._clock()
        self.attempts += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        response = await self._answer(request, arrived)
        self.requests.append(
            Attempt(
                request.path,
                request.method,
                response.status,
                request.headers.get("Idempotency-Key"),
                arrived,
            )
        )
        return response

    async def _answer(self, request: web.Request, arrived: float) -> web.Response:
        if request.method not in ("POST", "PUT"):
            return web.json_response({"error": "method not allowed"}, status=405)
        if self._token is not None and not hmac.compare_digest(
            request.headers.get("Authorization", "").encode(), f"Bearer {self._token}".encode()
        ):
            return web.json_response({"error": "unauthorized"}, status=401)
        if self._script:
            status, headers = self._script.popleft()
            return web.json_response({"scripted": status}, status=status, headers=headers)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        key = request.headers.get("Idempotency-Key")
        self.received.append(ReceivedRequest(request.path, request.method, body, key, arrived))
        self._keys[key] += 1
        return web.Response(body=_OK, content_type="application/json")


_RECORDED_HEADERS = ("subject", "message-id", "x-itinerary-idempotency-key")


def header_fields(raw: bytes) -> dict[str, str]:
    """The recorded headers of an RFC 5322 message (lower-case names, unfolded values).

    A scan of the header block, not a parse of the message: the email package's parser
    was a fifth of the receiver's CPU per message. The first occurrence of a name wins.
    """
    end = raw.find(b"\r\n\r\n")
    block = raw if end < 0 else raw[:end]
    fields: dict[str, str] = {}
    name: str | None = None
    for line in block.decode("utf-8", "replace").split("\r\n"):
        if line[:1] in (" ", "\t"):  # a folded continuation of the previous header
            if name is not None:
                fields[name] += " " + line.strip()
            continue
        head, colon, value = line.partition(":")
        name = head.strip().lower() if colon else None
        if name not in _RECORDED_HEADERS or name in fields:
            name = None
            continue
        fields[name] = value.strip()
    return fields


@lru_cache(maxsize=4096)
def _parse_address(arg: str) -> tuple[str | None, str | None]:
    """aiosmtpd's address parsing for MAIL FROM / RCPT TO, done once per distinct text."""
    try:
        address, rest = get_angle_addr(arg) if arg.lstrip().startswith("<") else get_addr_spec(arg)
    except HeaderParseError:
        return None, None
    return address.addr_spec, rest


class _ReceiverSMTP(SMTP):
    """aiosmtpd's SMTP session with its address parsing cached.

    `SMTP._getaddr` builds a typing.Protocol class on every call, and with the address
    parse that was over a third of the receiver's CPU per message. This is the same parse
    (the same email package functions, the same local-part limit), remembered per text:
    a sender repeats on every message.
    """

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        if not arg:
            return "", ""
        addr, rest = _parse_address(arg)
        if addr is None:
            return None, None
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, rest


class _ReceiverController(Controller):
    """aiosmtpd's threaded controller, serving sessions of `_ReceiverSMTP`."""

    def factory(self) -> SMTP:
        return _ReceiverSMTP(self.handler, **self.SMTP_kwargs)


class _MailHandler:
    """aiosmtpd handler: records messages; answers scripted replies first."""

    def __init__(self, clock: Callable[[], float], pipelining: bool) -> None:
        self.clock = clock
        self.pipelining = pipelining
        self.lock = threading.Lock()  # the SMTP thread writes, the test's thread reads
        self.messages: list[ReceivedMail] = []
        self.keys: Counter[str | None] = Counter()
        self.script: deque[str] = deque()
        self.sessions = 0  # EHLO/HELO greetings: one per client connection

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # what aiosmtpd does itself when there is no hook
        with self.lock:
            self.sessions += 1
        if self.pipelining:
            # aiosmtpd reads commands from a buffered stream one after another, so a
            # pipelined group is served in order; it only does not say so.
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            if self.script:
                return self.script.popleft()
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        headers = header_fields(raw)
        subject = headers.get("subject")
        if subject is not None and "=?" in subject:  # RFC 2047 encoded words
            subject = str(make_header(decode_header(subject)))
        mail = ReceivedMail(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            subject=subject,
            message_id=headers.get("message-id"),
            idempotency_key=headers.get("x-itinerary-idempotency-key"),
            raw=raw,
            at=self.clock(),
        )
        with self.lock:
            self.messages.append(mail)
            self.keys[mail.idempotency_key] += 1
        return "250 Message accepted for delivery"


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed: about a third less CPU per message for aiosmtpd."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class SmtpReceiver:
    """An SMTP server (aiosmtpd, in its own thread) that records every message it accepts.

    It advertises PIPELINING (RFC 2920) as production relays do, unless told not to.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.time,
        pipelining: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self._handler = _MailHandler(clock, pipelining)
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[ReceivedMail]:
        """Accepted messages, in arrival order (a copy)."""
        with self._handler.lock:
            return list(self._handler.messages)

    @property
    def duplicates(self) -> int:
        """Accepted messages whose idempotency key had been accepted before."""
        with self._handler.lock:
            return sum(count - 1 for count in self._handler.keys.values())

    @property
    def sessions(self) -> int:
        """SMTP sessions opened so far (counted at EHLO), to check connection reuse."""
        with self._handler.lock:
            return self._handler.sessions

    def script(self, replies: list[str]) -> None:
        """Answer the next DATA commands with these replies (e.g. "451 4.3.0 try later")."""
        with self._handler.lock:
            self._handler.script.extend(replies)

    async def start(self) -> None:
        """Start the server thread; with port 0 a free port is chosen and stored in `.port`."""
        if self.port == 0:
            # aiosmtpd needs a concrete port; the tiny window before it binds is acceptable here.
            self.port = free_port(self.host)
        controller = _ReceiverController(self._handler, loop=_new_loop(), hostname=self.host, port=self.port)
        await asyncio.to_thread(controller.start)
        self._controller = controller

    async def stop(self) -> None:
        """Stop the server and join its thread."""
        if self._controller is not None:
            controller, self._controller = self._controller, None
            await asyncio.to_thread(controller.stop)

    async def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until `count` distinct messages were accepted; False at the deadline."""

        def enough() -> bool:
            with self._handler.lock:
                return len(self._handler.keys) >= count

        return await wait_until(enough, timeout)
