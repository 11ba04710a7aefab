"""Journey definitions as written in YAML: nodes keyed by id, edges by node id."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator

from itinerary.config.runtime import Frozen

MAX_ACTIVITIES = 50


class JourneyStatus(StrEnum):
    """Lifecycle of a journey version; a live journey is never edited in place."""

    DRAFT = "draft"
    LIVE = "live"
    CLOSED = "closed"  # no new entries; running instances finish
    STOPPED = "stopped"  # permanent; running instances are ended


class Reentrance(Frozen):
    """Whether a profile may enter again after leaving, and how long it must wait."""

    allowed: bool = False
    wait: timedelta = timedelta(minutes=5)


class EntryNode(Frozen):
    """Where a journey starts: an event, optionally with a condition."""

    type: Literal["entry"]
    event: str
    condition: str | None = None
    next: str


class Branch(Frozen):
    """One branch of a condition: the first whose `when` holds is taken."""

    when: str
    next: str


class ConditionNode(Frozen):
    """Ordered branches; the first match wins; `else` is taken when none match."""

    type: Literal["condition"]
    branches: list[Branch] = Field(min_length=1)
    else_: str | None = Field(None, alias="else")


def _within_90_days(value: timedelta) -> timedelta:
    if value <= timedelta(0) or value > timedelta(days=90):
        raise ValueError("must be more than 0 s and at most 90 days")
    return value


# Waits and timeouts: ISO-8601 durations, bounded like the reference product's (90 days).
JourneyDuration = Annotated[timedelta, AfterValidator(_within_90_days)]


class WaitNode(Frozen):
    """Pause for an ISO-8601 duration."""

    type: Literal["wait"]
    duration: JourneyDuration
    next: str


class EventBranch(Frozen):
    """An event a wait-for-event node listens for, and where it leads."""

    event: str
    condition: str | None = None
    next: str


class WaitEventNode(Frozen):
    """Wait for one of several events, or take the timeout branch."""

    type: Literal["wait_event"]
    events: list[EventBranch] = Field(min_length=1)
    timeout: JourneyDuration
    on_timeout: str


class EmailMessage(Frozen):
    """An email: `to` is an expression, the rest are templates."""

    to: str = "profile.email"
    subject: str
    text: str
    html: str | None = None


class ActionNode(Frozen):
    """Send a message on a channel (email) or call a custom action (webhook)."""

    type: Literal["action"]
    channel: str
    message: EmailMessage | None = None
    payload: dict[str, Any] | None = None
    next: str
    on_error: str | None = None
    timeout: timedelta | None = Field(None, description="how long to wait for the outcome")


class EndNode(Frozen):
    """Leave the journey."""

    type: Literal["end"]


Node = Annotated[
    EntryNode | ConditionNode | WaitNode | WaitEventNode | ActionNode | EndNode,
    Field(discriminator="type"),
]


class JourneyDefinition(Frozen):
    """A journey version: its entry, its nodes and its re-entrance rule."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    name: str = ""
    version: int = Field(1, ge=1)
    status: JourneyStatus = JourneyStatus.LIVE
    reentrance: Reentrance = Reentrance()
    nodes: dict[str, Node]

    @field_validator("nodes")
    @classmethod
    def _size(cls, nodes: dict[str, Any]) -> dict[str, Any]:
        if len(nodes) > MAX_ACTIVITIES:
            raise ValueError(f"{len(nodes)} nodes, over the limit of {MAX_ACTIVITIES}")
        return nodes
