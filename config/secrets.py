"""Secret references in config: `{env: NAME}` or `{file: PATH}`, resolved at load time.

The resolved value is held in a `pydantic.SecretStr`, whose repr and str are masked, so a
config object can be logged or shown in `status` without leaking it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr, ValidationInfo


def resolve_secret(value: Any, info: ValidationInfo) -> Any:
    """Turn a secret reference into its value; plain strings are refused on purpose.

    The environment comes from the validation context (`{"env": mapping}`) when the loader
    gives one, so tests and tools can resolve against an explicit environment.
    """
    if value is None or isinstance(value, SecretStr):
        return value
    env = (info.context or {}).get("env", os.environ)
    if isinstance(value, dict):
        if set(value) == {"env"}:
            name = str(value["env"])
            if name not in env:
                raise ValueError(f"environment variable {name} is not set")
            return SecretStr(env[name])
        if set(value) == {"file"}:
            path = Path(str(value["file"]))
            try:
                return SecretStr(path.read_text(encoding="utf-8").strip())
            except OSError as exc:
                raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    raise ValueError("a secret must be given as {env: NAME} or {file: PATH}, not inline")


Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]
"""A config field holding a secret: write `{env: NAME}` or `{file: PATH}` in YAML."""
