"""Wire formats that cross actor boundaries: plain dicts, msgpack-serialisable.

A *send request* travels from a profile shard to a channel gateway; an *outcome* travels
back. Both are plain dicts so that batches of them pack with msgpack in one call.

Send request keys:
    id        idempotency key: "<journey>/<instance>/<node>" (stable across retries)
    channel   channel name (the gateway that must deliver it)
    shard     index of the profile shard that asked (where the outcome goes)
    profile   profile key ("<namespace>:<id>")
    journey   journey id
    instance  journey instance id
    node      action node id
    payload   provider payload: for webhooks the JSON body; for email
              {"to": str, "subject": str, "text": str, "html": str | None}
    created   time the journey decided to send (epoch seconds, from the shard clock)
    event_ts  ingest time of the event that led to the send (epoch seconds) or None

Outcome keys:
    id, channel, shard, profile, journey, instance, node   copied from the request
    outcome   one of OUTCOMES
    reason    None for "sent"; otherwise a short human-readable reason
    status    provider status code (HTTP status or SMTP code) or None
    attempts  number of delivery attempts made
    at        time the outcome was decided (epoch seconds, gateway clock)
    event_ts  copied from the request (for event-to-delivery latency)
"""

from __future__ import annotations

from typing import Any, Final

SENT: Final = "sent"
FAILED: Final = "failed"
THROTTLED: Final = "throttled"  # not final: the message waits in the channel's queue
EXPIRED: Final = "expired"
OUTCOMES: Final = (SENT, FAILED, THROTTLED, EXPIRED)
FINAL_OUTCOMES: Final = (SENT, FAILED, EXPIRED)

SendRequest = dict[str, Any]
Outcome = dict[str, Any]


def outcome_for(
    request: SendRequest,
    outcome: str,
    *,
    at: float,
    reason: str | None = None,
    status: int | None = None,
    attempts: int = 0,
) -> Outcome:
    """Build the outcome record of `request`."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    return {
        "id": request["id"],
        "channel": request["channel"],
        "shard": request["shard"],
        "profile": request["profile"],
        "journey": request["journey"],
        "instance": request["instance"],
        "node": request["node"],
        "outcome": outcome,
        "reason": reason,
        "status": status,
        "attempts": attempts,
        "at": at,
        "event_ts": request.get("event_ts"),
    }
