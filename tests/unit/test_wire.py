"""Direct streams between actors (actors/wire.py) over real TCP connections on this host."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest

from itinerary.actors import wire
from itinerary.actors.wire import RemoteError, WireClient, WireError, WireServer

HOST = "127.0.0.1"


class Callee:
    """Methods a test server offers: an echo, a call that waits to be released, one that fails."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.seen: list[Any] = []

    async def echo(self, *args: Any) -> Any:
        self.seen.append(args)
        return list(args)

    async def held(self, value: str) -> str:
        await self.release.wait()
        return value

    async def fail(self) -> None:
        raise RuntimeError("batch 3 of ingress-0 arrived after a gap")

    async def nothing(self) -> None:
        return None


async def connected(server: WireServer) -> WireClient:
    return await WireClient.connect("test-callee", server.endpoint(), timeout=5)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Callee, WireServer]]:
    callee = Callee()
    server = WireServer(
        {"echo": callee.echo, "held": callee.held, "fail": callee.fail, "nothing": callee.nothing}, "test-callee"
    )
    await server.start(HOST)
    yield callee, server
    await server.close()


async def test_a_call_returns_the_callees_answer_with_bytes_and_none_intact(
    served: tuple[Callee, WireServer],
) -> None:
    callee, server = served
    client = await connected(server)
    blob = bytes(range(256)) * 40
    assert await client.call("echo", "ingress-0#1", 7, blob) == ["ingress-0#1", 7, blob]
    assert await client.call("nothing") is None
    assert callee.seen == [("ingress-0#1", 7, blob)]
    assert server.calls == 2
    client.close()


async def test_calls_overlap_and_each_answer_reaches_its_own_caller(served: tuple[Callee, WireServer]) -> None:
    callee, server = served
    client = await connected(server)
    slow = asyncio.ensure_future(client.call("held", "first"))
    assert await client.call("echo", "second") == ["second"]  # answered while the first waits
    assert not slow.done()
    callee.release.set()
    assert await asyncio.wait_for(slow, 5) == "first"
    client.close()


async def test_a_wrong_token_is_refused_and_nothing_is_called(served: tuple[Callee, WireServer]) -> None:
    callee, server = served
    endpoint = {**server.endpoint(), "token": "not-the-token"}
    with pytest.raises(WireError):
        await WireClient.connect("test-callee", endpoint, timeout=5)
    assert server.refused == 1
    assert callee.seen == []


@pytest.mark.parametrize("hello", [["hello", "tökén"], ["hello", 7], ["hello"], "hello", {"hello": 1}])
async def test_any_other_hello_closes_the_connection(served: tuple[Callee, WireServer], hello: Any) -> None:
    callee, server = served
    reader, writer = await asyncio.open_connection(HOST, server.port)
    writer.write(msgpack.packb(hello) + msgpack.packb([1, "echo", ["after a bad hello"]]))
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without an answer
    writer.close()
    assert callee.seen == [] and server.refused == 1


async def test_a_malformed_call_closes_the_stream_and_the_calls_behind_it_in_the_same_read_are_not_run(
    served: tuple[Callee, WireServer],
) -> None:
    callee, server = served
    reader, writer = await asyncio.open_connection(HOST, server.port)
    writer.write(msgpack.packb(["hello", server.token]))
    assert msgpack.unpackb(await asyncio.wait_for(reader.read(64), 5)) == [0, None, "ok"]
    writer.write(msgpack.packb(["not", "a call"]) + msgpack.packb([1, "echo", ["behind it"]]))
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert callee.seen == [] and server.refused == 1


async def test_a_call_frame_before_the_hello_closes_the_connection(served: tuple[Callee, WireServer]) -> None:
    callee, server = served
    reader, writer = await asyncio.open_connection(HOST, server.port)
    writer.write(msgpack.packb([1, "echo", ["sneaked in"]]))
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without an answer
    writer.close()
    assert callee.seen == [] and server.refused == 1


async def test_garbage_and_oversized_frames_close_the_connection(
    served: tuple[Callee, WireServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, server = served
    reader, writer = await asyncio.open_connection(HOST, server.port)
    writer.write(b"\xc1" * 16)  # 0xc1 is never used in msgpack
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()

    monkeypatch.setattr(wire, "MAX_FRAME_BYTES", 4096)
    client = await connected(server)
    with pytest.raises(WireError):
        await asyncio.wait_for(client.call("echo", b"x" * 100_000), 5)
    assert client.closed
    assert server.refused == 2


async def test_the_callees_exception_comes_back_as_text_and_the_stream_stays_usable(
    served: tuple[Callee, WireServer],
) -> None:
    _, server = served
    client = await connected(server)
    with pytest.raises(RemoteError, match="RuntimeError: batch 3 of ingress-0 arrived after a gap"):
        await client.call("fail")
    with pytest.raises(RemoteError, match="no method 'status'"):
        await client.call("status")  # only the listed methods are reachable
    assert await client.call("echo", 1) == [1]
    assert not client.closed
    client.close()


async def test_calls_in_flight_fail_when_the_callee_goes_away(served: tuple[Callee, WireServer]) -> None:
    _, server = served
    client = await connected(server)
    waiting = asyncio.ensure_future(client.call("held", "never answered"))
    await asyncio.sleep(0)
    await server.close()  # as when the callee's process dies: its connections reset
    with pytest.raises(WireError, match="stream lost"):
        await asyncio.wait_for(waiting, 5)
    assert client.closed
    with pytest.raises(WireError):
        await client.call("echo", 1)  # a closed stream is not reused: the caller opens a new one


async def test_connecting_to_a_port_nobody_listens_on_raises_wire_error() -> None:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(WireError, match="cannot open a stream"):
            await WireClient.connect("gone", {"host": HOST, "port": port, "token": "t"}, timeout=5)


async def test_connections_have_tcp_keepalive(served: tuple[Callee, WireServer]) -> None:
    _, server = served
    client = await connected(server)
    sock = client._transport.get_extra_info("socket")  # type: ignore[union-attr]
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    if hasattr(socket, "TCP_KEEPIDLE"):
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == wire.KEEPALIVE_IDLE
    client.close()


async def test_the_summary_tells_where_it_listens_and_what_it_served_without_the_token(
    served: tuple[Callee, WireServer],
) -> None:
    _, server = served
    client = await connected(server)
    await client.call("echo", 1)
    summary = server.summary()
    assert summary == {"address": f"{HOST}:{server.port}", "connections": 1, "calls": 1, "refused": 0}
    assert server.token not in str(summary)
    client.close()
