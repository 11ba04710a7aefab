"""The webhook client's HTTP/1.1 framing (channels/http1.py): pure, fed byte strings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from itinerary.channels.http1 import (
    MAX_HEAD,
    ProtocolError,
    Response,
    ResponseParser,
    header_value_problem,
    is_token,
    request_head,
)


def parse(*pieces: bytes, head_request: bool = False, eof: bool = False) -> tuple[Response | None, ResponseParser]:
    parser = ResponseParser(head_request=head_request)
    response = None
    for piece in pieces:
        got = parser.feed(piece)
        if got is not None:
            assert response is None, "a response is returned once"
            response = got
    if eof:
        got = parser.eof()
        if got is not None:
            response = got
    return response, parser


def bytewise(raw: bytes) -> list[bytes]:
    return [raw[i : i + 1] for i in range(len(raw))]


OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
CHUNKED = (
    b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;name=value\r\nhello\r\n"
    b"7\r\n, world\r\n"
    b"0\r\nX-Trailer: yes\r\n\r\n"
)


def test_a_response_with_a_content_length_in_one_piece() -> None:
    response, parser = parse(OK)
    assert response == Response(200, None, keep_alive=True, body_bytes=11)
    assert parser.extra == 0


def test_a_response_fed_one_byte_at_a_time_is_the_same() -> None:
    assert parse(*bytewise(OK))[0] == parse(OK)[0]
    assert parse(*bytewise(CHUNKED))[0] == parse(CHUNKED)[0]


def test_a_chunked_body_with_extensions_and_trailers() -> None:
    response, _ = parse(CHUNKED)
    assert response == Response(202, None, keep_alive=True, body_bytes=12)


def test_a_chunked_body_is_not_complete_before_its_last_chunk() -> None:
    response, parser = parse(CHUNKED[:-2])
    assert response is None
    with pytest.raises(ProtocolError, match="middle of its response"):
        parser.eof()


def test_a_body_without_length_ends_when_the_server_closes() -> None:
    response, parser = parse(b"HTTP/1.1 200 OK\r\n\r\nsome", b" body")
    assert response is None
    assert parser.eof() == Response(200, None, keep_alive=False, body_bytes=9)


def test_a_transfer_coding_other_than_chunked_last_is_read_until_close() -> None:
    response, _ = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx", eof=True)
    assert response == Response(200, None, keep_alive=False, body_bytes=2)


@pytest.mark.parametrize("status", [204, 304])
def test_statuses_without_a_body(status: int) -> None:
    response, _ = parse(f"HTTP/1.1 {status} X\r\nContent-Length: 10\r\n\r\n".encode())
    assert response == Response(status, None, keep_alive=True, body_bytes=0)


def test_the_answer_to_a_head_request_has_no_body() -> None:
    response, _ = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", head_request=True)
    assert response is not None and response.body_bytes == 0


def test_interim_responses_are_skipped() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK
    response, _ = parse(raw)
    assert response is not None and response.status == 200


def test_too_many_interim_responses_are_refused() -> None:
    with pytest.raises(ProtocolError, match="interim"):
        parse(b"HTTP/1.1 100 Continue\r\n\r\n" * 11)


def test_switching_protocols_is_refused() -> None:
    with pytest.raises(ProtocolError, match="switched"):
        parse(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")


def test_retry_after_is_kept_as_sent() -> None:
    response, _ = parse(b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\nContent-Length: 0\r\n\r\n")
    assert response == Response(429, "7", keep_alive=True, body_bytes=0)


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n", False),
        (b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\n", False),
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n", True),
        (b"HTTP/1.0 200 OK\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n", True),
        (b"HTTP/1.1 200\r\n", True),  # no reason phrase
    ],
)
def test_whether_the_connection_may_be_reused(head: bytes, keep_alive: bool) -> None:
    response, _ = parse(head + b"Content-Length: 0\r\n\r\n")
    assert response is not None and response.keep_alive is keep_alive


def test_bytes_after_the_response_make_the_connection_unusable() -> None:
    response, parser = parse(OK + b"HTTP/1.1 200 OK\r\n")
    assert response is not None and not response.keep_alive
    assert parser.extra == 17


def test_identical_repeated_content_lengths_are_accepted() -> None:
    response, _ = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok")
    assert response is not None and response.body_bytes == 2


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"HTTP/2 200 OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 099 Odd\r\n\r\n", "bad status"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\n folded: value\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nBad Name: value\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "conflicting"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY", "not followed by CRLF"),
    ],
)
def test_malformed_responses_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse(raw)


def test_a_head_larger_than_the_limit_is_refused_before_it_ends() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(ProtocolError, match="head over"):
        for _ in range(MAX_HEAD // 1000 + 2):
            parser.feed(b"X-Filler: " + b"a" * 988 + b"\r\n")


def test_a_closed_connection_before_any_answer() -> None:
    parser = ResponseParser()
    with pytest.raises(ProtocolError, match="without answering"):
        parser.eof()
    assert not parser.started


@given(st.data())
def test_any_split_of_a_response_parses_the_same(data: st.DataObject) -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\n" + CHUNKED
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    assert parse(*pieces)[0] == Response(202, None, keep_alive=True, body_bytes=12)


def test_request_head_layout() -> None:
    head = request_head("POST", "/v1/send?x=1", [("Host", "api.example.com"), ("Content-Length", "2")])
    assert head == b"POST /v1/send?x=1 HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 2\r\n\r\n"


def test_request_head_sends_non_ascii_values_as_utf8() -> None:
    head = request_head("POST", "/", [("Idempotency-Key", "Email:zoë@example.com/j/1/n/1")])
    assert "zoë".encode() in head


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b"])
def test_values_that_would_break_the_head_are_named(value: str) -> None:
    assert header_value_problem(value) == "contains a line break or NUL"


def test_ordinary_values_pass() -> None:
    assert header_value_problem("Bearer abc.def-ghi_~+/=") is None


@pytest.mark.parametrize(("name", "ok"), [("X-Api-Key", True), ("x_custom.1", True), ("Bad Name", False), ("", False)])
def test_header_names_must_be_tokens(name: str, ok: bool) -> None:
    assert is_token(name) is ok
