"""The ingress's collection policy: automatic collection off, cycles collected every period."""

from __future__ import annotations

import asyncio
import gc
import weakref

from itinerary.actors.tuning import collect_periodically


class Node:
    """A container that can take part in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def test_cycles_are_collected_within_a_period_and_collection_comes_back_after() -> None:
    async def scenario() -> None:
        assert gc.isenabled()
        collector = asyncio.get_running_loop().create_task(collect_periodically(period=0.01))
        await asyncio.sleep(0)
        assert not gc.isenabled()  # nothing is collected on allocation any more
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b  # only the collector can free a cycle
        deadline = asyncio.get_running_loop().time() + 5.0
        while gone() is not None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert gone() is None
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        assert gc.isenabled()

    asyncio.run(scenario())
