"""The ingest boundary: parse a request body, then validate and normalise its events.

Batch-oriented because this is the hot path. The core fields of every event in a request
(timestamp, _id, eventType, identityMap) are checked by one call of a compiled pydantic
validator over the whole batch; only when that call finds problems are its errors mapped
to the events they belong to (each bad event gets its own reason) and the others checked
again as a batch, so one bad event never costs the request.

Accepted events come back as `(index, event)`: the event is the normalised short-form
dict the client sent, completed in place with `_ts` (the event time as epoch seconds) and,
when the client gave none, a derived `_id`. The event is not encoded here: the router
encodes what its shard keeps of it (itinerary.router), and the size limit applies to that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, NotRequired

import msgpack
from pydantic import Field, GetPydanticSchema, StrictBool, StringConstraints, TypeAdapter
from pydantic_core import ValidationError, core_schema, from_json
from typing_extensions import TypedDict

from itinerary.engine.xdm import DEFAULT_NAMESPACE_CODES, MAX_DEPTH, is_jsonld, normalise
from itinerary.errors import ItineraryError

__all__ = [
    "JSON_TYPES",
    "MSGPACK_TYPES",
    "NDJSON_TYPES",
    "Accepted",
    "BodyError",
    "CoreEvent",
    "ValidEvent",
    "exception_reason",
    "is_json",
    "parse_body",
    "pick_identity",
    "validate_events",
]

JSON_TYPES = frozenset({"application/json", "application/ld+json"})  # and any `+json` type
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson"})
MSGPACK_TYPES = frozenset({"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"})

ValidEvent = dict[str, Any]
"""A normalised short-form event with `_ts` (epoch seconds) and an `_id` filled in."""
Accepted = tuple[int, ValidEvent]
"""(index in the request, event)."""


class BodyError(ItineraryError):
    """A request body refused as a whole: not JSON/msgpack (400), too many events (413),
    unsupported content type (415). `status` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status}: {reason}")


# -- the compiled validator for the core fields -----------------------------------------

# RFC 3339 date-time, checked in Rust before the datetime parser so that strings the
# parser would also take ("1700000000", a bare date) are refused as not ISO-8601.
_ISO_DATETIME = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}"
_TIMESTAMP = core_schema.chain_schema(
    [
        core_schema.str_schema(strict=True, max_length=64, pattern=_ISO_DATETIME),
        core_schema.datetime_schema(tz_constraint="aware"),
    ]
)
Timestamp = Annotated[datetime, GetPydanticSchema(lambda _type, _handler: _TIMESTAMP)]


class CoreIdentity(TypedDict):
    """One identity in an identityMap: a non-empty id, optionally flagged primary."""

    id: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=1024)]
    primary: NotRequired[StrictBool]
    authenticatedState: NotRequired[Annotated[str, StringConstraints(strict=True)]]


# No ':' in a namespace: a profile key is `<namespace>:<id>`, and ("a:b", "c") must not
# name the same profile as ("a", "b:c"). Checked by the compiled validator, not in Python.
Namespace = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256, pattern=r"^[^:]+$")]
IdentityMap = Annotated[dict[Namespace, Annotated[list[CoreIdentity], Field(min_length=1)]], Field(min_length=1)]


class CoreEvent(TypedDict):
    """The fields every event must get right, in the order their errors are reported.

    Other keys are ignored, not copied: the client's dict stays the payload and the
    validated copy is only read for the parsed timestamp."""

    timestamp: Timestamp
    _id: NotRequired[Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)]]
    eventType: NotRequired[Annotated[str, StringConstraints(strict=True, max_length=256)]]
    identityMap: IdentityMap


_BATCH: TypeAdapter[list[CoreEvent]] = TypeAdapter(list[CoreEvent])
_ONE: TypeAdapter[CoreEvent] = TypeAdapter(CoreEvent)


class _JsonItems(list[Any]):
    """Items straight from the JSON parser: only str keys, only JSON types, bounded depth.

    validate_events skips its per-event type walk for these; any other list (msgpack, or
    a Python caller) is walked, because a non-str key or a bytes value would otherwise
    break the shard's decoding or the profile API far from its cause."""


# -- body parsing -------------------------------------------------------------------------


def parse_body(body: bytes, content_type: str, *, max_events: int) -> list[Any]:
    """The items of a request body: one event (object or map) or an array of them.

    `content_type` may carry parameters (`; charset=utf-8`), which are ignored: JSON is
    UTF-8 by definition. Items are returned as parsed; validate_events judges each one.
    Raises BodyError: 400 not valid JSON/msgpack or not an object/array, 413 over
    `max_events`, 415 another content type. An empty array is fine (no items).
    """
    media = _media(content_type)
    items: list[Any]
    if _is_json_media(media):
        items = _JsonItems(_top_level(_parse_json(body, ""), "JSON"))
    elif media in MSGPACK_TYPES:
        try:
            data = msgpack.unpackb(body, raw=False, strict_map_key=False)
        except UnicodeDecodeError:
            raise BodyError(400, "body is not valid msgpack: a string is not valid UTF-8") from None
        except Exception as exc:  # msgpack raises several types, some without a message
            raise BodyError(400, f"body is not valid msgpack: {exception_reason(exc)}") from None
        items = _top_level(data, "msgpack")
    elif media in NDJSON_TYPES:
        lines = [line for line in body.split(b"\n") if line.strip()]
        if len(lines) > max_events:
            raise BodyError(413, _too_many(len(lines), max_events))
        items = _JsonItems(_parse_json(line, f"line {n}: ") for n, line in enumerate(lines, 1))
    else:
        raise BodyError(
            415, f"unsupported content type {media or 'none'!r}: use application/json or application/msgpack"
        )
    if len(items) > max_events:
        raise BodyError(413, _too_many(len(items), max_events))
    return items


def is_json(content_type: str) -> bool:
    """True for the content types parse_body reads as one JSON document (not NDJSON)."""
    return _is_json_media(_media(content_type))


def _media(content_type: str) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _is_json_media(media: str) -> bool:
    return media in JSON_TYPES or media.endswith("+json")


def _parse_json(data: bytes, where: str) -> Any:
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark: RFC 8259 lets us skip it
        data = data[3:]
    if not data.strip():
        raise BodyError(400, f"body is not valid JSON: {where}it is empty")
    try:
        # The NaN and Infinity literals are not JSON (RFC 8259). Keys repeat from event to
        # event and are worth caching; values mostly do not (caching them cost ~40 % more).
        return from_json(data, allow_inf_nan=False, cache_strings="keys")
    except ValueError as exc:
        raise BodyError(400, f"body is not valid JSON: {where}{str(exc)[:200]}") from None


def _top_level(data: Any, form: str) -> list[Any]:
    if type(data) is list:
        return data
    if type(data) is dict:
        return [data]
    raise BodyError(400, f"body must be a {form} object or an array of objects, not {_json_type(data)}")


def _too_many(count: int, limit: int) -> str:
    return f"{count} events in one request, over the limit of {limit}"


def exception_reason(exc: BaseException) -> str:
    """An exception as a short reason for a client: its message (cut to 200 characters), or
    its type's name when it has none (msgpack raises some without a message)."""
    text = str(exc)
    return text[:200] if text else type(exc).__name__


# -- validation ---------------------------------------------------------------------------


def validate_events(
    items: list[Any],
    *,
    max_identities: int = 20,
    now: float,
    max_future_skew: float = 86_400.0,
    namespace_codes: Mapping[str, str] = DEFAULT_NAMESPACE_CODES,
) -> tuple[list[Accepted], list[dict[str, Any]]]:
    """Split items into accepted `(index, event)` and `{"index", "reason"}` rejections.

    Both lists are in input order and every index lands in exactly one of them. Never
    raises for any input. Rules: an item is an object (JSON-LD is normalised first);
    `timestamp` is an ISO-8601 date-time with a timezone, at most `max_future_skew`
    seconds after `now`; `_id`, when given, is a non-empty string of at most 256
    characters (else one is derived from the event's content, so a client retry is a
    duplicate); `eventType`, when given, is a string of at most 256 characters;
    `identityMap` maps namespaces to non-empty lists of `{id, primary?,
    authenticatedState?}`, with 1 to `max_identities` identities in all. JSON-LD
    identityMap URIs become codes through `namespace_codes`.

    Accepted dicts are completed in place (`_ts`, a derived `_id`), not copied; `_ts` is
    reserved for the server and replaced if a client sent one; a refused dict is left as
    it came. Lists from parse_body's JSON path are plain JSON by construction; any other
    list is first walked for str keys, JSON value types and at most MAX_DEPTH levels.
    """
    rejected: list[dict[str, Any]] = []
    try:
        candidates, events = _prepare(items, rejected, namespace_codes)
        cores = _core_fields(events)
        accepted = _finish(candidates, events, cores, rejected, now + max_future_skew, max_future_skew, max_identities)
    except Exception:  # a bug must not take the ingress down: judge the events one by one
        return _one_by_one(items, rejected, max_identities, now, max_future_skew, namespace_codes)
    rejected.sort(key=lambda r: r["index"])  # rejections come from several passes
    return accepted, rejected


def _prepare(
    items: list[Any], rejected: list[dict[str, Any]], namespace_codes: Mapping[str, str]
) -> tuple[list[int], list[Any]]:
    """Objects only, JSON types only, JSON-LD normalised: (indices, events) to validate."""
    walk = not isinstance(items, _JsonItems)
    indices: list[int] = []
    events: list[Any] = []
    for index, item in enumerate(items):
        if type(item) is not dict:
            rejected.append({"index": index, "reason": f"event must be an object, not {_json_type(item)}"})
            continue
        if walk:
            problem = _not_json(item)
            if problem is not None:
                rejected.append({"index": index, "reason": problem})
                continue
        if is_jsonld(item):
            try:
                item = normalise(item, namespace_codes)
            except ValueError as exc:  # a key or a path in the message can be as long as the body
                rejected.append({"index": index, "reason": f"cannot normalise JSON-LD: {exception_reason(exc)}"})
                continue
        indices.append(index)
        events.append(item)
    return indices, events


def _core_fields(events: list[Any]) -> list[Any]:
    """The validated core fields of each event, or the reason (a str) it fails."""
    try:
        return _BATCH.validate_python(events)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    out: list[Any] = [None] * len(events)
    for error in errors:
        position = int(error["loc"][0])
        if out[position] is None:  # the first problem of an event is its reason
            out[position] = _reason(error["loc"][1:], error)
    rest = [k for k, core in enumerate(out) if core is None]
    for k, core in zip(rest, _BATCH.validate_python([events[k] for k in rest]), strict=True):
        out[k] = core
    return out


def _finish(
    indices: list[int],
    events: list[Any],
    cores: list[Any],
    rejected: list[dict[str, Any]],
    horizon: float,
    skew: float,
    max_identities: int,
) -> list[Accepted]:
    """What the schema cannot say: identity count, the future limit; fills _id, _ts."""
    accepted: list[Accepted] = []
    for index, event, core in zip(indices, events, cores, strict=True):
        if type(core) is str:
            rejected.append({"index": index, "reason": core})
            continue
        identities = 0
        for entries in event["identityMap"].values():
            identities += len(entries)
        if identities > max_identities:
            rejected.append(
                {"index": index, "reason": f"identityMap: {identities} identities, over the limit of {max_identities}"}
            )
            continue
        ts = _epoch(event["timestamp"], core["timestamp"])
        if ts > horizon:
            rejected.append(
                {"index": index, "reason": f"timestamp: {event['timestamp']} is more than {skew:g} s in the future"}
            )
            continue
        if "_id" not in event:
            try:
                event["_id"] = _derived_id(event)
            except Exception as exc:  # nesting too deep for the encoder: nothing to derive from
                rejected.append({"index": index, "reason": f"event cannot be encoded: {exception_reason(exc)}"})
                continue
        event["_ts"] = ts
        accepted.append((index, event))
    return accepted


def _epoch(text: str, parsed: datetime) -> float:
    """Epoch seconds of a validated timestamp.

    The compiled validator's datetime carries pydantic's own tzinfo, whose `timestamp()`
    costs 1.2 us (the offset is asked for through Python's tzinfo protocol); the standard
    library's parse of the same text, with `datetime.timezone`, costs 0.45 us and gives
    the same instant for every form both read (the test compares them). What it cannot
    read (a lowercase `z`) falls back to the validator's value."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return parsed.timestamp()
    return moment.timestamp() if moment.tzinfo is not None else parsed.timestamp()


def _derived_id(event: dict[str, Any]) -> str:
    """A stable id from the content, so a client that retries without ids is de-duplicated."""
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha1:" + hashlib.sha1(canonical.encode("ascii"), usedforsecurity=False).hexdigest()


def _one_by_one(
    items: list[Any],
    rejected: list[dict[str, Any]],
    max_identities: int,
    now: float,
    skew: float,
    namespace_codes: Mapping[str, str],
) -> tuple[list[Accepted], list[dict[str, Any]]]:
    """The same rules an event at a time, each under its own guard (the batch path failed)."""
    accepted: list[Accepted] = []
    rejected.clear()
    for index, item in enumerate(items):
        mine: list[dict[str, Any]] = []
        try:
            candidates, events = _prepare([item], mine, namespace_codes)
            cores = [_single(event) for event in events]
            done = _finish(candidates, events, cores, mine, now + skew, skew, max_identities)
        except Exception as exc:
            mine, done = [{"index": 0, "reason": f"invalid event: {exception_reason(exc)}"}], []
        accepted.extend((index, event) for _, event in done)
        rejected.extend({"index": index, "reason": r["reason"]} for r in mine)
    return accepted, rejected


def _single(event: Any) -> Any:
    try:
        return _ONE.validate_python(event)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        return _reason(error["loc"], error)


# -- reasons ------------------------------------------------------------------------------


def _reason(loc: Sequence[Any], error: Any) -> str:
    """A short reason naming the field path, e.g. `identityMap.Email[0].id: must be ...`."""
    kind = error["type"]
    value = error.get("input")
    if not loc:
        return f"event must be an object, not {_json_type(value)}"
    path = _path(loc)
    top = loc[0]
    if top == "timestamp":
        return _timestamp_reason(kind, value, error)
    if top in ("_id", "eventType"):
        if kind == "string_too_long":
            return f"{top}: must be at most 256 characters"
        return f"{top}: must be a non-empty string" if top == "_id" else f"{top}: must be a string"
    if top == "identityMap":
        depth = len(loc)
        if depth == 1:
            if kind == "missing":
                return "identityMap: required"
            if kind == "too_short":
                return "identityMap: must hold at least one identity"
            return "identityMap: must be an object of namespace -> list of identities"
        if depth == 3 and loc[2] == "[key]":
            if kind == "string_too_long":
                return "identityMap: namespace names must be at most 256 characters"
            if kind == "string_pattern_mismatch":
                return "identityMap: namespace names must not contain ':'"
            return "identityMap: namespace names must be non-empty strings"
        if depth == 2:
            if kind == "too_short":
                return f"{path}: must hold at least one identity"
            return f"{path}: must be a list of identities"
        if depth == 3:
            return f"{path}: must be an object with an id"
        field = loc[3]
        if field == "id":
            if kind == "string_too_long":
                return f"{path}: must be at most 1024 characters"
            return f"{path}: must be a non-empty string"
        if field == "primary":
            return f"{path}: must be true or false"
        return f"{path}: must be a string"  # authenticatedState
    return f"{path}: {error.get('msg', 'invalid')}"  # pragma: no cover - every field is above


def _timestamp_reason(kind: str, value: Any, error: Any) -> str:
    if kind == "missing":
        return "timestamp: required"
    if kind == "string_type":
        return f"timestamp: must be an ISO-8601 date-time string, not {_json_type(value)}"
    if kind == "string_too_long":
        return "timestamp: must be at most 64 characters"
    if kind == "timezone_aware":
        return f"timestamp: needs a timezone (Z or +hh:mm): {_show(value)}"
    if kind.startswith("datetime"):
        detail = (error.get("ctx") or {}).get("error")
        suffix = f" ({detail})" if detail else ""
        return f"timestamp: not a valid date-time{suffix}: {_show(value)}"
    return f"timestamp: must be an ISO-8601 date-time such as 2024-05-01T10:00:00Z: {_show(value)}"


def _path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if type(part) is int:
            out += f"[{part}]"
        else:
            text = str(part)
            if len(text) > 64:
                text = text[:61] + "..."
            out = f"{out}.{text}" if out else text
    return out


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 48 else text[:45] + "..."


_JSON_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _json_type(value: Any) -> str:
    return _JSON_NAMES.get(type(value)) or type(value).__name__


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _not_json(event: dict[Any, Any]) -> str | None:
    """Why the event is not plain JSON data (a non-str key, a bytes value, too deep), or None.

    Level by level with no paths and no per-node tuples, because this is the whole cost of
    a msgpack event beyond the JSON path; the reason is worked out afterwards."""
    level: list[Any] = [event]
    depth = 1
    scalars = _SCALARS
    while level:
        below: list[Any] = []
        push = below.append
        for node in level:
            if type(node) is dict:
                for key, value in node.items():
                    if type(key) is not str:
                        return _describe(event)
                    kind = type(value)
                    if kind is dict or kind is list:
                        push(value)
                    elif kind not in scalars:
                        return _describe(event)
            else:
                for value in node:
                    kind = type(value)
                    if kind is dict or kind is list:
                        push(value)
                    elif kind not in scalars:
                        return _describe(event)
        if below and depth >= MAX_DEPTH:
            return _describe(event)
        level = below
        depth += 1
    return None


def _describe(event: dict[Any, Any]) -> str:
    """The reason _not_json found, with the path to the first offending place."""
    stack: list[tuple[Any, int, str]] = [(event, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        pairs = node.items() if type(node) is dict else enumerate(node)
        for key, value in pairs:
            if type(node) is dict:
                if type(key) is not str:
                    at = _path([path]) if path else "event"  # keys may be long: the path is cut
                    return f"{at}: keys must be strings, not {_json_type(key)} {_show(key)}"
                where = f"{path}.{key}" if path else key
            else:
                where = f"{path}[{key}]"
            kind = type(value)
            if kind is dict or kind is list:
                if depth >= MAX_DEPTH:
                    return f"nested deeper than {MAX_DEPTH} levels at {_path([where])}"
                stack.append((value, depth + 1, where))
            elif kind not in _SCALARS:
                return f"{_path([where])}: {kind.__name__} is not a JSON value"
    return "event is not plain JSON data"  # pragma: no cover - only called after a find


# -- routing identity ---------------------------------------------------------------------


def pick_identity(event: Mapping[str, Any], namespaces: Sequence[str]) -> tuple[str, str] | None:
    """The routing identity `(namespace, id)`: the first of `namespaces` present in the
    identityMap (its first id), else the identity flagged `primary: true`, else None.

    Namespace names match exactly (`Email` is not `email`)."""
    identity_map = event.get("identityMap")
    if type(identity_map) is not dict:
        return None
    for namespace in namespaces:
        entries = identity_map.get(namespace)
        if entries:
            first = entries[0]
            if type(first) is dict and type(first.get("id")) is str and first["id"]:
                return namespace, first["id"]
    for namespace, entries in identity_map.items():
        if type(entries) is not list:
            continue
        for entry in entries:
            if type(entry) is dict and entry.get("primary") is True and type(entry.get("id")) is str:
                return namespace, entry["id"]
    return None
