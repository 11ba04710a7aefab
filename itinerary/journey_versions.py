"""Which journey versions a deployment runs: the config's, plus the stored older ones.

A journey's running instances finish on the version they started on. When an operator
edits a journey, gives it a new version and restarts, the old version is no longer in
the config file, but instances on it may still be waiting; the supervisor keeps every
version it ever ran in the journey store and hands the config plus those to the actors.
"""

from __future__ import annotations

from pydantic import ValidationError

from itinerary.catalog import Catalog
from itinerary.config.app import AppConfig
from itinerary.config.journeys import JourneyDefinition
from itinerary.errors import ConfigError


def merge_versions(app: AppConfig, stored: list[bytes]) -> tuple[AppConfig, list[str]]:
    """`app` with every stored journey version it does not list added; plus notes to log.

    A stored version that no longer compiles against the config (an event or a channel it
    uses was removed) is left out with a note: its instances stay where they are. A config
    version whose content differs from the stored one of the same number wins, with a note,
    because instances on the old content cannot be told apart from new ones.
    """
    in_config = {(j.id, j.version): j for j in app.journeys}
    extra: list[JourneyDefinition] = []
    notes: list[str] = []
    for raw in stored:
        try:
            definition = JourneyDefinition.model_validate_json(raw)
        except ValidationError as exc:
            notes.append(f"a stored journey version cannot be read and is skipped: {exc.errors()[0]['msg']}")
            continue
        label = f"journey {definition.id!r} version {definition.version}"
        current = in_config.get((definition.id, definition.version))
        if current is not None:
            if current != definition:
                notes.append(f"{label} in the config differs from the one stored: give changes a new version")
            continue
        candidate = app.model_copy(update={"journeys": [*extra, definition, *app.journeys]})
        try:
            Catalog.build(candidate)
        except ConfigError as exc:
            notes.append(f"stored {label} no longer compiles ({exc.reason}); its instances stay where they are")
            continue
        extra.append(definition)
    return app.model_copy(update={"journeys": [*extra, *app.journeys]}), notes


def rows(app: AppConfig) -> list[tuple[str, int, bytes]]:
    """The config's journey versions as journey-store rows."""
    # by_alias: fields such as `else` are spelled as the config spells them, so they read back
    return [(j.id, j.version, j.model_dump_json(by_alias=True).encode()) for j in app.journeys]
