"""The ingest fast path: a compiled decoder for JSON bodies whose every event is valid.

The general path (itinerary.engine.ingest) builds every value of a body in Python and then
validates each event: about 40 % of what the ingress's and a shard's code spend on an
event (scripts/bench_stages.py). Yet a shard keeps only an event's core fields and the few
top-level fields its journeys, rules and profile fields read (`Catalog.payload_fields`).
This decoder, built from the catalog, reads exactly those with msgspec: the core fields
are checked in C as they are decoded, the read fields are built, and every other value is
skipped without being built.

It answers only what it can answer exactly like the general path: a body it decodes in
full, with every event valid. Anything else (not JSON, a bad or doubtful event, JSON-LD,
an event without `_id` whose id must be derived from all of it) returns None, and the
caller takes the general path, which gives each rejected event its reason. One difference
is deliberate: a field no journey reads is skipped, so nesting there deeper than the
general parser's 200 levels is not refused (Python's recursion limit bounds the decoder,
so no input can overflow the stack). What a shard keeps is held to MAX_DEPTH levels, the
bound msgpack events have; a body with a deeper kept value goes the general way.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from itinerary.engine.expressions import event_fields
from itinerary.engine.ingest import Accepted
from itinerary.engine.xdm import MAX_DEPTH

if TYPE_CHECKING:
    from itinerary.catalog import Catalog
    from itinerary.config.runtime import IngressSettings

__all__ = ["FastJsonDecoder"]

# RFC 3339 in the one spelling clients send: uppercase T and Z, at most microseconds, an
# offset within a day. Everything this admits, and datetime.fromisoformat reads, the
# general path's validator accepts with the same instant (tests/test_fastjson.py); other
# spellings it may accept too are left to it.
_RFC3339 = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])\Z"
)
# JSON-LD keys start with `xdm:`; one spelled with an escape holds one of the escapes below
# (JSON escapes those letters no other way). Searched by `re`, twice as fast as `in` here.
_XDM = re.compile(rb"xdm:")
_XDM_ESCAPE = re.compile(rb"\\u00(?:78|64|6[dD]|3[aA])")
_CORE = frozenset({"timestamp", "_id", "eventType", "identityMap", "_ts"})
_IDENTITY_KEYS = frozenset({"id", "primary", "authenticatedState"})


def identities_or_none(identity_map: Any) -> int | None:
    """How many identities a decoded identityMap holds when the general path's validator
    would take it (itinerary.engine.ingest.IdentityMap) and its entries hold no keys but
    `id`, `primary` and `authenticatedState`, else None.

    The map reaches the shard as the client sent it, so other keys would have to be
    checked for depth: such maps are rare and left to the general path. In Python rather
    than as a msgspec type, because typed entries would have to be converted back into
    dicts, which cost more than this check."""
    if type(identity_map) is not dict or not identity_map:
        return None
    count = 0
    for namespace, entries in identity_map.items():
        if type(entries) is not list or not entries or ":" in namespace or not 0 < len(namespace) <= 256:
            return None
        for entry in entries:
            if type(entry) is not dict:
                return None
            ident = entry.get("id")
            if type(ident) is not str or not 0 < len(ident) <= 1024:
                return None
            if len(entry) > 1 and (
                type(entry.get("primary", False)) is not bool
                or type(entry.get("authenticatedState", "")) is not str
                or not entry.keys() <= _IDENTITY_KEYS  # other keys, of any depth: the general path keeps them
            ):
                return None
        count += len(entries)
    return count


def nested_deeper_than(values: list[Any], levels: int) -> bool:
    """Whether any of `values` (dicts and lists) nests more than `levels` levels deep.

    What the fast path keeps goes on to the shard, so it is held to the bound of what any
    event may nest (MAX_DEPTH, with the event itself the first level); msgspec would
    decode far deeper. Level by level, like the general path's check of msgpack events
    (`ingest._not_json`), without its key and value type checks: every value here came from
    the JSON decoder, and calling that check instead cost ~0.8 µs per event (the fast
    path's read went from 0.73-0.79 to 0.84 of the general path's, interleaved)."""
    depth = 1
    level = values
    while level:
        below: list[Any] = []
        push = below.append
        for node in level:
            for value in node.values() if type(node) is dict else node:
                if type(value) is dict or type(value) is list:
                    push(value)
        if below and depth >= levels:
            return True
        level = below
        depth += 1
    return False


class FastJsonDecoder:
    """Decodes a JSON array of valid events into the accepted events the router takes, or
    answers None when the general path must judge the body.

    `read_fields` are the top-level fields anything reads beyond the core ones, and
    `kept_fields` those of them a shard keeps (rules read the others at the ingress); build
    it with `for_catalog`, which also says when no such decoder can exist."""

    def __init__(
        self,
        read_fields: frozenset[str],
        kept_fields: frozenset[str],
        *,
        max_events: int,
        max_identities: int,
        max_future_skew: float,
    ) -> None:
        self.max_events = max_events
        self.max_identities = max_identities
        self.max_future_skew = max_future_skew
        self.extra = tuple(sorted(read_fields - _CORE))
        self._attrs = tuple(f"f{i}" for i in range(len(self.extra)))
        # (attribute, field, kept): a kept value is checked for depth before it goes on
        self._fields = tuple(
            (attr, name, name in kept_fields) for attr, name in zip(self._attrs, self.extra, strict=True)
        )
        raw = msgspec.Raw | msgspec.UnsetType
        fields: list[tuple[str, Any, Any]] = [
            ("timestamp", Annotated[str, msgspec.Meta(max_length=64, pattern=_RFC3339)], msgspec.NODEFAULT),
            ("identityMap", dict[str, Any], msgspec.NODEFAULT),
            ("id", Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | msgspec.UnsetType, msgspec.UNSET),
            ("eventType", Annotated[str, msgspec.Meta(max_length=256)] | msgspec.UnsetType, msgspec.UNSET),
            ("jsonld_id", raw, msgspec.UNSET),
            ("jsonld_type", raw, msgspec.UNSET),
        ]
        fields.extend((attr, Any, msgspec.UNSET) for attr in self._attrs)
        rename = {"id": "_id", "jsonld_id": "@id", "jsonld_type": "@type"}
        rename.update(zip(self._attrs, self.extra, strict=True))
        event = msgspec.defstruct("FastEvent", fields, rename=rename, kw_only=True)
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(list[event])  # type: ignore[valid-type]
        self._keys = msgspec.json.Decoder(list[dict[str, msgspec.Raw]])

    @classmethod
    def for_settings(cls, catalog: Catalog, settings: IngressSettings) -> FastJsonDecoder | None:
        """The decoder an ingress with these settings uses, or None (turned off, or see
        for_catalog)."""
        if not settings.fast_json:
            return None
        return cls.for_catalog(
            catalog,
            max_events=settings.max_events_per_request,
            max_identities=settings.max_identities,
            max_future_skew=settings.max_future_skew.total_seconds(),
        )

    @classmethod
    def for_catalog(cls, catalog: Catalog, **limits: Any) -> FastJsonDecoder | None:
        """The decoder for a catalog, or None when some event definition, or its rule, may
        read whole events: the shard then keeps them whole, so nothing can be skipped."""
        kept: set[str] = set()
        for fields in catalog.payload_fields.values():
            if fields is None:
                return None
            kept |= fields
        read = set(kept)
        for definition in catalog.config.events.values():
            fields = event_fields(definition.rule) if definition.rule else frozenset()
            if fields is None:
                return None
            read |= fields
        if catalog.by_event_id:
            read.add("_experience")
        return cls(frozenset(read), frozenset(kept), **limits)

    def decode(self, body: bytes, now: float) -> list[Accepted] | None:
        """`(index, event)` for every event of the body, each event holding its core
        fields, `_ts` and the read fields it has; None: take the general path."""
        if _XDM.search(body) is not None:  # JSON-LD, or maybe: the general path normalises it
            return None
        if not body.isascii():
            try:  # msgspec skips unread strings without checking their UTF-8; the general path refuses
                body.decode("utf-8")
            except UnicodeDecodeError:
                return None
        try:
            events: list[Any] = self._decoder.decode(body)
        except (msgspec.DecodeError, RecursionError):
            return None
        count = len(events)
        if count == 0 or count > self.max_events:
            return None
        if b"\\u00" in body and _XDM_ESCAPE.search(body) is not None and not self._no_jsonld_keys(body):
            return None
        horizon = now + self.max_future_skew
        max_identities = self.max_identities
        unset = msgspec.UNSET
        parse_time = datetime.fromisoformat
        fields = self._fields
        accepted: list[Accepted] = []
        append = accepted.append
        try:
            for index, item in enumerate(events):
                if item.id is unset or item.jsonld_id is not unset or item.jsonld_type is not unset:
                    return None  # an id derived from the whole event; JSON-LD
                identity_map = item.identityMap
                identities = identities_or_none(identity_map)
                if identities is None or identities > max_identities:
                    return None
                ts = parse_time(item.timestamp).timestamp()
                if ts > horizon:
                    return None
                event: dict[str, Any] = {"timestamp": item.timestamp, "_id": item.id}
                if item.eventType is not unset:
                    event["eventType"] = item.eventType
                event["identityMap"] = identity_map
                event["_ts"] = ts
                containers = []
                for attr, name, kept in fields:
                    value = getattr(item, attr)
                    if value is not unset:
                        event[name] = value
                        if kept and (type(value) is dict or type(value) is list):
                            containers.append(value)
                # What a rule alone reads is not kept, and the rules' evaluator takes any
                # depth (itinerary.engine.expressions); what is kept is held to MAX_DEPTH.
                if containers and nested_deeper_than(containers, MAX_DEPTH - 1):
                    return None
                append((index, event))
        except ValueError:  # a calendar date that does not exist; a read value that does not parse
            return None
        return accepted

    def _no_jsonld_keys(self, body: bytes) -> bool:
        try:
            items = self._keys.decode(body)
        except (msgspec.DecodeError, RecursionError):
            return False
        return not any(key.startswith("xdm:") for item in items for key in item)
