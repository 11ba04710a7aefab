"""Identity to profile key to shard: a stable hash over fixed virtual partitions.

There are many more partitions than shards so that shards can be added and partitions
moved later by changing the table, without rehashing any profile.
"""

from __future__ import annotations

import zlib


def profile_key(namespace: str, identity: str) -> str:
    """The key a profile is stored and routed under."""
    return f"{namespace}:{identity}"


def partition_of(key: str, partitions: int) -> int:
    """Stable across processes and runs (unlike `hash()`), and fast (C crc32)."""
    return zlib.crc32(key.encode("utf-8")) % partitions


class RoutingTable:
    """Maps each virtual partition to the index of the shard that owns it."""

    __slots__ = ("owners", "partitions", "shards")

    def __init__(self, partitions: int, shards: int, owners: list[int] | None = None) -> None:
        if shards < 1 or partitions < shards:
            raise ValueError("need at least one shard and no fewer partitions than shards")
        self.partitions = partitions
        self.shards = shards
        self.owners = owners if owners is not None else [p % shards for p in range(partitions)]
        if len(self.owners) != partitions or not all(0 <= o < shards for o in self.owners):
            raise ValueError("owners must name a valid shard for every partition")

    def shard_of(self, key: str) -> int:
        return self.owners[zlib.crc32(key.encode("utf-8")) % self.partitions]

    def __repr__(self) -> str:
        return f"RoutingTable(partitions={self.partitions}, shards={self.shards})"
