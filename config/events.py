"""Event definitions: which incoming events matter, how to recognise them, whose they are."""

from __future__ import annotations

from pydantic import Field, field_validator

from itinerary.config.runtime import Frozen


class EventDefinition(Frozen):
    """Recognises an event by a rule on its payload (or a system event id) and names the
    identity namespace that decides which profile it belongs to."""

    event_type: str | list[str] | None = Field(
        None, description="the event's eventType must be (one of) this; checked by a dict lookup"
    )
    rule: str | None = Field(None, description="expression over `event`; first matching definition wins")
    event_id: str | None = Field(None, description="matches _experience.campaign.orchestration.eventID in the payload")
    namespace: str | None = Field(None, description="routing identity namespace; default: runtime.identity")
    profile_fields: dict[str, str] = Field(
        default_factory=dict, description="profile attribute -> expression, applied when non-null"
    )

    @field_validator("namespace")
    @classmethod
    def _namespace_without_colon(cls, value: str | None) -> str | None:
        if value is not None and (not value or ":" in value):
            raise ValueError("a namespace is a non-empty name without ':' (it separates namespace and id in keys)")
        return value

    @field_validator("profile_fields")
    @classmethod
    def _no_reserved_attribute(cls, value: dict[str, str]) -> dict[str, str]:
        # `identities` mirrors the profile's identities (profile.identities.Email ...).
        if "identities" in value:
            raise ValueError("`identities` is kept by the engine and cannot be a profile field")
        return value
