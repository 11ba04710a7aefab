"""XDM JSON-LD to the short form used by streaming ingestion.

The JSON-LD form (Adobe's published examples) prefixes keys (`xdm:`, `schema:`, `dc:` ...),
uses `@id` / `@type`, and keys identityMap by namespace URIs. The short form strips `xdm:`,
puts other prefixes under `_<prefix>` objects (the AEP rule: `schema:latitude` becomes
`_schema.latitude`), turns `@id` into `_id` and namespace URIs into namespace codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from itinerary.config.runtime import DEFAULT_NAMESPACE_CODES

MAX_DEPTH = 64
NAMESPACE_URI = "https://data.adobe.io/entities/namespace/"


def is_jsonld(event: Mapping[str, Any]) -> bool:
    """True when the event uses the JSON-LD form (any `xdm:` key or `@id`/`@type`)."""
    for key in event:
        if isinstance(key, str) and (key.startswith("xdm:") or key in ("@id", "@type")):
            return True
    return False


def normalise(event: dict[str, Any], namespace_codes: Mapping[str, str] = DEFAULT_NAMESPACE_CODES) -> dict[str, Any]:
    """The short form of `event`; a short-form event is returned as it is (no copy)."""
    if not is_jsonld(event):
        return event
    out = _convert(event, 0)
    identity_map = out.get("identityMap")
    if isinstance(identity_map, dict):
        out["identityMap"] = {_namespace(k, namespace_codes): v for k, v in identity_map.items()}
    return out  # type: ignore[no-any-return]


def _namespace(key: str, codes: Mapping[str, str]) -> str:
    if key.startswith(NAMESPACE_URI):
        number = key[len(NAMESPACE_URI):].strip("/")
        return codes.get(number, f"NS{number}")
    return key


def _convert(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, list):
        return [_convert(v, depth + 1) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        converted = _convert(item, depth + 1)
        if not isinstance(key, str):
            out[key] = converted
        elif key.startswith("xdm:"):
            out[key[4:]] = converted
        elif key in ("@id", "@type"):
            out["_" + key[1:]] = converted
        elif ":" in key and not key.startswith(("http://", "https://")):
            prefix, _, name = key.partition(":")
            group = out.setdefault("_" + prefix, {})
            if isinstance(group, dict):
                group[name] = converted
        else:
            out[key] = converted
    return out
