"""The ingest boundary: parse a request body, validate and normalise its events.

Batch-oriented for the hot path: the core fields of every event in a request are checked
by one compiled pydantic validator call; only when that call finds problems are events
looked at one by one, so each rejected event gets its own reason and the others go on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Required

import msgpack
import pydantic_core
from pydantic import Field, StringConstraints, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from itinerary.config.runtime import DEFAULT_NAMESPACE_CODES
from itinerary.engine.xdm import is_jsonld, normalise
from itinerary.errors import ItineraryError

JSON_TYPES = frozenset({"application/json", "application/ld+json", "application/xdm+json"})
MSGPACK_TYPES = frozenset({"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"})


class BodyError(ItineraryError):
    """A request body refused as a whole: not JSON/msgpack (400), too large (413), wrong type (415)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status}: {reason}")


class _Identity(TypedDict, total=False):
    id: Required[Annotated[str, StringConstraints(min_length=1, max_length=1024)]]
    primary: bool
    authenticatedState: str


class _CoreEvent(TypedDict, total=False):
    _id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    timestamp: Required[Annotated[str, StringConstraints(min_length=1, max_length=64)]]
    eventType: Annotated[str, StringConstraints(max_length=256)]
    identityMap: Required[Annotated[dict[str, Annotated[list[_Identity], Field(min_length=1)]], Field(min_length=1)]]


_BATCH = TypeAdapter(list[_CoreEvent])
_ONE = TypeAdapter(_CoreEvent)


def parse_body(body: bytes, content_type: str, *, max_events: int) -> list[Any]:
    """One event or an array of them, from JSON or msgpack."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media in JSON_TYPES or media.endswith("+json"):
        try:
            data = pydantic_core.from_json(body)
        except ValueError as exc:
            raise BodyError(400, f"body is not valid JSON: {str(exc)[:200]}") from None
    elif media in MSGPACK_TYPES:
        try:
            data = msgpack.unpackb(body, raw=False, strict_map_key=False)
        except Exception as exc:
            raise BodyError(400, f"body is not valid msgpack: {str(exc)[:200]}") from None
    else:
        raise BodyError(415, f"unsupported content type {media or 'none'!r}: use application/json "
                        "or application/msgpack")
    items = data if isinstance(data, list) else [data]
    if len(items) > max_events:
        raise BodyError(413, f"{len(items)} events in one request, over the limit of {max_events}")
    return items


def validate_events(
    items: list[Any],
    *,
    max_event_bytes: int | None = None,
    max_identities: int = 20,
    now: float,
    max_future_skew: float = 86_400.0,
    namespace_codes: Mapping[str, str] = DEFAULT_NAMESPACE_CODES,
) -> tuple[list[tuple[int, dict[str, Any]]], list[dict[str, Any]]]:
    """Split `items` into (index, normalised event) pairs and {index, reason} rejections."""
    rejected: list[dict[str, Any]] = []
    events: list[Any] = []
    for index, item in enumerate(items):
        if isinstance(item, dict) and is_jsonld(item):
            try:
                item = normalise(item, namespace_codes)
            except ValueError as exc:
                rejected.append({"index": index, "reason": str(exc)})
                item = None
        events.append(item)
    bad = {r["index"] for r in rejected}
    try:
        _BATCH.validate_python(events)
    except ValidationError as exc:
        for error in exc.errors():
            loc = error["loc"]
            index = loc[0] if loc and isinstance(loc[0], int) else None
            if index is None or index in bad:
                continue
            bad.add(index)
            rejected.append({"index": index, "reason": _reason(events[index], error)})
    accepted: list[tuple[int, dict[str, Any]]] = []
    for index, event in enumerate(events):
        if index in bad:
            continue
        reason = _check(event, now, max_future_skew, max_identities, max_event_bytes)
        if reason is None:
            accepted.append((index, event))
        else:
            rejected.append({"index": index, "reason": reason})
    rejected.sort(key=lambda r: r["index"])
    return accepted, rejected


def _reason(event: Any, error: Any) -> str:
    if not isinstance(event, dict):
        return f"an event must be a JSON object, not {type(event).__name__}"
    loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in error["loc"][1:]).replace(".[", "[")
    message = error["msg"]
    if error["type"] == "missing":
        message = "required"
    return f"{loc}: {message}" if loc else message


def _check(event: dict[str, Any], now: float, skew: float, max_identities: int,
           max_event_bytes: int | None) -> str | None:
    """What the batch validator cannot say: a real timestamp, counts, size; fills _id and _ts."""
    try:
        moment = datetime.fromisoformat(event["timestamp"])
    except ValueError:
        return f"timestamp: not an ISO-8601 date-time: {event['timestamp'][:40]!r}"
    if moment.tzinfo is None:
        return "timestamp: needs a time zone (e.g. 'Z' or '+02:00')"
    ts = moment.timestamp()
    if ts > now + skew:
        return f"timestamp: more than {skew:.0f}s in the future"
    identities = sum(len(v) for v in event["identityMap"].values())
    if identities > max_identities:
        return f"identityMap: {identities} identities, over the limit of {max_identities}"
    if max_event_bytes is not None:
        try:
            size = len(msgpack.packb(event, use_bin_type=True))
        except (TypeError, ValueError, OverflowError) as exc:
            return f"event cannot be encoded: {exc}"
        if size > max_event_bytes:
            return f"event is {size} bytes, over the limit of {max_event_bytes}"
    if "_id" not in event:
        # A stable id, so a client that retries a POST without ids is still de-duplicated.
        canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)
        event["_id"] = "sha1:" + hashlib.sha1(canonical.encode(), usedforsecurity=False).hexdigest()
    event["_ts"] = ts
    return None


def pick_identity(event: Mapping[str, Any], namespaces: Sequence[str]) -> tuple[str, str] | None:
    """The routing identity: the first of `namespaces` present, else the one flagged primary."""
    identity_map = event.get("identityMap") or {}
    for namespace in namespaces:
        entries = identity_map.get(namespace)
        if entries:
            return namespace, entries[0]["id"]
    for namespace, entries in identity_map.items():
        for entry in entries:
            if entry.get("primary") is True:
                return namespace, entry["id"]
    return None
