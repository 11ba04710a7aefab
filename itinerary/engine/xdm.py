"""XDM JSON-LD to XDM short form, the shape streaming ingestion works with.

Adobe's XDM examples (and some exporters) write ExperienceEvents in JSON-LD form:
`xdm:`-prefixed keys, `@id`/`@type`, and identityMap keys that are namespace URIs such as
`https://data.adobe.io/entities/namespace/4`. Streaming ingestion, journeys and every
expression in a config use the short form (`_id`, `timestamp`, `identityMap.ECID`).
`normalise` rewrites the first into the second with Adobe Experience Platform's rules:

- `xdm:name` -> `name`; `@id` -> `_id`; `@type` -> `_type`;
- a key from another vocabulary, `schema:latitude`, moves under an object named after its
  prefix: `_schema: {latitude: ...}` (likewise `dc:`, `xmpDM:`, `iptc4xmpExt:`, ...);
- keys that are full URIs (`https://ns.adobe.com/...`) are kept as they are;
- identityMap keys that are namespace URIs become namespace codes (`.../namespace/4` ->
  `ECID`); identity entries lose their prefixes like any other object.

Only the top level decides whether an event is JSON-LD (`is_jsonld`): a short-form event
is handed back untouched, without a walk over it, because that is the hot path.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from itinerary.config.runtime import DEFAULT_NAMESPACE_CODES as _CODES

__all__ = [
    "DEFAULT_NAMESPACE_CODES",
    "MAX_DEPTH",
    "NAMESPACE_URI_PREFIX",
    "is_jsonld",
    "namespace_code",
    "normalise",
]

# Adobe's standard identity namespaces by numeric id (4 ECID, 6 Email, 7 Phone, 9 TNTID,
# 10 AAID, 411 AdCloud). One table for the project: the config's default lives beside
# the identity settings that can override it.
DEFAULT_NAMESPACE_CODES: Mapping[str, str] = _CODES
NAMESPACE_URI_PREFIX = "https://data.adobe.io/entities/namespace/"
# Real XDM payloads nest about a dozen levels; the cap keeps hostile input cheap and
# names the problem instead of failing somewhere deeper.
MAX_DEPTH = 64

_RENAMED = {"@id": "_id", "@type": "_type"}
_MISSING: Any = object()

# A pending conversion: (source container, target container, depth of the target, path
# of the target for messages, whether the target is an identityMap).
_Work = tuple[Any, Any, int, str, bool]


def is_jsonld(event: Mapping[Any, Any]) -> bool:
    """True when the event is in JSON-LD form: a top-level `xdm:` key, `@id` or `@type`."""
    if "@id" in event or "@type" in event:
        return True
    try:
        # `":" in key` first: short-form keys hold no colon, so this is the whole cost the
        # ingest hot path pays per event.
        for key in event:
            if ":" in key and key.startswith("xdm:"):
                return True
    except TypeError:  # a non-str key (msgpack input): look at the str keys only
        return any(type(key) is str and key.startswith("xdm:") for key in event)
    return False


def namespace_code(key: str, namespace_codes: Mapping[str, str] = DEFAULT_NAMESPACE_CODES) -> str:
    """The namespace code for an identityMap key: namespace URIs by the table, others as is.

    An unknown numeric id n becomes `NS<n>`, so it still routes consistently; a
    non-numeric last segment is taken to be the code itself.
    """
    if not key.startswith(NAMESPACE_URI_PREFIX):
        return key
    ident = key[len(NAMESPACE_URI_PREFIX) :].strip("/")
    code = namespace_codes.get(ident)
    if code is not None:
        return code
    return f"NS{ident}" if ident.isdigit() else ident


def normalise(event: dict[str, Any], namespace_codes: Mapping[str, str] = DEFAULT_NAMESPACE_CODES) -> dict[str, Any]:
    """The short form of a JSON-LD event; a short-form event is returned as is (same object).

    Raises ValueError naming the place when the event nests deeper than MAX_DEPTH levels
    or when two keys land on the same short key with values that cannot be merged (`xdm:name`
    next to `name`). Two spellings of one object are merged, and two spellings of one
    identity namespace (`ECID` and `.../namespace/4`) have their identities concatenated.
    Keys that are not strings are kept for validation to refuse.
    """
    if not is_jsonld(event):
        return event
    root: dict[Any, Any] = {}
    # Iterative, so nesting is bounded by MAX_DEPTH and never by Python's recursion limit;
    # first in, first out, so two sources merged into one list keep their document order.
    pending: deque[_Work] = deque([(event, root, 1, "", False)])
    while pending:
        src, dst, depth, path, identity_map = pending.popleft()
        if type(dst) is list:
            for i, value in enumerate(src):
                dst.append(_target(value, _MISSING, depth, f"{path}[{i}]", False, pending))
            continue
        for key, value in src.items():
            if identity_map and type(key) is str:
                holder, short, holder_path = dst, namespace_code(key, namespace_codes), path
            else:
                group, short = _short_key(key)
                holder, holder_path = dst, path
                if group is not None:
                    holder_path = _join(path, group)
                    holder = dst.get(group)
                    if holder is None:
                        holder = dst[group] = {}
                    elif type(holder) is not dict:
                        raise ValueError(f"{_brief(holder_path)}: {_brief(repr(key))} needs an object there")
            sub_path = _join(holder_path, short)
            existing = holder.get(short, _MISSING)
            if existing is not _MISSING and not _mergeable(existing, value, identity_map):
                raise ValueError(
                    f"{_brief(sub_path)}: {_brief(repr(key))} collides with another key that maps to "
                    f"{_brief(repr(short))}"
                )
            holder[short] = _target(
                value, existing, depth, sub_path, short == "identityMap" and not identity_map, pending
            )
    return root


def _short_key(key: Any) -> tuple[str | None, Any]:
    """(prefix group or None, short key) for one JSON-LD key."""
    if type(key) is not str:
        return None, key
    renamed = _RENAMED.get(key)
    if renamed is not None:
        return None, renamed
    if ":" not in key or "://" in key:
        return None, key  # plain keys and full URIs stay as they are
    prefix, _, local = key.partition(":")
    if prefix == "xdm":
        return None, local
    if not local or not prefix.replace("_", "").replace("-", "").isalnum():
        return None, key  # not a `prefix:name` pair; keep it whole
    return f"_{prefix}", local


def _mergeable(existing: Any, value: Any, identity_map: bool) -> bool:
    if type(existing) is dict and type(value) is dict:
        return True
    return identity_map and type(existing) is list and type(value) is list


def _target(value: Any, existing: Any, depth: int, path: str, identity_map: bool, pending: deque[_Work]) -> Any:
    """The container that will hold the converted `value` (filled later from `pending`),
    or `value` itself when it is a scalar. `existing` is reused when merging."""
    if type(value) is dict:
        target: Any = {} if existing is _MISSING else existing
    elif type(value) is list:
        target = [] if existing is _MISSING else existing
    else:
        return value
    if depth >= MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels at {_brief(path) or 'the top'}")
    pending.append((value, target, depth + 1, path, identity_map and type(value) is dict))
    return target


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _brief(text: str) -> str:
    """`text` cut to 64 characters: keys, and so paths, can be as long as a request body,
    and a reason goes back to the client once per refused event."""
    return text if len(text) <= 64 else text[:61] + "..."
