"""Pure logic must not import Ray: it is tested without it and reused outside actors."""

from __future__ import annotations

import subprocess
import sys

PURE_MODULES = [
    "itinerary.engine.journey",
    "itinerary.engine.compiler",
    "itinerary.engine.profile",
    "itinerary.engine.expressions",
    "itinerary.engine.templates",
    "itinerary.engine.ratelimit",
    "itinerary.engine.ingest",
    "itinerary.engine.xdm",
    "itinerary.engine.routing",
    "itinerary.engine.timers",
    "itinerary.catalog",
    "itinerary.router",
    "itinerary.channels.gateway",
    "itinerary.channels.retry",
    "itinerary.config.loader",
    "itinerary.traffic",
]


def test_pure_modules_do_not_import_ray() -> None:
    code = (
        "import importlib, sys\n"
        + "".join(f"importlib.import_module({m!r})\n" for m in PURE_MODULES)
        + ("print('ray' in sys.modules)")
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False"
