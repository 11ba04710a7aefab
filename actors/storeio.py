"""Calling a storage backend from an async actor without blocking its event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class StoreCalls:
    """Runs a store's methods on one I/O thread, in call order; inline when `inline` is set.

    One thread per actor keeps the backend single-threaded (no locking needed) and lets
    SQLite's writes overlap the actor's Python work. An in-memory store has nothing to
    wait for, so its methods are called directly.
    """

    def __init__(self, name: str, *, inline: bool) -> None:
        self._executor = None if inline else ThreadPoolExecutor(1, thread_name_prefix=f"{name}-io")

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
