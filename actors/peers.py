"""Every call from one actor to another goes through a `Peers` object.

`RayPeers` finds peers by name in the Ray namespace and makes batched calls: the data
plane's (batches, sends, outcomes) on direct streams to the peer (actors/wire.py), the
rest as Ray calls. `LocalPeers` is its in-process twin, wiring plain objects together for
tests and for the single-process ceiling benchmark. Nothing else in the data plane calls
Ray directly.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from typing import Any, Protocol

import msgpack

from itinerary.actors.names import SUPERVISOR, shard_name
from itinerary.actors.wire import WireClient, WireError, WireServer
from itinerary.engine.messages import Outcome, SendRequest


class Peers(Protocol):
    """What a shard, a gateway and an ingress need from the others."""

    async def apply_batch(self, shard: int, sender: str, seq: int, blob: bytes) -> int: ...

    async def submit_sends(
        self, gateway: str, requests: list[SendRequest], shard: int | None = None
    ) -> dict[str, Any]: ...

    async def deliver_outcomes(self, shard: int, outcomes: list[Outcome]) -> None: ...

    async def get_profile(self, shard: int, key: str) -> dict[str, Any] | None: ...

    async def system_status(self) -> dict[str, Any]: ...

    async def connect(self, shards: Iterable[int] = (), gateways: Iterable[str] = ()) -> list[str]: ...


# How long a start-up connect waits for one peer; one that is slower is simply found on
# first use, as before.
CONNECT_TIMEOUT = 10.0


# After a peer did not offer its stream within `open_timeout`, callers that bound it are
# refused at once for this long instead of each waiting out the timeout in turn.
UNREACHABLE_PAUSE = 1.0


class PeerUnavailable(Exception):
    """A peer did not answer in time (it is restarting, or its node was lost)."""


# The calls that go on a direct stream when the callee offers one (its `wire_endpoint`).
STREAMED_METHODS = frozenset({"apply_batch", "submit", "deliver_outcomes"})


class RayPeers:
    """Peers reached by actor name; handles and streams are cached. Callers batch (see
    `Coalescer` and `ShardBatcher`) and bound what they have in flight.

    A data-plane call goes on the callee's direct stream (about a tenth of a Ray call's CPU,
    actors/wire.py) unless `direct_streams` is off or the callee offers none. A call whose
    stream or actor failed raises; the next call looks the peer up again, since the
    supervisor or Ray may have re-created it under the same name with a new stream.

    A Ray call to a restarting actor waits until it is back, ~15 s after a node is lost.
    With `open_timeout`, opening a stream waits that long at most; when it times out or
    fails, it raises `PeerUnavailable`, as does every call in the next UNREACHABLE_PAUSE
    (callers queued behind the first need not each wait out the same failure): the
    ingress uses it to answer 503 at once rather than hold its clients' requests. Shards
    and gateways leave it unset: their calls are retried by a Coalescer a bounded number
    of times, and waiting for the peer spends none of those retries. (With direct streams
    off, calls are Ray calls and wait as before.)"""

    def __init__(self, namespace: str, direct_streams: bool = True, *, open_timeout: float | None = None) -> None:
        self._namespace = namespace
        self._direct_streams = direct_streams
        self._handles: dict[str, Any] = {}
        self._streams: dict[str, WireClient] = {}
        self._streamless: set[str] = set()  # peers that offer no stream: Ray calls only
        self._opening: dict[str, asyncio.Lock] = {}
        self._open_timeout = open_timeout
        self._unreachable_until: dict[str, float] = {}  # loop time, per peer name

    def _handle(self, name: str) -> Any:
        handle = self._handles.get(name)
        if handle is None:
            import ray

            handle = ray.get_actor(name, namespace=self._namespace)
            self._handles[name] = handle
        return handle

    def forget(self, name: str) -> None:
        self._handles.pop(name, None)
        stream = self._streams.pop(name, None)
        if stream is not None:
            stream.close()

    def _open_stream(self, name: str) -> WireClient | None:
        stream = self._streams.get(name)
        return stream if stream is not None and not stream.closed else None

    async def _stream(self, name: str) -> WireClient | None:
        """The open stream to `name`, opened (once, for all callers) if need be; None when
        the peer offers none."""
        if name in self._streamless:
            return None
        stream = self._open_stream(name)
        if stream is not None:
            return stream
        async with self._opening.setdefault(name, asyncio.Lock()):
            stream = self._open_stream(name)
            if stream is not None or name in self._streamless:
                return stream
            endpoint = await self._endpoint(name)
            if endpoint is None:
                self._streamless.add(name)
                return None
            stream = self._streams[name] = await WireClient.connect(name, endpoint, CONNECT_TIMEOUT)
            return stream

    async def _endpoint(self, name: str) -> Any:
        """`name`'s stream endpoint, waiting at most `open_timeout` when one is set."""
        if self._open_timeout is None:
            return await self._ray_call(name, "wire_endpoint")
        loop = asyncio.get_running_loop()
        if loop.time() < self._unreachable_until.get(name, -math.inf):
            raise PeerUnavailable(f"{name} did not answer a moment ago; asked again shortly")
        try:
            return await asyncio.wait_for(self._ray_call(name, "wire_endpoint"), self._open_timeout)
        except TimeoutError:
            self._unreachable_until[name] = loop.time() + UNREACHABLE_PAUSE
            raise PeerUnavailable(f"{name} did not answer within {self._open_timeout:g} s") from None
        except Exception as exc:
            # Ray's "actor unavailable" (its node is gone, it is restarting) takes a second
            # or two to come back: the callers queued behind this one need not each wait it out.
            self._unreachable_until[name] = loop.time() + UNREACHABLE_PAUSE
            raise PeerUnavailable(f"{name} is unavailable: {str(exc).splitlines()[0][:200]}") from exc

    async def _call(self, name: str, method: str, *args: Any) -> Any:
        """One awaited call; a peer that is gone is looked up again by name next time (the
        supervisor may have re-created it under the same name)."""
        if self._direct_streams and method in STREAMED_METHODS:
            try:
                stream = await self._stream(name)
                if stream is not None:
                    return await stream.call(method, *args)
            except WireError:
                self.forget(name)
                raise
        return await self._ray_call(name, method, *args)

    async def _ray_call(self, name: str, method: str, *args: Any) -> Any:
        import ray

        try:
            return await getattr(self._handle(name), method).remote(*args)
        except ray.exceptions.RayActorError:
            self.forget(name)
            raise

    async def connect(self, shards: Iterable[int] = (), gateways: Iterable[str] = ()) -> list[str]:
        """Find these peers (shards by index, gateways by actor name) and make one call
        to each; returns the names not reached.

        The first call to a peer looks its name up in the GCS (a blocking call, on the
        caller's event loop) and opens a connection to the peer's process: tens of
        milliseconds that, left to the first events after a start, were the slowest
        answers of a whole load test. Peers not reached are looked up on first use."""
        names = [shard_name(s) for s in shards] + list(gateways)

        async def reach(name: str) -> str | None:
            try:
                await asyncio.wait_for(self._ray_call(name, "ready"), CONNECT_TIMEOUT)
                if self._direct_streams:
                    await asyncio.wait_for(self._stream(name), CONNECT_TIMEOUT)
            except Exception:
                self.forget(name)
                return name
            return None

        missed = await asyncio.gather(*(reach(name) for name in names))
        return [name for name in missed if name is not None]

    async def apply_batch(self, shard: int, sender: str, seq: int, blob: bytes) -> int:
        return int(await self._call(shard_name(shard), "apply_batch", sender, seq, blob))

    async def submit_sends(self, gateway: str, requests: list[SendRequest], shard: int | None = None) -> dict[str, Any]:
        """Send `requests` to the gateway actor named `gateway` (each request names its
        channel). Its answer: {"queued", "rejected", "backlog_s", ...}, and "outcomes"
        (msgpack bytes) waiting for `shard` when the caller names itself."""
        blob = msgpack.packb(requests, use_bin_type=True)
        return await self._call(gateway, "submit", blob, shard)  # type: ignore[no-any-return]

    async def get_profile(self, shard: int, key: str) -> dict[str, Any] | None:
        return await self._call(shard_name(shard), "get_profile", key)  # type: ignore[no-any-return]

    async def system_status(self) -> dict[str, Any]:
        return await self._call(SUPERVISOR, "status")  # type: ignore[no-any-return]

    async def deliver_outcomes(self, shard: int, outcomes: list[Outcome]) -> None:
        await self._call(shard_name(shard), "deliver_outcomes", msgpack.packb(outcomes, use_bin_type=True))


async def offer_stream(server: WireServer, enabled: bool) -> dict[str, Any] | None:
    """An actor's answer to `wire_endpoint`: its stream's endpoint on this node's address,
    started on first ask; None when direct streams are off (callers then use Ray calls)."""
    if not enabled:
        return None
    import ray.util

    return await server.start(ray.util.get_node_ip_address())


class LocalPeers:
    """In-process twin of RayPeers: the same calls on plain objects, no Ray, no copies.

    Gateways are wired by channel name: a plain object with `submit(requests)` each (a
    `ChannelGateway`, or a test's recorder). Sends addressed to a gateway actor's name are
    handed to the gateways of the channels the requests name."""

    def __init__(self) -> None:
        self.shards: dict[int, Any] = {}
        self.gateways: dict[str, Any] = {}
        self.dropped_sends = 0

    async def connect(self, shards: Iterable[int] = (), gateways: Iterable[str] = ()) -> list[str]:
        """Nothing to open in one process: every shard that is wired is reachable, and a
        gateway actor's name is as long as some channel is wired."""
        return [shard_name(s) for s in shards if s not in self.shards] + ([] if self.gateways else list(gateways))

    async def apply_batch(self, shard: int, sender: str, seq: int, blob: bytes) -> int:
        return int(await self.shards[shard].apply_batch(sender, seq, blob))

    async def submit_sends(self, gateway: str, requests: list[SendRequest], shard: int | None = None) -> dict[str, Any]:
        per_channel: dict[str, list[SendRequest]] = {}
        for request in requests:
            per_channel.setdefault(str(request.get("channel")), []).append(request)
        answer: dict[str, Any] = {"queued": 0, "rejected": 0}
        backlogs = []
        for channel, batch in per_channel.items():
            target = self.gateways.get(channel)
            if target is None:
                self.dropped_sends += len(batch)
                answer["rejected"] += len(batch)
                continue
            result = target.submit(batch)
            if asyncio.iscoroutine(result):
                result = await result
            if isinstance(result, dict):
                answer["queued"] += result.get("queued", 0)
                answer["rejected"] += result.get("rejected", 0)
                backlogs.append(float(result.get("backlog_s") or 0.0))
        answer["backlog_s"] = min(backlogs, default=0.0)
        return answer

    async def deliver_outcomes(self, shard: int, outcomes: list[Outcome]) -> None:
        await self.shards[shard].deliver_outcomes(msgpack.packb(outcomes, use_bin_type=True))

    async def get_profile(self, shard: int, key: str) -> dict[str, Any] | None:
        return await self.shards[shard].get_profile(key)  # type: ignore[no-any-return]

    async def system_status(self) -> dict[str, Any]:
        shards = [await s.status() for s in self.shards.values()]
        gateways = [g.stats() for g in self.gateways.values()]
        return {"shards": shards, "gateways": gateways, "ingresses": []}
