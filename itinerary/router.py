"""Routes validated events: event definition, routing identity, profile key, shard.

Pure and batch-oriented: the ingress calls it once per request. Each routed event leaves
as its record, already msgpack-encoded: that encoding is what its shard logs and keeps,
so the size limit is measured on it, and an event that cannot be encoded is refused on
its own here instead of failing the whole batch it would join (see `pack_batch`).
"""

from __future__ import annotations

from typing import Any

import msgpack

from itinerary.catalog import Catalog
from itinerary.engine.ingest import exception_reason, pick_identity
from itinerary.engine.routing import RoutingTable, profile_key

# [profile key, event definition name, packed event, ingest time, event id, identityMap]: the
# id and identities travel beside the packed event so a shard can apply the many events no
# journey reads without decoding them. For those events (definitions outside
# `Catalog.payload_events`) the packed event is None: nothing downstream reads it, and
# leaving it out makes batches, the shard's log and its replay about four times smaller.
# The others carry only the top-level fields their journeys and profile fields read
# (`Catalog.payload_fields`): the demo's cart adds keep `productListItems`, 150 of their
# 1,000 packed bytes, which a shard decodes in an eighth of the time.
Record = list[Any]
PackedRecord = bytes
"""A Record in its msgpack encoding; `pack_batch` joins them into what a shard applies."""


class EventRouter:
    """Turns accepted events into per-shard packed records, or a rejection reason per event.

    `max_record_bytes` bounds each packed record, what a shard stores of an event: its
    identities, its id and the fields its journeys read (all of it for a definition whose
    journeys read the whole event). None: no bound."""

    def __init__(self, catalog: Catalog, table: RoutingTable, max_record_bytes: int | None = None) -> None:
        self.catalog = catalog
        self.table = table
        self.max_record_bytes = max_record_bytes

    def route(
        self, accepted: list[tuple[int, dict[str, Any]]], now: float
    ) -> tuple[dict[int, list[PackedRecord]], list[dict[str, Any]]]:
        per_shard: dict[int, list[PackedRecord]] = {}
        rejected: list[dict[str, Any]] = []
        match = self.catalog.match
        shard_of = self.table.shard_of
        payload_fields = self.catalog.payload_fields
        limit = self.max_record_bytes
        pack = msgpack.Packer().pack  # resets itself after an error, so one serves the batch
        for index, event in accepted:
            matcher = match(event)
            if matcher is None:
                rejected.append({"index": index, "reason": _no_definition(event)})
                continue
            identity = pick_identity(event, matcher.namespaces)
            if identity is None:
                rejected.append(
                    {
                        "index": index,
                        "reason": f"no identity in namespace "
                        f"{' or '.join(matcher.namespaces)} for event {matcher.name!r}",
                    }
                )
                continue
            key = profile_key(*identity)
            name = matcher.name
            try:
                payload: bytes | None = None
                if name in payload_fields:
                    fields = payload_fields[name]
                    payload = pack(event if fields is None else {k: event[k] for k in fields if k in event})
                record = pack([key, name, payload, now, event["_id"], event["identityMap"]])
            except Exception as exc:  # ints beyond 64 bits, lone surrogates, deep nesting
                rejected.append({"index": index, "reason": f"event cannot be encoded: {exception_reason(exc)}"})
                continue
            if limit is not None and len(record) > limit:
                rejected.append(
                    {"index": index, "reason": f"event is {len(record)} bytes as stored, over the limit of {limit}"}
                )
                continue
            shard = shard_of(key)
            records = per_shard.get(shard)
            if records is None:
                records = per_shard[shard] = []
            records.append(record)
        return per_shard, rejected


def pack_batch(records: list[PackedRecord]) -> bytes:
    """The msgpack array of the packed records: what `ProfileShard.apply_batch` takes.

    Joining encodings that already exist is a copy, not a second encoding."""
    return msgpack.Packer().pack_array_header(len(records)) + b"".join(records)


def _no_definition(event: dict[str, Any]) -> str:
    event_type = event.get("eventType")
    if event_type is None:
        return "no event definition matches this event (it has no eventType)"
    return f"no event definition matches eventType {str(event_type)[:80]!r}"
