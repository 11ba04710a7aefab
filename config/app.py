"""The whole configuration of a deployment: runtime, event definitions, channels, journeys."""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from itinerary.config.channels import ChannelConfig
from itinerary.config.events import EventDefinition
from itinerary.config.journeys import JourneyDefinition
from itinerary.config.runtime import Frozen, RuntimeSettings


class AppConfig(Frozen):
    """Everything `itinerary up` needs; loaded from YAML by `itinerary.config.loader`."""

    # Validation errors must not echo values: a misplaced secret would end up in a log.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    runtime: RuntimeSettings = RuntimeSettings()
    events: dict[str, EventDefinition] = Field(default_factory=dict)
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    journeys: list[JourneyDefinition] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_journeys(self) -> AppConfig:
        seen: set[tuple[str, int]] = set()
        for journey in self.journeys:
            key = (journey.id, journey.version)
            if key in seen:
                raise ValueError(f"journey {journey.id!r} version {journey.version} is defined twice")
            seen.add(key)
        return self
