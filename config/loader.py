"""Loads YAML config, applies `ITINERARY__SECTION__KEY` environment overrides, validates.

Every error names the file, the path inside it and the reason, e.g.
`demo.yaml: journeys[2].nodes.remind.wait.duration: invalid duration 'PT1'`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from itinerary.config.app import AppConfig
from itinerary.errors import ConfigError

ENV_PREFIX = "ITINERARY__"


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> AppConfig:
    """Read, override from the environment and validate one config file."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(file=file, path="", reason=f"cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(file=file, path="", reason=f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(file=file, path="", reason="the top level must be a mapping")
    env = os.environ if env is None else env
    apply_env_overrides(data, env, file)
    return validate_config(data, file, env)


def validate_config(data: dict[str, Any], file: str, env: Mapping[str, str] | None = None) -> AppConfig:
    try:
        return AppConfig.model_validate(data, context={"env": os.environ if env is None else env})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(file=file, path=format_loc(first["loc"]), reason=first["msg"]) from None


def format_loc(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def apply_env_overrides(data: dict[str, Any], env: Mapping[str, str], file: str) -> None:
    """`ITINERARY__CHANNELS__LOYALTY_API__URL=...` sets channels.loyalty-api.url.

    Keys match case-insensitively with `_` standing for `-`, so names that are not valid
    in environment variables can still be reached; list items are reached by index.
    """
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        try:
            value = yaml.safe_load(env[name])
        except yaml.YAMLError:
            value = env[name]
        _set_path(data, parts, value, name, file)


def _set_path(data: Any, parts: list[str], value: Any, var: str, file: str) -> None:
    node = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(file=file, path=var, reason=f"no list item {part!r} to override")
            key: Any = int(part)
        elif isinstance(node, dict):
            key = _match_key(node, part)
        else:
            raise ConfigError(file=file, path=var, reason="cannot override inside a scalar value")
        if last:
            node[key] = value
        else:
            if isinstance(node, dict) and key not in node:
                node[key] = {}
            node = node[key]


def _match_key(node: dict[str, Any], part: str) -> str:
    wanted = part.lower().replace("-", "_")
    for key in node:
        if str(key).lower().replace("-", "_") == wanted:
            return str(key)
    return part.lower()
