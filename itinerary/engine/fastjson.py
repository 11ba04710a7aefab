"""The ingest fast path: a compiled decoder for JSON bodies whose every event is valid.

The general path (itinerary.engine.ingest) parses the whole body into Python objects and
then validates every event: 26 us an event of the 70 the pipeline spends on one. Yet a
shard keeps only a few fields of an event (its core fields and those its journeys read,
`Catalog.payload_fields`). This decoder, built from the catalog, reads exactly those with
msgspec: the core fields are checked in C as they are decoded, every other value is
skipped without being built, and the fields a journey reads are handed, as their raw JSON
text, to the parser the general path uses, so their values are the same to the bit.

It answers only what it can answer exactly like the general path: a body it decodes in
full, with every event valid. Anything else (not JSON, a bad or doubtful event, JSON-LD,
an event without `_id` whose id must be derived from all of it) returns None, and the
caller takes the general path, which gives each rejected event its reason. One difference
is deliberate and harmless: a field no journey reads is skipped, so nesting deeper than
the general parser's 200 levels there is not refused (a few hundred levels on, msgspec
refuses it too). Python's recursion limit bounds that, so no input can overflow the stack.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from itinerary.engine.expressions import event_fields
from itinerary.engine.ingest import Accepted

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
# A key spelling `xdm:` with an escape holds one of these (JSON escapes those letters no other way).
_XDM_ESCAPE = re.compile(rb"\\u00(?:78|64|6[dD]|3[aA])")
_CORE = frozenset({"timestamp", "_id", "eventType", "identityMap", "_ts"})

_IDENTITY_KEYS = frozenset({"id", "primary", "authenticatedState"})


def identities_or_none(identity_map: Any) -> int | None:
    """How many identities a decoded identityMap holds when the general path's validator
    would take it as it is (itinerary.engine.ingest.IdentityMap), else None.

    In Python rather than as a msgspec type: the map must reach the shard exactly as the
    client sent it, other keys and their order included, and typed entries would have to
    be converted back (which cost more than this check)."""
    if type(identity_map) is not dict or not identity_map:
        return None
    count = 0
    for namespace, entries in identity_map.items():
        if not 0 < len(namespace) <= 256 or ":" in namespace or type(entries) is not list or not entries:
            return None
        for entry in entries:
            if type(entry) is not dict:
                return None
            ident = entry.get("id")
            if type(ident) is not str or not 0 < len(ident) <= 1024:
                return None
            if len(entry) > 1 and not _other_keys_valid(entry):
                return None
        count += len(entries)
    return count


def _other_keys_valid(entry: dict[str, Any]) -> bool:
    primary = entry.get("primary", False)
    state = entry.get("authenticatedState", "")
    return type(primary) is bool and type(state) is str


class FastJsonDecoder:
    """Decodes a JSON array of valid events into the accepted events the router takes, or
    answers None when the general path must judge the body.

    `read_fields` are the top-level fields anything downstream reads beyond the core
    ones; build it with `for_catalog`, which also says when no such decoder can exist."""

    def __init__(
        self,
        read_fields: frozenset[str],
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
        read: set[str] = set()
        for fields in catalog.payload_fields.values():
            if fields is None:
                return None
            read |= fields
        for definition in catalog.config.events.values():
            fields = event_fields(definition.rule) if definition.rule else frozenset()
            if fields is None:
                return None
            read |= fields
        if catalog.by_event_id:
            read.add("_experience")
        return cls(frozenset(read), **limits)

    def decode(self, body: bytes, now: float) -> list[Accepted] | None:
        """`(index, event)` for every event of the body, each event holding its core
        fields, `_ts` and the read fields it has; None: take the general path."""
        if b"xdm:" in body:  # JSON-LD, or maybe: the general path normalises it
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
        if _XDM_ESCAPE.search(body) is not None and not self._no_jsonld_keys(body):  # `xdm:`, escaped
            return None
        horizon = now + self.max_future_skew
        max_identities = self.max_identities
        unset = msgspec.UNSET
        parse_time = datetime.fromisoformat
        extra = tuple(zip(self._attrs, self.extra, strict=True))
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
                for attr, name in extra:
                    value = getattr(item, attr)
                    if value is not unset:
                        event[name] = value
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
