"""The whole configuration of a deployment: runtime, event definitions, channels, journeys."""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from itinerary.actors.names import gateway_name
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

    @model_validator(mode="after")
    def _gateway_groups_name_channels(self) -> AppConfig:
        for group, channels in self.runtime.gateway_groups.items():
            unknown = [c for c in channels if c not in self.channels]
            if unknown:
                raise ValueError(f"gateway group {group!r} names channels that are not configured: {unknown}")
            if group in self.channels and group not in channels:
                # both would be the actor `gateway-<name>`
                raise ValueError(f"gateway group {group!r} has the name of channel {group!r}, which it does not hold")
        return self

    def gateway_hosts(self) -> dict[str, tuple[str, ...]]:
        """Each gateway actor's name and the channels it serves, in config order: the
        groups of `runtime.gateway_groups`, then one actor per channel in no group."""
        hosts = {gateway_name(group): channels for group, channels in self.runtime.gateway_groups.items()}
        grouped = {c for channels in hosts.values() for c in channels}
        hosts.update({gateway_name(c): (c,) for c in self.channels if c not in grouped})
        return hosts

    def gateway_of(self) -> dict[str, str]:
        """The name of the gateway actor that serves each channel."""
        return {channel: host for host, channels in self.gateway_hosts().items() for channel in channels}
