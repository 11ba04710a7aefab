"""Durable state: shard write-ahead logs and snapshots, gateway outboxes (no Ray here)."""
