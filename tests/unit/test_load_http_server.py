"""The load tool's webhook receiver protocol (HttpReceiverSession): bytes in, responses out."""

from __future__ import annotations

import json
import re

import pytest

from itinerary.load.http_server import MAX_BODY, MAX_HEAD, HttpReceiverSession, ReceivedCall

TOKEN = "t0ken"
EVENT_TIME = "X-Itinerary-Event-Time"


def call(
    body: bytes = b'{"n": 1}',
    *,
    method: str = "POST",
    path: str = "/v1/push/send",
    token: str = TOKEN,
    extra: str = "",
    version: str = "1.1",
) -> bytes:
    head = (
        f"{method} {path} HTTP/{version}\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Idempotency-Key: Email:a@b.c/welcome/1/send/1\r\n{EVENT_TIME}: 1765000000.5\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def session() -> HttpReceiverSession:
    return HttpReceiverSession(TOKEN, EVENT_TIME)


def statuses(out: bytes) -> list[int]:
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", out)]


def test_an_accepted_call_is_answered_and_reported() -> None:
    out, calls = session().feed(call(), 42.0)
    assert out == b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{"ok": true}'
    assert calls == [ReceivedCall("/v1/push/send", "Email:a@b.c/welcome/1/send/1", 1765000000.5, 42.0)]


def test_bytes_one_at_a_time_give_the_same_call() -> None:
    s = session()
    raw = call(path="/v1/push/send?tenant=acme")
    got: list[ReceivedCall] = []
    out = b""
    for i in range(len(raw)):
        piece, calls = s.feed(raw[i : i + 1], 1.0)
        out += piece
        got += calls
    assert statuses(out) == [200] and [c.path for c in got] == ["/v1/push/send"]


def test_pipelined_calls_are_answered_in_order_in_one_write() -> None:
    s = session()
    out, calls = s.feed(call() + call(token="wrong") + call(b"not json"), 1.0)
    assert statuses(out) == [200, 401, 400]
    assert len(calls) == 1 and not s.closing


def test_the_connection_closes_when_the_client_asks() -> None:
    s = session()
    out, _ = s.feed(call(extra="Connection: close\r\n") + call(), 1.0)
    assert statuses(out) == [200] and b"Connection: close" in out and s.closing
    assert s.feed(call(), 1.0) == (b"", [])


def test_http_1_0_closes_unless_kept_alive() -> None:
    s = session()
    s.feed(call(version="1.0"), 1.0)
    assert s.closing
    kept = session()
    kept.feed(call(version="1.0", extra="Connection: keep-alive\r\n"), 1.0)
    assert not kept.closing


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (call(method="GET"), 405),
        (call(token="nope"), 401),
        (call(b"{broken"), 400),
        (b"POST / HTTP/1.1\r\nAuthorization: Bearer t0ken\r\n\r\n", 411),
    ],
)
def test_refused_calls_keep_the_connection(raw: bytes, status: int) -> None:
    s = session()
    out, calls = s.feed(raw, 1.0)
    assert statuses(out) == [status] and calls == [] and not s.closing
    assert "error" in json.loads(out.split(b"\r\n\r\n", 1)[1])


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"HELLO\r\n\r\n", 400),
        (b"POST / HTTP/2.0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nno colon\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: -3\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 501),
        (f"POST / HTTP/1.1\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode(), 413),
    ],
)
def test_requests_that_cannot_be_framed_end_the_connection(raw: bytes, status: int) -> None:
    s = session()
    out, calls = s.feed(raw, 1.0)
    assert statuses(out) == [status] and calls == [] and s.closing
    assert b"Connection: close" in out


def test_a_head_over_the_limit_is_refused_without_waiting_for_its_end() -> None:
    s = session()
    out, _ = s.feed(b"POST / HTTP/1.1\r\n" + b"X: " + b"a" * MAX_HEAD, 1.0)
    assert statuses(out) == [431] and s.closing


def test_expect_continue_is_answered_before_the_body() -> None:
    s = session()
    raw = call(extra="Expect: 100-continue\r\n")
    head, body = raw.split(b"\r\n\r\n", 1)
    out, calls = s.feed(head + b"\r\n\r\n", 1.0)
    assert out == b"HTTP/1.1 100 Continue\r\n\r\n" and calls == []
    out, calls = s.feed(body, 1.0)
    assert statuses(out) == [200] and len(calls) == 1


def test_without_a_token_any_caller_is_accepted() -> None:
    out, calls = HttpReceiverSession(None, EVENT_TIME).feed(call(token="anything"), 1.0)
    assert statuses(out) == [200] and len(calls) == 1


def test_a_call_without_event_time_or_key_is_still_accepted() -> None:
    raw = b"PUT /x HTTP/1.1\r\nAuthorization: Bearer t0ken\r\nContent-Length: 2\r\n\r\n{}"
    _, calls = session().feed(raw, 3.0)
    assert calls == [ReceivedCall("/x", None, None, 3.0)]
