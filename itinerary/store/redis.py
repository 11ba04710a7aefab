"""Redis backends: state every node of a cluster can reach, so an actor may restart anywhere.

A shard's log is a Redis stream whose entry ids are the log sequence numbers (`<seq>-0`),
so a replay reads `XRANGE (snapshot_seq ...` and a snapshot trims with `XTRIM MINID` in
the same MULTI/EXEC as the profile writes. A gateway's outbox is a few hashes and sorted
sets per gateway. How durable a commit is depends on the server's persistence
(`appendonly yes` with `appendfsync everysec` or `always`): see docs/operations.md.
Keys are `<prefix>:<actor name>:...`, so several deployments can share one server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis

from itinerary.store.base import DEAD, DONE, PENDING, OutboxRow, ShardState

_CHUNK = 1000  # fields per HSET/HMGET in one command


def _client(url: str) -> Any:
    # Binary-safe: blobs are msgpack. A short timeout turns a dead server into an error
    # the actor reports (503 at the edge) instead of a hang. Typed Any: the client's
    # stubs describe str-or-bytes answers, and with decode_responses=False all are bytes.
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, decode_responses=False)


def _chunks(items: list[Any], size: int = _CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class RedisShardStore:
    """A shard's log (a stream) and snapshot (a hash of profiles plus a meta hash)."""

    def __init__(self, url: str, name: str, *, prefix: str = "itinerary") -> None:
        self._db = _client(url)
        base = f"{prefix}:{name}"
        self._log, self._profiles, self._meta = f"{base}:log", f"{base}:profiles", f"{base}:meta"
        self.name = name
        last = self._db.xrevrange(self._log, count=1)
        snap = self._db.hget(self._meta, "snapshot_seq")
        self._seq = max(int(last[0][0].split(b"-")[0]) if last else 0, int(snap) if snap else 0)

    def __repr__(self) -> str:
        return f"RedisShardStore({self.name})"

    def append(self, entries: list[tuple[int, float, bytes]]) -> int:
        pipe = self._db.pipeline(transaction=True)
        seq = self._seq
        for kind, at, blob in entries:
            seq += 1
            pipe.xadd(self._log, {"k": kind, "at": repr(at), "b": blob}, id=f"{seq}-0")
        pipe.execute()
        self._seq = seq
        return seq

    def load(self) -> ShardState:
        meta = self._db.hgetall(self._meta)
        snapshot_seq = int(meta.get(b"snapshot_seq", b"0"))
        profiles = [(k.decode(), v) for k, v in self._db.hscan_iter(self._profiles, count=_CHUNK)]
        log = [
            (int(entry_id.split(b"-")[0]), int(fields[b"k"]), float(fields[b"at"]), fields[b"b"])
            for entry_id, fields in self._db.xrange(self._log, min=f"({snapshot_seq}-0")
        ]
        return ShardState(snapshot_seq=snapshot_seq, meta=meta.get(b"shard"), profiles=profiles, log=log)

    def write_profiles(self, upserts: list[tuple[str, bytes]]) -> None:
        pipe = self._db.pipeline(transaction=True)
        for chunk in _chunks(upserts):
            pipe.hset(self._profiles, mapping=dict(chunk))
        pipe.execute()

    def load_profiles(self, keys: list[str]) -> list[tuple[str, bytes]]:
        found: list[tuple[str, bytes]] = []
        for chunk in _chunks(keys):
            found.extend(
                (k, v) for k, v in zip(chunk, self._db.hmget(self._profiles, chunk), strict=True) if v is not None
            )
        return found

    def mark_snapshot(self, upto_seq: int, meta: bytes) -> None:
        self._db.hset(self._meta, mapping={"shard": meta, "snapshot_seq": upto_seq})

    def trim_log(self, upto_seq: int, limit: int) -> int:
        # One XTRIM whatever `limit`: the server frees the entries without writing pages,
        # and a second call finds nothing left to drop.
        return int(self._db.xtrim(self._log, minid=f"{upto_seq + 1}-0"))

    def close(self) -> None:
        self._db.close()


class RedisOutboxStore:
    """A gateway's outbox: state, request and outcome hashes, plus sorted sets for order."""

    def __init__(self, url: str, name: str, *, prefix: str = "itinerary") -> None:
        self._db = _client(url)
        base = f"{prefix}:{name}:outbox"
        self._state, self._request, self._outcome = f"{base}:state", f"{base}:request", f"{base}:outcome"
        self._pending, self._finished, self._dead = f"{base}:pending", f"{base}:finished", f"{base}:dead"
        self._counter = f"{base}:n"
        self.name = name

    def __repr__(self) -> str:
        return f"RedisOutboxStore({self.name})"

    def add(self, requests: list[tuple[str, bytes]], now: float) -> list[OutboxRow]:
        if not requests:
            return []
        db = self._db
        pipe = db.pipeline(transaction=False)
        for message_id, _ in requests:
            pipe.hsetnx(self._state, message_id, PENDING)
        pipe.incrby(self._counter, len(requests))
        *claimed, last = pipe.execute()
        first = int(last) - len(requests) + 1
        new = [(i, r) for i, (r, fresh) in enumerate(zip(requests, claimed, strict=True)) if fresh]
        known_ids = [message_id for (message_id, _), fresh in zip(requests, claimed, strict=True) if not fresh]
        pipe = db.pipeline(transaction=True)
        if new:
            pipe.hset(self._request, mapping={message_id: request for _, (message_id, request) in new})
            pipe.zadd(self._pending, {message_id: first + i for i, (message_id, _) in new})
        if known_ids:
            pipe.hmget(self._state, known_ids)
            pipe.hmget(self._outcome, known_ids)
        answers = pipe.execute()
        if not known_ids:
            return []
        states, outcomes = answers[-2], answers[-1]
        return [
            (message_id, (state or PENDING.encode()).decode(), outcome)
            for message_id, state, outcome in zip(known_ids, states, outcomes, strict=True)
        ]

    def lookup(self, ids: list[str]) -> list[OutboxRow]:
        if not ids:
            return []
        pipe = self._db.pipeline(transaction=False)
        pipe.hmget(self._state, ids)
        pipe.hmget(self._outcome, ids)
        states, outcomes = pipe.execute()
        return [
            (message_id, state.decode(), outcome)
            for message_id, state, outcome in zip(ids, states, outcomes, strict=True)
            if state is not None
        ]

    def finish(self, results: list[tuple[str, str, bytes]], now: float) -> None:
        if not results:
            return
        pipe = self._db.pipeline(transaction=True)
        for message_id, state, outcome in results:
            pipe.hset(self._state, message_id, state)
            pipe.hset(self._outcome, message_id, outcome)
            pipe.zrem(self._pending, message_id)
            pipe.hdel(self._request, message_id)
            if state == DEAD:
                pipe.zadd(self._dead, {message_id: now})
            else:
                pipe.zadd(self._finished, {message_id: now})
        pipe.execute()

    def pending(self) -> Iterator[bytes]:
        ids = self._db.zrange(self._pending, 0, -1)
        for chunk in _chunks(ids):
            for request in self._db.hmget(self._request, chunk):
                if request is not None:
                    yield request

    def dead_letters(self, limit: int) -> list[bytes]:
        ids = self._db.zrevrange(self._dead, 0, max(0, limit - 1))
        return [o for o in self._db.hmget(self._outcome, ids) if o is not None] if ids else []

    def counts(self) -> dict[str, int]:
        pipe = self._db.pipeline(transaction=False)
        pipe.zcard(self._pending)
        pipe.zcard(self._finished)
        pipe.zcard(self._dead)
        pending, done, dead = pipe.execute()
        return {PENDING: int(pending), DONE: int(done), DEAD: int(dead)}

    def prune(self, before: float, limit: int) -> int:
        ids = self._db.zrangebyscore(self._finished, "-inf", f"({before}", start=0, num=limit)
        for chunk in _chunks(ids):
            pipe = self._db.pipeline(transaction=True)
            pipe.hdel(self._state, *chunk)
            pipe.hdel(self._outcome, *chunk)
            pipe.zrem(self._finished, *chunk)
            pipe.execute()
        return len(ids)

    def close(self) -> None:
        self._db.close()


class RedisJourneyStore:
    """Journey versions in one hash, `<prefix>:journeys`, field `<id>@<version>`."""

    def __init__(self, url: str, *, prefix: str = "itinerary") -> None:
        self._db = _client(url)
        self._key = f"{prefix}:journeys"

    def save(self, versions: list[tuple[str, int, bytes]]) -> None:
        pipe = self._db.pipeline(transaction=True)
        for journey_id, version, definition in versions:
            pipe.hsetnx(self._key, f"{journey_id}@{version:09d}", definition)
        pipe.execute()

    def load(self) -> list[bytes]:
        stored = self._db.hgetall(self._key)
        return [stored[field] for field in sorted(stored)]

    def close(self) -> None:
        self._db.close()
