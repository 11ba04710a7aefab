"""In-memory backends: the same interface with nothing kept across a process's death.

For benchmarks that measure the engine without storage, and for unit tests of the
actors' logic; a deployment that must not lose what it acknowledged uses sqlite or redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from itinerary.store.base import DEAD, DONE, PENDING, OutboxRow, ShardState


class MemoryShardStore:
    """Keeps nothing: the log is dropped as written, the snapshot is never read back."""

    def __init__(self) -> None:
        self._seq = 0

    def append(self, entries: list[tuple[int, float, bytes]]) -> int:
        self._seq += len(entries)
        return self._seq

    def load(self) -> ShardState:
        return ShardState(snapshot_seq=self._seq)

    def write_profiles(self, upserts: list[tuple[str, bytes]]) -> None:
        pass

    def load_profiles(self, keys: list[str]) -> list[tuple[str, bytes]]:
        return []  # nothing kept, so a shard on this store never evicts

    def mark_snapshot(self, upto_seq: int, meta: bytes) -> None:
        pass

    def trim_log(self, upto_seq: int, limit: int) -> int:
        return 0

    def close(self) -> None:
        pass


@dataclass(slots=True)
class _Row:
    state: str
    request: bytes
    outcome: bytes | None = None
    finished: float | None = None


class MemoryOutboxStore:
    """An outbox in a dict: de-duplicates resends for the life of the process only."""

    def __init__(self) -> None:
        self._rows: dict[str, _Row] = {}

    def add(self, requests: list[tuple[str, bytes]], now: float) -> list[OutboxRow]:
        known: list[OutboxRow] = []
        for message_id, request in requests:
            row = self._rows.get(message_id)
            if row is None:
                self._rows[message_id] = _Row(PENDING, request)
            else:
                known.append((message_id, row.state, row.outcome))
        return known

    def lookup(self, ids: list[str]) -> list[OutboxRow]:
        rows = self._rows
        return [(i, rows[i].state, rows[i].outcome) for i in ids if i in rows]

    def finish(self, results: list[tuple[str, str, bytes]], now: float) -> None:
        for message_id, state, outcome in results:
            row = self._rows.get(message_id)
            if row is not None:
                row.state, row.outcome, row.finished = state, outcome, now

    def pending(self) -> Iterator[bytes]:
        return (row.request for row in list(self._rows.values()) if row.state == PENDING)

    def dead_letters(self, limit: int) -> list[bytes]:
        dead = [row.outcome for row in self._rows.values() if row.state == DEAD and row.outcome is not None]
        return list(reversed(dead))[:limit]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((PENDING, DONE, DEAD), 0)
        for row in self._rows.values():
            counts[row.state] += 1
        return counts

    def prune(self, before: float, limit: int) -> int:
        old = [k for k, row in self._rows.items() if row.state == DONE and (row.finished or 0.0) < before][:limit]
        for key in old:
            del self._rows[key]
        return len(old)

    def close(self) -> None:
        pass


class MemoryJourneyStore:
    """Journey versions for the life of the process only."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, int], bytes] = {}

    def save(self, versions: list[tuple[str, int, bytes]]) -> None:
        for journey_id, version, definition in versions:
            self._rows.setdefault((journey_id, version), definition)

    def load(self) -> list[bytes]:
        return [self._rows[key] for key in sorted(self._rows)]

    def close(self) -> None:
        pass
