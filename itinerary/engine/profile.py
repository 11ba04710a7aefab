"""Profiles as virtual actors: plain dict state plus the logic that applies inputs to it.

A profile holds its identities, attributes, the ids of its recent events (duplicates are
ignored), its journey instances and, per journey, how often it entered and when it last
left (for re-entrance rules). `JourneyEngine` applies events, timers and outcomes to a
profile and returns effects; it never reads the clock and never does I/O.

Profile keys: key, ids {namespace: [id, ...]}, attrs {name: value, "identities": {ns: id}},
seen {event id: None} (oldest first), journeys {journey id: instance}, hist {journey id: [entries, last exit]},
created, updated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from itinerary.engine import journey as jr
from itinerary.engine.effects import Effect

FieldMapping = tuple[tuple[str, Callable[[Mapping[str, Any]], Any]], ...]


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
    ) -> None:
        self._versions: dict[tuple[str, int], jr.CompiledJourney] = {}
        self._latest: dict[str, jr.CompiledJourney] = {}
        self._entries: dict[str, list[jr.CompiledJourney]] = {}
        self._listeners: dict[str, list[jr.CompiledJourney]] = {}
        self._fields = dict(profile_fields or {})
        self._recent = recent_event_ids
        self._max_ids = max_ids_per_namespace
        self._max_attrs = max_attributes
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
            "attrs": {"identities": {}},
            "seen": {},
            "journeys": {},
            "hist": {},
            "created": now,
            "updated": now,
        }

    def apply_event(self, profile: dict[str, Any], name: str, event: dict[str, Any], now: float) -> list[Effect] | None:
        """Apply an event matched to definition `name`; None when it is a duplicate."""
        if not self._remember(profile, event.get("_id")):
            return None
        profile["updated"] = now
        self._merge_identities(profile, event.get("identityMap"))
        mapping = self._fields.get(name)
        if mapping:
            self._apply_fields(profile["attrs"], mapping, event)
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
        primary = profile["attrs"]["identities"]
        for namespace, entries in identity_map.items():
            known = ids.get(namespace)
            if known is None:
                known = ids[namespace] = []
            elif len(entries) == 1 and type(entries[0]) is dict and entries[0].get("id") in known:
                continue  # the common case: one id per namespace, already known
            for entry in entries:
                value = entry.get("id") if isinstance(entry, dict) else None
                if isinstance(value, str) and value not in known and len(known) < self._max_ids:
                    known.append(value)
            if known:
                primary[namespace] = known[0]

    def _apply_fields(self, attrs: dict[str, Any], mapping: FieldMapping, event: dict[str, Any]) -> None:
        scope = {"event": event}
        for attr, evaluate in mapping:
            value = evaluate(scope)
            if value is not None and (attr in attrs or len(attrs) < self._max_attrs):
                attrs[attr] = value
