"""Reading a request body into accepted events and rejections, by the fastest exact path.

One place for what the ingress, the single-process ceiling and the stage benchmark all do:
try the compiled fast path (itinerary.engine.fastjson) on a JSON body, and take the
general path (parse_body, validate_events) for whatever it declines.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from itinerary.engine.fastjson import FastJsonDecoder
from itinerary.engine.ingest import Accepted, is_json, parse_body, validate_events

if TYPE_CHECKING:
    from itinerary.catalog import Catalog
    from itinerary.config.runtime import IngressSettings

__all__ = ["EventReader"]

log = logging.getLogger(__name__)


class EventReader:
    """Turns a body into `(accepted, rejected)` under one ingress's limits; counts how many
    bodies the fast path took, so an operator can see when traffic misses it."""

    def __init__(self, catalog: Catalog, settings: IngressSettings, namespace_codes: Mapping[str, str]) -> None:
        self.settings = settings
        self.namespace_codes = namespace_codes
        self.fast = FastJsonDecoder.for_settings(catalog, settings)
        self.fast_bodies = 0

    def read(self, body: bytes, content_type: str, now: float) -> tuple[list[Accepted], list[dict[str, Any]]]:
        """Accepted `(index, event)` and `{"index", "reason"}` rejections, as validate_events
        gives them. Raises BodyError for a body refused as a whole (see parse_body)."""
        if self.fast is not None and is_json(content_type):
            try:
                accepted = self.fast.decode(body, now)
            except Exception:  # a bug here must not cost the request: the general path answers it
                log.exception("the JSON fast path failed on a body; the general path reads it")
                accepted = None
            if accepted is not None:
                self.fast_bodies += 1
                return accepted, []
        s = self.settings
        items = parse_body(body, content_type, max_events=s.max_events_per_request)
        return validate_events(
            items,
            max_identities=s.max_identities,
            now=now,
            max_future_skew=s.max_future_skew.total_seconds(),
            namespace_codes=self.namespace_codes,
        )
