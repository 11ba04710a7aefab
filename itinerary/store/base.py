"""What a storage backend provides: a shard's log and snapshot, a gateway's outbox.

Methods are synchronous and called from one I/O thread per actor, so a backend needs no
locking of its own; an actor awaits them through `loop.run_in_executor`. Bytes in and out
are msgpack produced and read by the actors; backends never look inside.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

# Kinds of log entries: what a shard applied, in the order it applied them.
EVENTS = 1  # a batch of routed records from an ingress
OUTCOMES = 2  # a batch of outcomes from a gateway

LogEntry = tuple[int, int, float, bytes]
"""(seq, kind, at, blob): `at` is the shard's clock when it applied the entry."""


@dataclass(slots=True)
class ShardState:
    """What a shard finds on start: its last snapshot and the log written after it."""

    snapshot_seq: int = 0
    meta: bytes | None = None
    profiles: list[tuple[str, bytes]] = field(default_factory=list)
    log: list[LogEntry] = field(default_factory=list)


class ShardStore(Protocol):
    """A shard's write-ahead log plus a snapshot of its profiles, kept together."""

    def append(self, entries: list[tuple[int, float, bytes]]) -> int:
        """Durably append (kind, at, blob) entries in order; returns the last seq given."""
        ...

    def load(self) -> ShardState:
        """The snapshot and every log entry after it, in order."""
        ...

    def write_profiles(self, upserts: list[tuple[str, bytes]]) -> None:
        """Write (key, state) rows of a snapshot in progress; atomic per call.

        A snapshot writes its rows in several calls so that log appends are never held up
        for long; rows may be newer than the snapshot's point (see ProfileShard.snapshot)."""
        ...

    def load_profiles(self, keys: list[str]) -> list[tuple[str, bytes]]:
        """The snapshot rows of those `keys` that have one: profiles a shard evicted and
        needs again (keys without a row are simply absent from the answer)."""
        ...

    def mark_snapshot(self, upto_seq: int, meta: bytes) -> None:
        """Complete a snapshot: record `meta` as of log entry `upto_seq`, atomically (after a
        crash the old point and its log tail are still there). From then on `load` ignores
        the entries up to it; `trim_log` drops them."""
        ...

    def trim_log(self, upto_seq: int, limit: int) -> int:
        """Drop at most `limit` log entries at or before `upto_seq`; returns how many.

        Called in a loop after `mark_snapshot`, a call per I/O job, so that appends go
        between the calls: dropping ten seconds of log in one transaction held a shard's
        log writes, and every ingest answer, for ~150 ms."""
        ...

    def close(self) -> None: ...


OutboxRow = tuple[str, str, bytes | None]
"""(message id, state, final outcome or None)."""

PENDING = "pending"
DONE = "done"  # delivered, or answered with a final outcome other than a dead letter
DEAD = "dead"  # failed for good: kept with its reason as a dead letter


class OutboxStore(Protocol):
    """A gateway's outbox: every message before it is sent, and its final outcome after."""

    def add(self, requests: list[tuple[str, bytes]], now: float) -> list[OutboxRow]:
        """Record new messages as pending. Returns the rows of ids that were already known
        (a resend after a shard replay or a retried call), which are not added again."""
        ...

    def lookup(self, ids: list[str]) -> list[OutboxRow]:
        """The rows of those `ids` that are known, without adding any (read only)."""
        ...

    def finish(self, results: list[tuple[str, str, bytes]], now: float) -> None:
        """Record final outcomes: (message id, DONE or DEAD, outcome)."""
        ...

    def pending(self) -> Iterator[bytes]:
        """Requests without a final outcome, oldest first (a restarted gateway resumes them)."""
        ...

    def dead_letters(self, limit: int) -> list[bytes]:
        """The most recent dead letters' outcomes, newest first."""
        ...

    def counts(self) -> dict[str, int]:
        """Rows per state."""
        ...

    def prune(self, before: float, limit: int) -> int:
        """Forget at most `limit` delivered messages finished before `before`; returns how
        many (the caller calls again, a call per I/O job, while it gets `limit`)."""
        ...

    def close(self) -> None: ...


class JourneyStore(Protocol):
    """Every journey version a deployment has run, so a restart runs the same ones."""

    def save(self, versions: list[tuple[str, int, bytes]]) -> None:
        """Record (journey id, version, definition as JSON) rows; existing ones are kept."""
        ...

    def load(self) -> list[bytes]:
        """Every stored definition, oldest version first within a journey."""
        ...

    def close(self) -> None: ...
