"""Profiles as virtual actors: plain dict state plus the logic that applies inputs to it.

A profile holds its identities, attributes, the ids of its recent events (duplicates are
ignored), its journey instances and, per journey, how often it entered and when it last
left (for re-entrance rules). `JourneyEngine` applies events, timers and outcomes to a
profile and returns effects; it never reads the clock and never does I/O.

Profile keys: key, ids {namespace: [id, ...]}, attrs {name: value, "identities": {ns: id}},
seen {event id: None} (oldest first), journeys {journey id: instance}, hist {journey id: [entries, last exit]},
created, updated, size (bytes held by attribute values and identities, see below).

Size: what events write into a profile is bounded so that no client can grow one without
limit. Packing a whole profile on every write would cost more than the write, so the
parts are bounded instead: at most `max_attributes` attributes, each value at most
`max_attribute_bytes`, and attribute values and identities together at most
`max_profile_bytes`, kept as a running total in `size` (strings count their UTF-8 length,
numbers 9 bytes, lists and objects their msgpack length; an identity counts its namespace
and id, twice for a namespace's first id, which `attrs.identities` repeats). A write that
would go beyond a bound is skipped, the rest of the event still applies. The other parts
are bounded by configuration: `seen` by `recent_event_ids` ids of at most 256 characters,
`journeys` and `hist` by one entry per journey (an instance holds the event that moved it
last, at most `max_event_bytes`). docs/operations.md ("Limits") adds them up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgpack

from itinerary.engine import journey as jr
from itinerary.engine.effects import Effect

FieldMapping = tuple[tuple[str, Callable[[Mapping[str, Any]], Any]], ...]

IDENTITIES = "identities"  # the attribute that mirrors each namespace's first id
_ABSENT: Any = object()
_SCALAR_BYTES = 9  # the most msgpack spends on a number, a bool or nil
_INT_RANGE = range(-(2**63), 2**64)  # what msgpack can encode (and so a snapshot can hold)


def text_size(text: str) -> int:
    """UTF-8 length of a string, without encoding it when it is ASCII (an O(1) test)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def value_size(value: Any) -> int | None:
    """Bytes an attribute value takes (see the module docstring), or None when it cannot be
    stored at all: an int beyond 64 bits or a foreign object would break the shard's
    snapshot long after the event that brought it."""
    kind = type(value)
    if kind is str:
        return text_size(value)
    if kind is float or kind is bool or value is None:
        return _SCALAR_BYTES
    if kind is int:
        return _SCALAR_BYTES if value in _INT_RANGE else None
    try:
        return len(msgpack.packb(value))
    except Exception:  # too large an int inside, too deep, not msgpack data
        return None


class JourneyEngine:
    """Runs every live journey for the profiles of one shard: entry, waits, outcomes.

    Journeys are indexed by the events that start them and the events their waiting nodes
    take, so an event costs nothing for journeys that do not care about it. Older versions
    are kept so that running instances finish on the version they started on.
    """

    def __init__(
        self,
        journeys: Iterable[jr.CompiledJourney],
        *,
        profile_fields: Mapping[str, FieldMapping] | None = None,
        recent_event_ids: int = 64,
        max_ids_per_namespace: int = 8,
        max_attributes: int = 200,
        max_attribute_bytes: int = 4 * 1024,
        max_profile_bytes: int = 64 * 1024,
    ) -> None:
        self._versions: dict[tuple[str, int], jr.CompiledJourney] = {}
        self._latest: dict[str, jr.CompiledJourney] = {}
        self._entries: dict[str, list[jr.CompiledJourney]] = {}
        self._listeners: dict[str, list[jr.CompiledJourney]] = {}
        self._fields = dict(profile_fields or {})
        self._recent = recent_event_ids
        self._max_ids = max_ids_per_namespace
        self._max_attrs = max_attributes
        self._max_value = max_attribute_bytes
        self._budget = max_profile_bytes
        self.install(journeys)

    def install(self, journeys: Iterable[jr.CompiledJourney]) -> None:
        """Add journey versions; the highest version of an id takes new entries."""
        for journey in journeys:
            self._versions[(journey.id, journey.version)] = journey
            current = self._latest.get(journey.id)
            if current is None or journey.version >= current.version:
                self._latest[journey.id] = journey
        self._entries = {}
        self._listeners = {}
        for journey in self._latest.values():
            self._entries.setdefault(journey.entry_event, []).append(journey)
        for journey in self._versions.values():
            for name in journey.listens:
                group = self._listeners.setdefault(name, [])
                if all(j.id != journey.id for j in group):
                    group.append(journey)
        self.payload_events = frozenset(
            [*self._entries, *self._listeners, *(name for name, mapping in self._fields.items() if mapping)]
        )

    @property
    def journeys(self) -> list[jr.CompiledJourney]:
        return list(self._latest.values())

    def cares_about(self, event_name: str) -> bool:
        return event_name in self._entries or event_name in self._listeners

    def needs_payload(self, event_name: str) -> bool:
        """Whether applying events of this definition reads more than their id and identities
        (the same as membership of `payload_events`, the set the hot path tests)."""
        return event_name in self.payload_events

    def observe(self, profile: dict[str, Any], event_id: Any, identity_map: Any, now: float) -> bool:
        """Apply an event no journey or profile field reads: de-duplicate, merge identities.

        Returns False for a duplicate. The shard calls this instead of `apply_event` so that
        the bulk of traffic (page and product views) is never decoded in full.
        """
        if not self._remember(profile, event_id):
            return False
        profile["updated"] = now
        self._merge_identities(profile, identity_map)
        return True

    def _remember(self, profile: dict[str, Any], event_id: Any) -> bool:
        if event_id is None:
            return True
        # A dict used as an insertion-ordered set: O(1) lookups, the oldest id goes first.
        seen: dict[Any, None] = profile["seen"]
        if event_id in seen:
            return False
        seen[event_id] = None
        if len(seen) > self._recent:
            del seen[next(iter(seen))]
        return True

    @staticmethod
    def new_profile(key: str, now: float) -> dict[str, Any]:
        return {
            "key": key,
            "ids": {},
            "attrs": {IDENTITIES: {}},
            "seen": {},
            "journeys": {},
            "hist": {},
            "created": now,
            "updated": now,
            "size": 0,
        }

    def apply_event(self, profile: dict[str, Any], name: str, event: dict[str, Any], now: float) -> list[Effect] | None:
        """Apply an event matched to definition `name`; None when it is a duplicate."""
        return self.apply_record(profile, name, event, event.get("_id"), event.get("identityMap"), now)

    def apply_record(
        self, profile: dict[str, Any], name: str, event: dict[str, Any], event_id: Any, identity_map: Any, now: float
    ) -> list[Effect] | None:
        """`apply_event` with the id and identities given apart: a shard's records carry them
        beside the event, which holds only the fields journeys read; None for a duplicate."""
        if not self._remember(profile, event_id):
            return None
        profile["updated"] = now
        self._merge_identities(profile, identity_map)
        mapping = self._fields.get(name)
        if mapping:
            self._apply_fields(profile, mapping, event)
        return self.dispatch(profile, name, event, now)

    def dispatch(self, profile: dict[str, Any], name: str, event: dict[str, Any], now: float) -> list[Effect]:
        """Offer an event to the journeys waiting for it, then to those it may start."""
        effects: list[Effect] = []
        journeys: dict[str, Any] = profile["journeys"]
        attrs = profile["attrs"]
        for listener in self._listeners.get(name, ()):
            instance = journeys.get(listener.id)
            if instance is None or instance["st"] != jr.WAITING:
                continue
            journey = self._versions.get((listener.id, instance["v"]), listener)
            updated, out = jr.step(journey, instance, jr.EventInput(name, event), attrs, now)
            if out:
                self._store(profile, updated, now)
                effects.extend(out)
        for journey in self._entries.get(name, ()):
            hist = profile["hist"].get(journey.id)
            history = (hist[0], hist[1]) if hist else (0, None)
            instance, out = jr.try_enter(
                journey, jr.EventInput(name, event), attrs, history, journey.id in journeys, profile["key"], now
            )
            if instance is not None:
                profile["hist"][journey.id] = [history[0] + 1, history[1]]
                self._store(profile, instance, now)
            effects.extend(out)
        return effects

    def apply_timer(
        self, profile: dict[str, Any], journey_id: str, instance_id: str, node: str, due: float, now: float
    ) -> list[Effect]:
        instance = profile["journeys"].get(journey_id)
        if instance is None or instance["id"] != instance_id:
            return []  # the instance ended or was replaced: a stale timer
        journey = self._versions.get((journey_id, instance["v"]))
        if journey is None:
            return []
        updated, effects = jr.step(journey, instance, jr.TimerInput(node, due), profile["attrs"], now)
        if effects:
            self._store(profile, updated, now)
        return effects

    def apply_outcome(self, profile: dict[str, Any], outcome: dict[str, Any], now: float) -> list[Effect]:
        """Resume the action waiting for this outcome, then offer it as a `message.*` event."""
        effects: list[Effect] = []
        instance = profile["journeys"].get(outcome.get("journey"))
        if instance is not None and instance["id"] == outcome.get("instance"):
            journey = self._versions.get((instance["j"], instance["v"]))
            if journey is not None:
                updated, effects = jr.step(journey, instance, jr.OutcomeInput(outcome), profile["attrs"], now)
                if effects:
                    self._store(profile, updated, now)
        name = f"message.{outcome.get('outcome')}"
        if self.cares_about(name):
            event = {
                "_id": f"{outcome.get('id')}#{outcome.get('outcome')}",
                "eventType": f"itinerary.{name}",
                "message": outcome,
            }
            effects.extend(self.dispatch(profile, name, event, now))
        return effects

    def _store(self, profile: dict[str, Any], instance: dict[str, Any], now: float) -> None:
        journey_id = instance["j"]
        if instance["st"] == jr.ENDED:
            profile["journeys"].pop(journey_id, None)
            hist = profile["hist"].setdefault(journey_id, [1, None])
            hist[1] = now
        else:
            profile["journeys"][journey_id] = instance

    def _merge_identities(self, profile: dict[str, Any], identity_map: Any) -> None:
        if not isinstance(identity_map, dict):
            return
        ids: dict[str, list[str]] = profile["ids"]
        primary = profile["attrs"][IDENTITIES]
        for namespace, entries in identity_map.items():
            known = ids.get(namespace)
            if known is not None and len(entries) == 1 and type(entries[0]) is dict and entries[0].get("id") in known:
                continue  # the common case: one id per namespace, already known
            for entry in entries:
                value = entry.get("id") if isinstance(entry, dict) else None
                if not isinstance(value, str) or not isinstance(namespace, str):
                    continue
                if known is not None and (value in known or len(known) >= self._max_ids):
                    continue
                first = not known
                cost = text_size(namespace) + text_size(value)
                if first:
                    cost += cost  # a namespace's first id is also kept in attrs.identities
                used = self._size(profile) + cost
                if used > self._budget:
                    continue  # a full profile keeps the identities it has
                profile["size"] = used
                if known is None:
                    known = ids[namespace] = []
                if first:
                    primary[namespace] = value
                known.append(value)

    def _apply_fields(self, profile: dict[str, Any], mapping: FieldMapping, event: dict[str, Any]) -> None:
        attrs = profile["attrs"]
        scope = {"event": event}
        used = profile.get("size")
        if used is None:
            used = self.measure(profile)  # a profile from a snapshot taken before sizes were kept
        budget, largest = self._budget, self._max_value
        for attr, evaluate in mapping:
            value = evaluate(scope)
            if value is None or attr == IDENTITIES:  # that name is the identity mirror, not data
                continue
            # ASCII strings, most values, are measured inline: this runs per mapped field
            size = len(value) if type(value) is str and value.isascii() else value_size(value)
            if size is None or size > largest:
                continue
            old = attrs.get(attr, _ABSENT)
            if old is _ABSENT:
                if len(attrs) >= self._max_attrs:
                    continue
            elif type(old) is str and old.isascii():
                size -= len(old)
            else:
                size -= value_size(old) or 0
            if used + size > budget:
                continue
            attrs[attr] = value
            used += size
        profile["size"] = used

    def _size(self, profile: dict[str, Any]) -> int:
        """The running total of attribute and identity bytes (measured once for a profile
        from a snapshot taken before the total was kept)."""
        size = profile.get("size")
        if size is None:
            size = profile["size"] = self.measure(profile)
        return int(size)

    @staticmethod
    def measure(profile: dict[str, Any]) -> int:
        """Attribute and identity bytes of a profile, counted from scratch (what `size` tracks)."""
        total = 0
        for name, value in profile["attrs"].items():
            if name != IDENTITIES:
                total += value_size(value) or 0
        for namespace, known in profile["ids"].items():
            for n, value in enumerate(known):
                cost = text_size(namespace) + text_size(value)
                total += cost + cost if n == 0 else cost
        return total
