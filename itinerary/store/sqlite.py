"""SQLite backends: one database file per shard and per gateway, in WAL mode.

WAL mode lets a snapshot write while the log keeps appending, and a commit costs one
write to the WAL file (plus an fsync when `sync` is `full`). With `sync: normal` a
committed entry survives the death of the process, which is the failure a Ray actor
restart recovers from; `full` also survives a power cut.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from itinerary.store.base import DEAD, DONE, PENDING, OutboxRow, ShardState

_SCHEMA_VERSION = 1  # outboxes and journey stores
# Shard stores: 2 keeps profiles in a rowid table updated in place (an upsert of a ~1 KB
# row into version 1's WITHOUT ROWID table cost twice the CPU); version 1 is migrated.
_SHARD_SCHEMA_VERSION = 2
_IN_SLICE = 500  # ids per `IN (...)` lookup, well under SQLite's bound on parameters


@contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once (BEGIN IMMEDIATE): committed, or rolled back on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _connect(path: Path, sync: str, reads: tuple[int, ...] = (_SCHEMA_VERSION,)) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Autocommit mode (isolation_level=None): transactions are explicit BEGIN/COMMIT.
    # check_same_thread=False: the actor opens the store, its I/O thread uses it.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
    db.execute("PRAGMA busy_timeout=5000")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version not in (0, *reads):
        db.close()
        raise RuntimeError(f"{path}: schema version {version}, this build reads {max(reads)}")
    return db


class SqliteShardStore:
    """A shard's log and snapshot in `<data_dir>/shards/<name>.db`."""

    def __init__(self, path: str | Path, *, sync: str = "normal") -> None:
        self.path = Path(path)
        self._db = _connect(self.path, sync, reads=(1, _SHARD_SCHEMA_VERSION))
        if self._db.execute("PRAGMA user_version").fetchone()[0] == 1:
            self._db.executescript(
                """
                BEGIN IMMEDIATE;
                ALTER TABLE profiles RENAME TO profiles_v1;
                CREATE TABLE profiles (key TEXT PRIMARY KEY, state BLOB NOT NULL);
                INSERT INTO profiles (key, state) SELECT key, state FROM profiles_v1;
                DROP TABLE profiles_v1;
                COMMIT;
                """
            )
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL,
                                            at REAL NOT NULL, blob BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS profiles (key TEXT PRIMARY KEY, state BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;
            """
        )
        self._db.execute(f"PRAGMA user_version={_SHARD_SCHEMA_VERSION}")
        row = self._db.execute("SELECT MAX(seq) FROM log").fetchone()
        snap = self._meta("snapshot_seq")
        self._seq = max(row[0] or 0, int(snap) if snap is not None else 0)

    def __repr__(self) -> str:
        return f"SqliteShardStore({self.path})"

    def _meta(self, name: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def append(self, entries: list[tuple[int, float, bytes]]) -> int:
        db = self._db
        first = self._seq + 1
        rows = [(first + i, kind, at, blob) for i, (kind, at, blob) in enumerate(entries)]
        with _immediate(db):
            db.executemany("INSERT INTO log (seq, kind, at, blob) VALUES (?, ?, ?, ?)", rows)
        self._seq += len(rows)
        return self._seq

    def load(self) -> ShardState:
        snap = self._meta("snapshot_seq")
        snapshot_seq = int(snap) if snap is not None else 0
        return ShardState(
            snapshot_seq=snapshot_seq,
            meta=self._meta("shard"),
            profiles=list(self._db.execute("SELECT key, state FROM profiles")),
            log=list(
                self._db.execute("SELECT seq, kind, at, blob FROM log WHERE seq > ? ORDER BY seq", (snapshot_seq,))
            ),
        )

    def write_profiles(self, upserts: list[tuple[str, bytes]]) -> None:
        db = self._db
        with _immediate(db):
            # In place: INSERT OR REPLACE would delete the row and insert it under a new rowid.
            db.executemany(
                "INSERT INTO profiles (key, state) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET state = excluded.state",
                upserts,
            )

    def load_profiles(self, keys: list[str]) -> list[tuple[str, bytes]]:
        found: list[tuple[str, bytes]] = []
        for start in range(0, len(keys), _IN_SLICE):
            chunk = keys[start : start + _IN_SLICE]
            marks = ",".join("?" * len(chunk))
            found.extend(self._db.execute(f"SELECT key, state FROM profiles WHERE key IN ({marks})", chunk))
        return found

    def mark_snapshot(self, upto_seq: int, meta: bytes) -> None:
        db = self._db
        with _immediate(db):
            db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('shard', ?)", (meta,))
            db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('snapshot_seq', ?)", (str(upto_seq),))

    def trim_log(self, upto_seq: int, limit: int) -> int:
        db = self._db
        with _immediate(db):
            cursor = db.execute(
                "DELETE FROM log WHERE seq IN (SELECT seq FROM log WHERE seq <= ? ORDER BY seq LIMIT ?)",
                (upto_seq, limit),
            )
        return int(cursor.rowcount)

    def close(self) -> None:
        self._db.close()


class SqliteOutboxStore:
    """A gateway's outbox in `<data_dir>/gateways/<name>.db`."""

    def __init__(self, path: str | Path, *, sync: str = "normal") -> None:
        self.path = Path(path)
        self._db = _connect(self.path, sync)
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS outbox (
                n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, state TEXT NOT NULL,
                request BLOB NOT NULL, outcome BLOB, created REAL NOT NULL, finished REAL);
            CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, n);
            -- prune() finds delivered messages past their retention by this, not by a scan
            -- of every delivered message (a day of them, at hundreds a second).
            CREATE INDEX IF NOT EXISTS outbox_finished ON outbox (state, finished);
            """
        )
        self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    def __repr__(self) -> str:
        return f"SqliteOutboxStore({self.path})"

    def add(self, requests: list[tuple[str, bytes]], now: float) -> list[OutboxRow]:
        db = self._db
        known: list[OutboxRow] = []
        with _immediate(db):
            # One lookup per slice of ids, then one insert of the new ones: a statement per
            # message cost more than the message's delivery bookkeeping.
            seen = self._seen([message_id for message_id, _ in requests])
            fresh: dict[str, bytes] = {}
            for message_id, request in requests:
                if message_id in seen:
                    known.append((message_id, *seen[message_id]))
                elif message_id not in fresh:  # the same id twice in one batch: once
                    fresh[message_id] = request
            db.executemany(
                "INSERT INTO outbox (id, state, request, created) VALUES (?, ?, ?, ?)",
                [(message_id, PENDING, request, now) for message_id, request in fresh.items()],
            )
        return known

    def lookup(self, ids: list[str]) -> list[OutboxRow]:
        seen = self._seen(ids)
        return [(message_id, *seen[message_id]) for message_id in ids if message_id in seen]

    def _seen(self, ids: list[str]) -> dict[str, tuple[str, bytes | None]]:
        seen: dict[str, tuple[str, bytes | None]] = {}
        for start in range(0, len(ids), _IN_SLICE):
            chunk = ids[start : start + _IN_SLICE]
            marks = ",".join("?" * len(chunk))
            for message_id, state, outcome in self._db.execute(
                f"SELECT id, state, outcome FROM outbox WHERE id IN ({marks})", chunk
            ):
                seen[message_id] = (state, outcome)
        return seen

    def finish(self, results: list[tuple[str, str, bytes]], now: float) -> None:
        db = self._db
        with _immediate(db):
            db.executemany(
                "UPDATE outbox SET state = ?, outcome = ?, finished = ? WHERE id = ?",
                [(state, outcome, now, message_id) for message_id, state, outcome in results],
            )

    def pending(self) -> Iterator[bytes]:
        rows = self._db.execute("SELECT request FROM outbox WHERE state = ? ORDER BY n", (PENDING,)).fetchall()
        return (row[0] for row in rows)

    def dead_letters(self, limit: int) -> list[bytes]:
        rows = self._db.execute("SELECT outcome FROM outbox WHERE state = ? ORDER BY n DESC LIMIT ?", (DEAD, limit))
        return [row[0] for row in rows]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((PENDING, DONE, DEAD), 0)
        counts.update(self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())
        return counts

    def prune(self, before: float, limit: int) -> int:
        db = self._db
        with _immediate(db):
            cursor = db.execute(
                "DELETE FROM outbox WHERE n IN (SELECT n FROM outbox WHERE state = ? AND finished < ? LIMIT ?)",
                (DONE, before, limit),
            )
        return int(cursor.rowcount)

    def close(self) -> None:
        self._db.close()


class SqliteJourneyStore:
    """Journey versions in `<data_dir>/control.db`, next to the supervisor."""

    def __init__(self, path: str | Path, *, sync: str = "normal") -> None:
        self.path = Path(path)
        self._db = _connect(self.path, sync)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS journeys (id TEXT NOT NULL, version INTEGER NOT NULL, "
            "definition BLOB NOT NULL, PRIMARY KEY (id, version)) WITHOUT ROWID"
        )
        self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    def save(self, versions: list[tuple[str, int, bytes]]) -> None:
        with _immediate(self._db):
            self._db.executemany("INSERT OR IGNORE INTO journeys (id, version, definition) VALUES (?, ?, ?)", versions)

    def load(self) -> list[bytes]:
        return [row[0] for row in self._db.execute("SELECT definition FROM journeys ORDER BY id, version")]

    def close(self) -> None:
        self._db.close()
