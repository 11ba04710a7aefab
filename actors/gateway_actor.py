"""GatewayActor: the Ray-facing shell of a channel gateway.

It unpacks batches of send requests from shards, hands them to the `ChannelGateway` that
applies the channel's limits, and routes the outcomes back to the shards that asked, in
one call per shard per flush.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import msgpack

from itinerary.actors.coalescer import Coalescer
from itinerary.actors.metrics import GatewayMetrics
from itinerary.actors.names import gateway_name
from itinerary.actors.peers import Peers
from itinerary.channels.gateway import ChannelGateway
from itinerary.config.app import AppConfig
from itinerary.engine.messages import Outcome

log = logging.getLogger(__name__)


class GatewayActor:
    """One per configured channel, shared by all shards, named `gateway-<channel>`."""

    def __init__(self, channel: str, app: AppConfig, peers: Peers | None = None, clock: Any = None) -> None:
        self.channel = channel
        self.name = gateway_name(channel)
        if peers is None:
            from itinerary.actors.peers import RayPeers

            peers = RayPeers(app.runtime.ray_namespace)
        self.peers = peers
        self._config = app.channels[channel]
        self._kwargs: dict[str, Any] = {
            "outcome_sink": self._deliver,
            "observer": GatewayMetrics(),
            "flush_interval": app.runtime.outcome_flush.total_seconds(),
        }
        if clock is not None:
            self._kwargs["clock"] = clock
        self.gateway = ChannelGateway(channel, self._config, **self._kwargs)
        self._started = False
        self._returns: dict[int, Coalescer] = {}
        # Outcomes only move journeys past their actions: a few tens of ms cost nothing.
        self._outcome_interval = app.runtime.outcome_flush.total_seconds()

    def __repr__(self) -> str:
        return f"GatewayActor({self.name})"

    async def _ensure_started(self) -> None:
        if not self._started:
            self._started = True
            await self.gateway.start()

    async def ready(self) -> str:
        await self._ensure_started()
        return self.name

    async def submit(self, blob: bytes) -> dict[str, int]:
        await self._ensure_started()
        return self.gateway.submit(msgpack.unpackb(blob, raw=False))

    async def stats(self) -> dict[str, Any]:
        await self._ensure_started()
        return self.gateway.stats()

    async def stop(self) -> None:
        if self._started:
            await self.gateway.stop()
            # a stopped gateway cannot start again: the next call gets a fresh one
            self.gateway = ChannelGateway(self.channel, self._config, **self._kwargs)
            self._started = False

    async def _deliver(self, outcomes: list[Outcome]) -> None:
        per_shard: dict[int, list[Outcome]] = {}
        for outcome in outcomes:
            per_shard.setdefault(outcome["shard"], []).append(outcome)
        for shard, batch in per_shard.items():
            coalescer = self._returns.get(shard)
            if coalescer is None:
                coalescer = self._returns[shard] = Coalescer(
                    f"{self.name}->shard-{shard}",
                    partial(self.peers.deliver_outcomes, shard),
                    min_interval=self._outcome_interval,
                )
            coalescer.add(batch)
