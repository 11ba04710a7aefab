"""Every call from one actor to another goes through a `Peers` object.

`RayPeers` finds peers by name in the Ray namespace and makes batched remote calls;
`LocalPeers` is its in-process twin, wiring plain objects together for tests and for the
single-process ceiling benchmark. Nothing else in the data plane calls Ray directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Protocol

import msgpack

from itinerary.actors.names import SUPERVISOR, shard_name
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


class RayPeers:
    """Peers reached through Ray by actor name; handles are cached. Callers batch (see
    `Coalescer` and `ShardBatcher`) and bound what they have in flight."""

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self._handles: dict[str, Any] = {}

    def _handle(self, name: str) -> Any:
        handle = self._handles.get(name)
        if handle is None:
            import ray

            handle = ray.get_actor(name, namespace=self._namespace)
            self._handles[name] = handle
        return handle

    def forget(self, name: str) -> None:
        self._handles.pop(name, None)

    async def _call(self, name: str, method: str, *args: Any) -> Any:
        """One awaited call; a peer that is gone is looked up again by name next time (the
        supervisor may have re-created it under the same name)."""
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
                await asyncio.wait_for(self._call(name, "ready"), CONNECT_TIMEOUT)
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
