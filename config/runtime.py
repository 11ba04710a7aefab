"""Runtime settings: where Ray is, how many shards, the ingress and its limits."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from itinerary.config.secrets import Secret

GROUP_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEFAULT_NAMESPACE_CODES = {"4": "ECID", "6": "Email", "7": "Phone", "9": "TNTID", "10": "AAID", "411": "AdCloud"}


class Frozen(BaseModel):
    """Base of every config model: immutable, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class IngressSettings(Frozen):
    """The HTTP edge: address, request limits and how events are batched per shard."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    instances: int = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_events_per_request: int = Field(10_000, ge=1)
    max_event_bytes: int = Field(
        64 * 1024, ge=256, description="msgpack size of what a shard keeps of one event (its record)"
    )
    max_identities: int = Field(20, ge=1, description="identities in one event's identityMap")
    max_future_skew: timedelta = Field(
        timedelta(days=1),
        ge=timedelta(0),
        description="how far ahead of the ingress clock an event's timestamp may be (the past is open)",
    )
    fast_json: bool = Field(
        True,
        description="decode JSON bodies whose every event is valid with the compiled decoder, reading only the "
        "fields the shards keep; other bodies take the general path, which answers with a reason per event",
    )
    batch_max_events: int = Field(1000, ge=1)
    batch_max_delay: timedelta = Field(
        timedelta(milliseconds=2),
        description="how long events may gather for their shard; a quiet shard (nothing in flight, nothing "
        "sent for 2.5 x this) gets them at once",
    )
    max_inflight_batches: int = Field(4, ge=1, description="per shard, per ingress")
    max_queued_events: int = Field(200_000, ge=1, description="beyond this the ingress answers 429")
    retry_after: int = Field(1, ge=1, description="seconds, sent with 429")


class IdentitySettings(Frozen):
    """How an event's routing identity is chosen when its definition names no namespace."""

    namespaces: tuple[str, ...] = ("Email", "ECID", "CRMID")
    namespace_codes: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_NAMESPACE_CODES))


class ProfileSettings(Frozen):
    """Bounds on what one profile keeps."""

    recent_event_ids: int = Field(64, ge=1, le=10_000)
    max_ids_per_namespace: int = Field(8, ge=1)
    max_attributes: int = Field(200, ge=1)
    max_attribute_bytes: int = Field(
        4 * 1024, ge=16, description="one attribute value: a string's UTF-8 length, another value's msgpack length"
    )
    max_profile_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="attribute values and identities of one profile together, measured the same way; "
        "a write that would go beyond is skipped",
    )
    passivate_after: timedelta | None = Field(
        timedelta(seconds=60),
        description="a profile untouched for this long (up to twice as long) is kept packed, "
        "about a third of the memory, until its next input; null keeps every profile unpacked",
    )
    evict_to_store: bool = Field(
        True,
        description="with a durable store, a passivated profile holding no journey instance is dropped from "
        "memory once a snapshot has written it, and read back on its next event",
    )


class StorageSettings(Frozen):
    """Where shards keep their write-ahead log and snapshots, and gateways their outbox.

    `sqlite` (the default) keeps one database per shard and per gateway under the data
    dir, in WAL mode; `redis` keeps them in a Redis server that every node of a cluster
    can reach, so a shard restarted on another node finds its state; `memory` keeps
    nothing (a crash loses what the actor held) and exists for benchmarks and tests.
    """

    # The redis URL may carry a password: it is masked in errors like a secret.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    backend: Literal["sqlite", "redis", "memory"] = "sqlite"
    redis_url: Secret | None = Field(None, description="{env: NAME} or {file: PATH} holding redis://host:port/db")
    key_prefix: str = Field(
        "itinerary", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$", description="redis: keys start with this"
    )
    sync: Literal["full", "normal"] = Field(
        "normal",
        description="sqlite: `normal` survives a process crash (the tests' faults); `full` also "
        "a power cut, at one fsync per commit",
    )
    snapshot_interval: timedelta = Field(timedelta(seconds=10), description="how often dirty profiles are written")
    snapshot_log_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="a snapshot is also taken once the log holds this much"
    )
    outbox_retention: timedelta = Field(
        timedelta(hours=24), description="how long a delivered message's id is remembered to refuse a resend"
    )

    @model_validator(mode="after")
    def _redis_needs_url(self) -> StorageSettings:
        if self.backend == "redis" and self.redis_url is None:
            raise ValueError("backend redis needs redis_url, e.g. {env: ITINERARY_REDIS_URL}")
        return self


class SecuritySettings(Frozen):
    """API keys of the HTTP edge. With no keys configured the API is open (local use only).

    `ingest_keys` may post events; `admin_keys` may also read profiles and status. Keys are
    compared in constant time and never logged.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    ingest_keys: tuple[Secret, ...] = ()
    admin_keys: tuple[Secret, ...] = ()


class RuntimeSettings(Frozen):
    """Placement and sizing of the actors, and the data directory."""

    ray_address: str | None = None
    ray_namespace: str = "itinerary"
    shards: int = Field(2, ge=1, le=1024)
    partitions: int = Field(4096, ge=1, le=1 << 20)
    data_dir: str = "./data"
    # Each tick a shard fires what fell due (one log entry, grouped into the same commit as
    # the events queued with it) and looks at its snapshot and passivation clocks. The tick
    # bounds how late a wait ends: at 50 ms it was much of a reminder's delivery p99.
    timer_tick: timedelta = timedelta(milliseconds=10)
    # How long a gateway gathers outcomes before it records them in the outbox and hands
    # them back to the shards (in the answers to their send calls, or a call of its own at
    # most this often). A journey's next action waits for its outcome, so this is added to
    # the delivery time of every second message: at 2,500 and 5,000 events/s, 10 ms took
    # their p99 from 113 to 81-88 ms against 30 ms; at 10,000 the difference was within
    # the machine's noise (docs/benchmarks.md, stop 15).
    outcome_flush: timedelta = timedelta(milliseconds=10)
    # How far apart a shard's calls to one gateway actor are, at least (one call in flight
    # per actor; sends made meanwhile leave together): a first message waits up to this
    # long after its event, a second one twice. 20 ms suited Ray calls (~1.3 ms of CPU
    # each); on direct streams, 5 ms took the delivery p50 at 10,000 events/s from
    # 33-63 ms to 24-25 ms for ~3 us more gateway CPU per event (docs/benchmarks.md, stop 17).
    send_flush: timedelta = timedelta(milliseconds=5)
    # Channels served by one gateway actor, `gateway-<name>`; a channel named in no group
    # has an actor of its own, `gateway-<channel>`. A shard makes one send call per group
    # per flush; each actor is one more process to wake, and as a Ray call each call cost
    # both ends about a millisecond of CPU here (see docs/architecture.md).
    gateway_groups: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    actor_num_cpus: float = Field(0.0, ge=0.0)
    # Batches, sends and outcomes go between actors as frames on kept TCP connections
    # (actors/wire.py): a Ray actor call cost ~1.3 ms of CPU across both ends, a frame
    # ~0.12 ms. Ray still finds the actors and carries every other call. Off: all Ray calls.
    direct_streams: bool = True
    ingress: IngressSettings = IngressSettings()
    identity: IdentitySettings = IdentitySettings()
    profile: ProfileSettings = ProfileSettings()
    storage: StorageSettings = StorageSettings()
    security: SecuritySettings = SecuritySettings()

    @model_validator(mode="after")
    def _partitions_cover_shards(self) -> RuntimeSettings:
        if self.partitions < self.shards:
            raise ValueError("partitions must be at least the number of shards")
        return self

    @model_validator(mode="after")
    def _gateway_groups_are_well_formed(self) -> RuntimeSettings:
        seen: dict[str, str] = {}
        for group, channels in self.gateway_groups.items():
            if not GROUP_NAME.fullmatch(group):
                raise ValueError(f"gateway group name {group!r} must be letters, digits, '_' or '-'")
            if not channels:
                raise ValueError(f"gateway group {group!r} names no channel")
            for channel in channels:
                if channel in seen:
                    raise ValueError(f"channel {channel!r} is in gateway groups {seen[channel]!r} and {group!r}")
                seen[channel] = group
        return self
