"""GatewayActor: the Ray-facing shell of a channel gateway.

It unpacks batches of send requests from shards, hands them to the `ChannelGateway` that
applies the channel's limits, and routes the outcomes back to the shards that asked, in
one call per shard per flush.

The outbox: every request is written to the gateway's store before it is queued, and its
final outcome after the provider answered. A restarted gateway resumes the pending ones;
a request it already knows (a shard replaying its log re-sends what it asked for) is not
queued again: a finished one gets its recorded outcome back, a pending one is already on
its way. Failed and expired messages stay in the store as dead letters with their reason.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from functools import partial
from typing import Any

import msgpack

from itinerary.actors.coalescer import Coalescer
from itinerary.actors.metrics import GatewayMetrics
from itinerary.actors.names import gateway_name
from itinerary.actors.peers import Peers
from itinerary.actors.stalls import StallWatch
from itinerary.actors.storeio import StoreCalls
from itinerary.actors.tuning import tune_gc
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


class GatewayActor:
    """One per configured channel, shared by all shards, named `gateway-<channel>`."""

    def __init__(self, channel: str, app: AppConfig, peers: Peers | None = None, clock: Any = None) -> None:
        # Queued requests are acyclic dicts: default GC thresholds re-scan a deep queue every
        # few thousand allocations, pauses of 25-85 ms measured at 24,000 queued requests,
        # long enough to cost a throttled channel its slots.
        tune_gc()
        self.channel = channel
        self.name = gateway_name(channel)
        if peers is None:
            from itinerary.actors.peers import RayPeers

            peers = RayPeers(app.runtime.ray_namespace)
        self.peers = peers
        self._config = app.channels[channel]
        self._shards = app.runtime.shards
        self._stalls = StallWatch(self.name)
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
        # A throttled notice changes no action (the final outcome does); shards need it only
        # when some journey takes `message.throttled` as an event. On a backlogged channel
        # every message has one, as many as the final outcomes.
        self._route_throttled = Catalog.build(app).engine().cares_about(f"message.{THROTTLED}")
        storage = app.runtime.storage
        self.outbox = open_outbox_store(storage, app.runtime.data_dir, self.name)
        self._io_call = StoreCalls(self.name, inline=isinstance(self.outbox, MemoryOutboxStore))
        self._retention = storage.outbox_retention.total_seconds()
        self._last_prune = time.monotonic()
        self._resumed = 0
        self._resent = 0  # requests already known when submitted again
        # Ids refused at the door (no outbox row) whose FAILED outcome is not out yet: it is
        # emitted before anything else of the same id, so the first final outcome is it.
        self._unrecorded: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"GatewayActor({self.name})"

    async def _ensure_started(self) -> None:
        if not self._started:
            self._started = True
            self._stalls.start()
            await self.gateway.start()
            pending = [msgpack.unpackb(b, raw=False) for b in await self._io_call(lambda: list(self.outbox.pending()))]
            if pending:
                self._resumed += len(pending)
                log.info("%s: resuming %d messages from the outbox", self.name, len(pending))
                self.gateway.submit(pending)

    async def ready(self) -> str:
        await self._ensure_started()
        return self.name

    async def connect_peers(self) -> list[str]:
        """Reach every shard once, at start (see Peers.connect); returns the shards not reached."""
        return await self.peers.connect(shards=range(self._shards))

    async def submit(self, blob: bytes, shard: int | None = None) -> dict[str, Any]:
        """Record the requests in the outbox, then queue the ones not seen before.

        Requests beyond the queue's room are refused at the door (FAILED, `queue full`)
        without an outbox row: a channel fed faster than its limit for long refuses most
        of what it is sent, and writing each refusal twice (pending, then dead) cost more
        than a delivery and grew the outbox without bound. They are still looked up, so a
        resend of a known message gets its recorded outcome, never a refusal.

        `shard`, the calling shard's index when the caller is one, gets the outcomes
        waiting for it in the answer, as bytes under "outcomes" (see
        `_answer_with_outcomes`)."""
        await self._ensure_started()
        requests: list[SendRequest] = msgpack.unpackb(blob, raw=False)
        room = self.gateway.room()
        overflow = requests[room:]
        if overflow:
            requests = requests[:room]
        pack = msgpack.Packer(use_bin_type=True).pack
        rows = [(str(r.get("id")), pack(r)) for r in requests]
        overflow_ids = [str(r.get("id")) for r in overflow]
        known = await self._io_call(self._record, rows, overflow_ids, time.time())
        seen = {message_id for message_id, _, _ in known}
        if known:
            self._resent += len(known)
            replies = [msgpack.unpackb(outcome, raw=False) for _, _, outcome in known if outcome is not None]
            if replies:
                self._route(replies)  # the shard asked again: tell it again how it ended
            requests = [r for r in requests if str(r.get("id")) not in seen]
        result = self.gateway.submit(requests)
        if overflow:
            unknown = [r for r in overflow if str(r.get("id")) not in seen]
            refused = self.gateway.refuse_full(unknown)
            self._unrecorded.update(str(r["id"]) for r in refused)
            result["rejected"] += len(unknown)  # malformed ones, or all after stop(), too
        if known:
            result["known"] = len(known)
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

    def _record(self, rows: list[tuple[str, bytes]], lookups: list[str], now: float) -> list[OutboxRow]:
        """On the I/O thread: add `rows` as pending and look up `lookups`; the rows known already."""
        known = self.outbox.add(rows, now) if rows else []
        return known + self.outbox.lookup(lookups) if lookups else known

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent messages that failed for good or expired, with their reasons."""
        return [msgpack.unpackb(b, raw=False) for b in await self._io_call(self.outbox.dead_letters, limit)]

    async def stats(self) -> dict[str, Any]:
        await self._ensure_started()
        stats = self.gateway.stats()
        stats["outbox"] = {
            **await self._io_call(self.outbox.counts),
            "backend": type(self.outbox).__name__,
            "resumed": self._resumed,
            "resent": self._resent,
        }
        stats["shard_calls"] = {str(shard): c.calls for shard, c in sorted(self._returns.items())}
        # Outcomes that went back in the answers to shards' send calls instead of a call.
        stats["outcomes_on_answers"] = {str(shard): c.taken for shard, c in sorted(self._returns.items())}
        stats["stalls"] = self._stalls.summary()
        return stats

    async def stop(self) -> None:
        if self._started:
            await self.gateway.stop()
            # a stopped gateway cannot start again: the next call gets a fresh one
            self.gateway = ChannelGateway(self.channel, self._config, **self._kwargs)
            self._started = False
            await self._stalls.stop()

    async def _deliver(self, outcomes: list[Outcome]) -> None:
        """The gateway's outcome sink: record final outcomes, then send them to their shards."""
        pack = msgpack.Packer(use_bin_type=True).pack
        unrecorded = self._unrecorded
        final = [
            (str(o["id"]), _FINAL_STATE[o["outcome"]], pack(o))
            for o in outcomes
            if o["outcome"] in _FINAL_STATE and not (unrecorded and _take(unrecorded, str(o["id"])))
        ]
        if final:
            await self._io_call(self.outbox.finish, final, time.time())
        if time.monotonic() - self._last_prune > PRUNE_EVERY:
            self._last_prune = time.monotonic()
            before = time.time() - self._retention
            # In slices, each its own I/O job: the outbox's writes go on between them.
            while await self._io_call(self.outbox.prune, before, PRUNE_SLICE) == PRUNE_SLICE:
                pass
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
