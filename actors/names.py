"""Names of the actors, so that every process finds its peers the same way."""

from __future__ import annotations

SUPERVISOR = "itinerary-supervisor"


def shard_name(index: int) -> str:
    return f"profile-shard-{index:02d}"


def gateway_name(channel: str) -> str:
    return f"gateway-{channel}"


def ingress_name(index: int) -> str:
    return f"ingress-{index}"


def is_deployment_actor(name: str) -> bool:
    """Whether `name` is one a deployment gives its actors (what `itinerary down` stops)."""
    return name == SUPERVISOR or name.startswith(("profile-shard-", "gateway-", "ingress-"))
