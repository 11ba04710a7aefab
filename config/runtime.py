"""Runtime settings: where Ray is, how many shards, the ingress and its limits."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    max_event_bytes: int = Field(64 * 1024, ge=256)
    max_identities: int = Field(20, ge=1)
    batch_max_events: int = Field(1000, ge=1)
    batch_max_delay: timedelta = timedelta(milliseconds=2)
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


class RuntimeSettings(Frozen):
    """Placement and sizing of the actors, and the data directory."""

    ray_address: str | None = None
    ray_namespace: str = "itinerary"
    shards: int = Field(2, ge=1, le=1024)
    partitions: int = Field(4096, ge=1, le=1 << 20)
    data_dir: str = "./data"
    timer_tick: timedelta = timedelta(milliseconds=20)
    outcome_flush: timedelta = timedelta(milliseconds=50)
    actor_num_cpus: float = Field(0.0, ge=0.0)
    ingress: IngressSettings = IngressSettings()
    identity: IdentitySettings = IdentitySettings()
    profile: ProfileSettings = ProfileSettings()

    @model_validator(mode="after")
    def _partitions_cover_shards(self) -> RuntimeSettings:
        if self.partitions < self.shards:
            raise ValueError("partitions must be at least the number of shards")
        return self
