"""GatewayActor: the Ray-facing shell of the channel gateways it serves.

A gateway actor serves one channel, or the channels of a group (`runtime.gateway_groups`),
for all shards. It unpacks batches of send requests from shards, hands each request to
its channel's `ChannelGateway`, which applies the channel's limits, and routes the
outcomes of all its channels back to the shards that asked, in one call per shard per
flush, or in the answer to the shard's next send call.

The outbox, one per channel whichever actor serves it (`gateway-<channel>`): every
request is written to its channel's store before it is queued, and its final outcome
after the provider answered. A restarted gateway resumes the pending ones; a request it
already knows (a shard replaying its log re-sends what it asked for) is not queued again:
a finished one gets its recorded outcome back, a pending one is already on its way.
Failed and expired messages stay in the store as dead letters with their reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from functools import partial
from typing import Any

import msgpack

from itinerary.actors.coalescer import Coalescer
from itinerary.actors.metrics import GatewayMetrics
from itinerary.actors.names import gateway_name
from itinerary.actors.peers import Peers, offer_stream
from itinerary.actors.stalls import StallWatch
from itinerary.actors.storeio import StoreCalls
from itinerary.actors.tuning import tune_gc
from itinerary.actors.wire import WireServer
from itinerary.catalog import Catalog
from itinerary.channels.gateway import ChannelGateway
from itinerary.config.app import AppConfig
from itinerary.engine.messages import EXPIRED, FAILED, SENT, THROTTLED, Outcome, SendRequest
from itinerary.store.base import DEAD, DONE, OutboxRow
from itinerary.store.factory import open_outbox_store
from itinerary.store.memory import MemoryOutboxStore

_FINAL_STATE = {SENT: DONE, FAILED: DEAD, EXPIRED: DEAD}
PRUNE_EVERY = 60.0  # seconds between sweeps of delivered messages past their retention
PRUNE_SLICE = 2000  # delivered messages forgotten per transaction of a sweep

log = logging.getLogger(__name__)


class HostedChannel:
    """One channel served by a gateway actor: its `ChannelGateway` (queue, limits,
    provider), its outbox, and the counts of what was resumed and resent."""

    def __init__(self, channel: str, app: AppConfig, gateway_kwargs: dict[str, Any]) -> None:
        self.channel = channel
        # The outbox keeps the channel's own name, so moving a channel in or out of a
        # group keeps its pending messages and its history.
        self.outbox_name = gateway_name(channel)
        self.config = app.channels[channel]
        self._kwargs = gateway_kwargs
        self.gateway = ChannelGateway(channel, self.config, **gateway_kwargs)
        storage = app.runtime.storage
        self.outbox = open_outbox_store(storage, app.runtime.data_dir, self.outbox_name)
        self.io_call = StoreCalls(self.outbox_name, inline=isinstance(self.outbox, MemoryOutboxStore))
        self.resumed = 0
        self.resent = 0  # requests already known when submitted again
        self.last_prune = time.monotonic()
        # Ids refused at the door (no outbox row) whose FAILED outcome is not out yet: it is
        # emitted before anything else of the same id, so the first final outcome is it.
        self.unrecorded: Counter[str] = Counter()

    async def start(self) -> list[SendRequest]:
        """Start the gateway; returns the requests the outbox holds pending, now queued again."""
        await self.gateway.start()
        pending = [msgpack.unpackb(b, raw=False) for b in await self.io_call(lambda: list(self.outbox.pending()))]
        if pending:
            self.resumed += len(pending)
            self.gateway.submit(pending)
        return pending

    async def stop(self) -> None:
        await self.gateway.stop()
        # a stopped gateway cannot start again: the next call gets a fresh one
        self.gateway = ChannelGateway(self.channel, self.config, **self._kwargs)

    async def submit(self, requests: list[SendRequest]) -> tuple[dict[str, Any], list[Outcome]]:
        """Record `requests` in the outbox, then queue the ones not seen before (see
        `GatewayActor.submit`). Returns the gateway's answer and the recorded outcomes of
        requests that had finished before."""
        room = self.gateway.room()
        overflow = requests[room:]
        if overflow:
            requests = requests[:room]
        pack = msgpack.Packer(use_bin_type=True).pack
        rows = [(str(r.get("id")), pack(r)) for r in requests]
        overflow_ids = [str(r.get("id")) for r in overflow]
        known = await self.io_call(self._record, rows, overflow_ids, time.time())
        seen = {message_id for message_id, _, _ in known}
        replies: list[Outcome] = []
        if known:
            self.resent += len(known)
            replies = [msgpack.unpackb(outcome, raw=False) for _, _, outcome in known if outcome is not None]
            requests = [r for r in requests if str(r.get("id")) not in seen]
        result: dict[str, Any] = dict(self.gateway.submit(requests))
        if overflow:
            unknown = [r for r in overflow if str(r.get("id")) not in seen]
            refused = self.gateway.refuse_full(unknown)
            self.unrecorded.update(str(r["id"]) for r in refused)
            result["rejected"] += len(unknown)  # malformed ones, or all after stop(), too
        if known:
            result["known"] = len(known)
        return result, replies

    def _record(self, rows: list[tuple[str, bytes]], lookups: list[str], now: float) -> list[OutboxRow]:
        """On the I/O thread: add `rows` as pending and look up `lookups`; the rows known already."""
        known = self.outbox.add(rows, now) if rows else []
        return known + self.outbox.lookup(lookups) if lookups else known

    async def record_final(self, outcomes: list[Outcome], retention: float) -> None:
        """Record the final outcomes among `outcomes`, and sweep old deliveries now and then."""
        pack = msgpack.Packer(use_bin_type=True).pack
        unrecorded = self.unrecorded
        final = [
            (str(o["id"]), _FINAL_STATE[o["outcome"]], pack(o))
            for o in outcomes
            if o["outcome"] in _FINAL_STATE and not (unrecorded and _take(unrecorded, str(o["id"])))
        ]
        if final:
            await self.io_call(self.outbox.finish, final, time.time())
        if time.monotonic() - self.last_prune > PRUNE_EVERY:
            self.last_prune = time.monotonic()
            before = time.time() - retention
            # In slices, each its own I/O job: the outbox's writes go on between them.
            while await self.io_call(self.outbox.prune, before, PRUNE_SLICE) == PRUNE_SLICE:
                pass

    async def stats(self) -> dict[str, Any]:
        stats = self.gateway.stats()
        stats["outbox"] = {
            **await self.io_call(self.outbox.counts),
            "backend": type(self.outbox).__name__,
            "resumed": self.resumed,
            "resent": self.resent,
        }
        return stats


class GatewayActor:
    """A named gateway actor, shared by all shards: `gateway-<channel>` for a channel of
    its own, `gateway-<group>` for a group of `runtime.gateway_groups`."""

    def __init__(self, name: str, app: AppConfig, peers: Peers | None = None, clock: Any = None) -> None:
        # Queued requests are acyclic dicts: default GC thresholds re-scan a deep queue every
        # few thousand allocations, pauses of 25-85 ms measured at 24,000 queued requests,
        # long enough to cost a throttled channel its slots.
        tune_gc()
        hosts = app.gateway_hosts()
        if name not in hosts:
            raise ValueError(f"no gateway {name!r} in the config; there are {sorted(hosts)}")
        self.name = name
        if peers is None:
            from itinerary.actors.peers import RayPeers

            peers = RayPeers(app.runtime.ray_namespace, app.runtime.direct_streams)
        self.peers = peers
        self._stream = WireServer({"submit": self.submit}, name)
        self._direct_streams = app.runtime.direct_streams
        self._shards = app.runtime.shards
        self._stalls = StallWatch(self.name)
        observer = GatewayMetrics()  # keyed by channel inside
        self.channels: dict[str, HostedChannel] = {}
        for channel in hosts[name]:
            kwargs: dict[str, Any] = {
                "outcome_sink": partial(self._deliver, channel),
                "observer": observer,
                "flush_interval": app.runtime.outcome_flush.total_seconds(),
            }
            if clock is not None:
                kwargs["clock"] = clock
            self.channels[channel] = HostedChannel(channel, app, kwargs)
        self._started = False
        self._returns: dict[int, Coalescer] = {}
        # Outcomes only move journeys past their actions: a few tens of ms cost nothing.
        self._outcome_interval = app.runtime.outcome_flush.total_seconds()
        # A throttled notice changes no action (the final outcome does); shards need it only
        # when some journey takes `message.throttled` as an event. On a backlogged channel
        # every message has one, as many as the final outcomes.
        self._route_throttled = Catalog.build(app).engine().cares_about(f"message.{THROTTLED}")
        self._retention = app.runtime.storage.outbox_retention.total_seconds()
        self._misrouted = 0  # requests for a channel this actor does not serve

    def __repr__(self) -> str:
        return f"GatewayActor({self.name})"

    async def _ensure_started(self) -> None:
        if not self._started:
            self._started = True
            self._stalls.start()
            for hosted in self.channels.values():
                pending = await hosted.start()
                if pending:
                    log.info("%s: resuming %d %s messages from the outbox", self.name, len(pending), hosted.channel)

    async def ready(self) -> str:
        await self._ensure_started()
        return self.name

    async def wire_endpoint(self) -> dict[str, Any] | None:
        """Where shards reach this gateway's direct stream (actors/wire.py)."""
        return await offer_stream(self._stream, self._direct_streams)

    async def connect_peers(self) -> list[str]:
        """Reach every shard once, at start (see Peers.connect); returns the shards not reached."""
        return await self.peers.connect(shards=range(self._shards))

    async def submit(self, blob: bytes, shard: int | None = None) -> dict[str, Any]:
        """Record the requests in their channels' outboxes, then queue the ones not seen before.

        Requests beyond a channel's queue room are refused at the door (FAILED, `queue
        full`) without an outbox row: a channel fed faster than its limit for long refuses
        most of what it is sent, and writing each refusal twice (pending, then dead) cost
        more than a delivery and grew the outbox without bound. They are still looked up,
        so a resend of a known message gets its recorded outcome, never a refusal.

        The answer sums the channels' counts; `backlog_s` is the smallest backlog among
        the channels served, so a shard that holds its next call that long delays no
        channel. `shard`, the calling shard's index when the caller is one, gets the
        outcomes waiting for it in the answer, as bytes under "outcomes" (see
        `_answer_with_outcomes`)."""
        await self._ensure_started()
        requests: list[SendRequest] = msgpack.unpackb(blob, raw=False)
        per_channel: dict[str, list[SendRequest]] = {}
        misrouted = 0
        for request in requests:
            channel = request.get("channel") if isinstance(request, dict) else None
            if isinstance(channel, str) and channel in self.channels:
                per_channel.setdefault(channel, []).append(request)
            else:
                misrouted += 1
        if misrouted:
            # A shard whose config places channels differently (a deployment half way
            # through a change): no gateway here can give these an outcome.
            self._misrouted += misrouted
            log.error("%s: %d send requests for channels it does not serve", self.name, misrouted)
        answers = await asyncio.gather(*(self.channels[c].submit(batch) for c, batch in per_channel.items()))
        result: dict[str, Any] = {"queued": 0, "rejected": misrouted}
        for answer, replies in answers:
            if replies:
                self._route(replies)  # the shard asked again: tell it again how it ended
            result["queued"] += answer["queued"]
            result["rejected"] += answer["rejected"]
            if "known" in answer:
                result["known"] = result.get("known", 0) + answer["known"]
        result["backlog_s"] = min(hosted.gateway.current_backlog() for hosted in self.channels.values())
        self._answer_with_outcomes(result, shard)
        return result

    def _answer_with_outcomes(self, result: dict[str, Any], shard: int | None) -> None:
        """Put the outcomes waiting for the calling shard into the answer to its call.

        Under load a shard calls every few tens of ms with more sends, and an actor call
        costs about as much CPU on each side as the hundreds of outcomes it carries (1-2 ms
        on the development machine): the answer it waits for anyway takes them. Outcomes
        that come after it wait for the shard's next call, and the gateway's own call goes
        only when none came within the outcome interval (a shard that stopped sending)."""
        coalescer = self._returns.get(shard) if shard is not None else None
        if coalescer is None:
            return
        outcomes = coalescer.take()
        if outcomes:
            result["outcomes"] = msgpack.packb(outcomes, use_bin_type=True)

    async def dead_letters(self, limit: int = 100, channel: str | None = None) -> list[dict[str, Any]]:
        """The most recent messages that failed for good or expired, with their reasons:
        up to `limit` per channel served, or of `channel` alone."""
        if channel is not None and channel not in self.channels:
            raise ValueError(f"{self.name} does not serve channel {channel!r}")
        chosen = [self.channels[channel]] if channel is not None else list(self.channels.values())
        rows = [row for hosted in chosen for row in await hosted.io_call(hosted.outbox.dead_letters, limit)]
        return [msgpack.unpackb(b, raw=False) for b in rows]

    async def stats(self) -> dict[str, Any]:
        """This actor's own figures, and each channel's under "channels"."""
        await self._ensure_started()
        return {
            "name": self.name,
            "channels": [await hosted.stats() for hosted in self.channels.values()],
            "shard_calls": {str(shard): c.calls for shard, c in sorted(self._returns.items())},
            # Outcomes that went back in the answers to shards' send calls instead of a call.
            "outcomes_on_answers": {str(shard): c.taken for shard, c in sorted(self._returns.items())},
            "misrouted": self._misrouted,
            "stream": self._stream.summary(),
            "stalls": self._stalls.summary(),
        }

    async def stop(self) -> None:
        if self._started:
            for hosted in self.channels.values():
                await hosted.stop()
            self._started = False
            await self._stalls.stop()
        await self._stream.close()

    async def _deliver(self, channel: str, outcomes: list[Outcome]) -> None:
        """A channel's outcome sink: record final outcomes, then send them to their shards."""
        await self.channels[channel].record_final(outcomes, self._retention)
        if not self._route_throttled:
            outcomes = [o for o in outcomes if o["outcome"] != THROTTLED]
        self._route(outcomes)

    def _route(self, outcomes: list[Outcome]) -> None:
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


def _take(ids: Counter[str], message_id: str) -> bool:
    """Count `message_id` off `ids` if it is there."""
    left = ids.get(message_id)
    if not left:
        return False
    if left == 1:
        del ids[message_id]
    else:
        ids[message_id] = left - 1
    return True
