"""Loading a benchmark script from scripts/ as a module, for the tests that keep it from rotting."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.conftest import REPO


def load_script(name: str) -> ModuleType:
    """scripts/<name>.py as a module named `name` (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
