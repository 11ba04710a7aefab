"""Opening the configured backend for a shard or a gateway."""

from __future__ import annotations

from pathlib import Path

from itinerary.config.runtime import StorageSettings
from itinerary.store.base import JourneyStore, OutboxStore, ShardStore
from itinerary.store.memory import MemoryJourneyStore, MemoryOutboxStore, MemoryShardStore


def open_shard_store(settings: StorageSettings, data_dir: str, name: str) -> ShardStore:
    """The store of shard `name` (e.g. `profile-shard-03`)."""
    if settings.backend == "memory":
        return MemoryShardStore()
    if settings.backend == "redis":
        from itinerary.store.redis import RedisShardStore

        assert settings.redis_url is not None  # the settings' validator requires it
        return RedisShardStore(settings.redis_url.get_secret_value(), name, prefix=settings.key_prefix)
    from itinerary.store.sqlite import SqliteShardStore

    return SqliteShardStore(Path(data_dir) / "shards" / f"{name}.db", sync=settings.sync)


def open_outbox_store(settings: StorageSettings, data_dir: str, name: str) -> OutboxStore:
    """The outbox of gateway `name` (e.g. `gateway-email`)."""
    if settings.backend == "memory":
        return MemoryOutboxStore()
    if settings.backend == "redis":
        from itinerary.store.redis import RedisOutboxStore

        assert settings.redis_url is not None
        return RedisOutboxStore(settings.redis_url.get_secret_value(), name, prefix=settings.key_prefix)
    from itinerary.store.sqlite import SqliteOutboxStore

    return SqliteOutboxStore(Path(data_dir) / "gateways" / f"{name}.db", sync=settings.sync)


def open_journey_store(settings: StorageSettings, data_dir: str) -> JourneyStore:
    """The deployment's store of journey versions (the supervisor's)."""
    if settings.backend == "memory":
        return MemoryJourneyStore()
    if settings.backend == "redis":
        from itinerary.store.redis import RedisJourneyStore

        assert settings.redis_url is not None
        return RedisJourneyStore(settings.redis_url.get_secret_value(), prefix=settings.key_prefix)
    from itinerary.store.sqlite import SqliteJourneyStore

    return SqliteJourneyStore(Path(data_dir) / "control.db", sync=settings.sync)
