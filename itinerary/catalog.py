"""The compiled form of a configuration: event matchers, profile field mappings, journeys.

Built once per process (ingress, shard, benchmark) from the validated `AppConfig`; every
expression and template is compiled here so nothing is parsed on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from itinerary.config.app import AppConfig
from itinerary.config.channels import EmailChannelConfig
from itinerary.engine.compiler import ChannelInfo, compile_journey
from itinerary.engine.expressions import compile_expression, event_fields
from itinerary.engine.journey import CompiledJourney
from itinerary.engine.profile import FieldMapping, JourneyEngine
from itinerary.errors import ConfigError, ExpressionError, JourneyDefinitionError


@dataclass(frozen=True, slots=True)
class EventMatcher:
    """Recognises one event definition and says which identity namespaces route it."""

    name: str
    rule: Callable[[Mapping[str, Any]], Any] | None
    event_id: str | None
    namespaces: tuple[str, ...]
    event_types: frozenset[str] | None = None


def channel_outcome_timeout(channel: Any) -> float:
    """How long an action waits for an outcome by default: queueing plus every attempt."""
    attempts = channel.retry.max_retries + 1
    per_attempt = channel.timeout.total_seconds() + channel.retry.max_backoff.total_seconds()
    queued = 0.0
    if channel.limit is not None and channel.limit.mode == "throttle":
        queued = channel.limit.max_age.total_seconds()
    return queued + attempts * per_attempt + 60.0


def _candidates(matchers: list[EventMatcher]) -> dict[str | None, tuple[EventMatcher, ...]]:
    """Index matchers by eventType so an event only tries the definitions that can match it;
    definitions without an event_type apply to every type and keep their config order."""
    types = {t for m in matchers if m.event_types for t in m.event_types}
    index: dict[str | None, tuple[EventMatcher, ...]] = {
        t: tuple(m for m in matchers if (m.event_types is None or t in m.event_types) and (m.rule or m.event_types))
        for t in types
    }
    index[None] = tuple(m for m in matchers if m.event_types is None and m.rule is not None)
    return index


def _fields_read(name: str, app: AppConfig, journeys: list[CompiledJourney]) -> frozenset[str] | None:
    """The top-level fields of events of definition `name` that anything in a shard reads:
    the journeys it starts or that wait for it (every version), and its profile fields."""
    found: set[str] = set()
    for journey in journeys:
        if journey.entry_event == name or name in journey.listens:
            if journey.event_fields is None:
                return None
            found |= journey.event_fields
    definition = app.events.get(name)
    for source in definition.profile_fields.values() if definition is not None else ():
        fields = event_fields(source)
        if fields is None:
            return None
        found |= fields
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class Catalog:
    """Everything compiled from one config, shared read-only by the code of one process."""

    config: AppConfig
    matchers: tuple[EventMatcher, ...]
    by_event_id: Mapping[str, EventMatcher]
    profile_fields: Mapping[str, FieldMapping]
    journeys: tuple[CompiledJourney, ...]
    # eventType -> the matchers that can match it, in config order; None: any other type
    candidates: Mapping[str | None, tuple[EventMatcher, ...]]
    # Definitions whose payload a shard reads (a journey or a profile field uses it); the
    # records of every other event travel without their payload (see itinerary.router).
    payload_events: frozenset[str]
    # For each of those, the top-level event fields its journeys and profile fields read
    # (None: the whole event); only those travel to the shard.
    payload_fields: Mapping[str, frozenset[str] | None]

    @classmethod
    def build(cls, app: AppConfig, file: str = "<config>") -> Catalog:
        def expr(path: str, source: str) -> Callable[[Mapping[str, Any]], Any]:
            try:
                return compile_expression(source).evaluate
            except ExpressionError as exc:
                raise ConfigError(
                    file=file, path=path, reason=f"{exc.reason} at position {exc.position} in {source!r}"
                ) from None

        default_ns = app.runtime.identity.namespaces
        matchers = []
        fields: dict[str, FieldMapping] = {}
        for name, definition in app.events.items():
            if definition.rule is None and definition.event_id is None and definition.event_type is None:
                raise ConfigError(file=file, path=f"events.{name}", reason="give an event_type, a rule or an event_id")
            rule = expr(f"events.{name}.rule", definition.rule) if definition.rule else None
            namespaces = (definition.namespace,) if definition.namespace else default_ns
            types = definition.event_type
            event_types = None if types is None else frozenset([types] if isinstance(types, str) else types)
            matchers.append(EventMatcher(name, rule, definition.event_id, namespaces, event_types))
            fields[name] = tuple(
                (attr, expr(f"events.{name}.profile_fields.{attr}", source))
                for attr, source in definition.profile_fields.items()
            )
        channels = {
            name: ChannelInfo("email" if isinstance(c, EmailChannelConfig) else "webhook", channel_outcome_timeout(c))
            for name, c in app.channels.items()
        }
        journeys = []
        for i, definition in enumerate(app.journeys):
            try:
                journeys.append(compile_journey(definition, events=app.events, channels=channels))
            except JourneyDefinitionError as exc:
                raise ConfigError(file=file, path=f"journeys[{i}].{exc.path}", reason=exc.reason) from None
        by_id = {m.event_id: m for m in matchers if m.event_id}
        payload_events = JourneyEngine(journeys, profile_fields=fields).payload_events
        payload_fields = {name: _fields_read(name, app, journeys) for name in payload_events}
        return cls(
            app, tuple(matchers), by_id, fields, tuple(journeys), _candidates(matchers), payload_events, payload_fields
        )

    def match(self, event: Mapping[str, Any]) -> EventMatcher | None:
        """The first definition the event satisfies, in config order (a system event id wins)."""
        if self.by_event_id:
            exp = event.get("_experience")
            if isinstance(exp, dict):
                campaign = exp.get("campaign")
                orch = campaign.get("orchestration") if isinstance(campaign, dict) else None
                if isinstance(orch, dict) and orch.get("eventID") in self.by_event_id:
                    return self.by_event_id[orch["eventID"]]
        event_type = event.get("eventType")
        candidates = self.candidates.get(event_type) if isinstance(event_type, str) else None
        if candidates is None:
            candidates = self.candidates[None]
        scope = {"event": event}
        for matcher in candidates:
            if matcher.rule is None or matcher.rule(scope):
                return matcher
        return None

    def engine(self) -> JourneyEngine:
        profile = self.config.runtime.profile
        return JourneyEngine(
            self.journeys,
            profile_fields=self.profile_fields,
            recent_event_ids=profile.recent_event_ids,
            max_ids_per_namespace=profile.max_ids_per_namespace,
            max_attributes=profile.max_attributes,
            max_attribute_bytes=profile.max_attribute_bytes,
            max_profile_bytes=profile.max_profile_bytes,
        )
