"""The project's exceptions: one root, specific subclasses with keyword fields."""

from __future__ import annotations


class ItineraryError(Exception):
    """Root of every error raised on purpose by itinerary."""


class ConfigError(ItineraryError):
    """Configuration that cannot be used; names the file, the path inside it and why."""

    def __init__(self, *, file: str, path: str, reason: str) -> None:
        self.file = file
        self.path = path
        self.reason = reason
        where = f"{file}: {path}" if path else file
        super().__init__(f"{where}: {reason}")


class ExpressionError(ItineraryError):
    """An expression that does not parse or cannot be compiled; `position` is 0-based."""

    def __init__(self, *, source: str, position: int, reason: str) -> None:
        self.source = source
        self.position = position
        self.reason = reason
        super().__init__(f"{reason} at position {position} in {source!r}")


class TemplateError(ItineraryError):
    """A message template that does not compile."""

    def __init__(self, *, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"template error: {reason}")


class JourneyDefinitionError(ItineraryError):
    """A journey definition that fails validation (unreachable node, dangling edge, ...)."""

    def __init__(self, *, journey: str, path: str, reason: str) -> None:
        self.journey = journey
        self.path = path
        self.reason = reason
        super().__init__(f"journey {journey!r}: {path}: {reason}")


class ThroughputLimitExceeded(ItineraryError):
    """A channel in cap mode refused a call because its limit was reached."""

    def __init__(self, *, channel: str, limit: str, retry_after: float) -> None:
        self.channel = channel
        self.limit = limit
        self.retry_after = retry_after
        super().__init__(f"channel {channel!r} over its limit {limit}; retry after {retry_after:.3f}s")
