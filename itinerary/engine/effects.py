"""Effects: what the pure journey logic asks its runtime (the profile shard) to do.

They are data, not calls, so the journey step stays a pure function and tests can assert
on exactly what would happen.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

# Step event kinds, emitted for every node a profile passes through (journey reports).
ENTERED: Final = "entered"  # the profile entered the journey
NODE: Final = "node"  # the profile reached a node
ACTION: Final = "action"  # a message was handed to a channel
TIMEOUT: Final = "timeout"  # a wait-for-event or an action timed out
ERROR: Final = "error"  # an action failed or an expression could not be rendered
EXITED: Final = "exited"  # the profile left the journey
DISCARDED: Final = "discarded"  # an entry event was refused (re-entrance, not live, ...)
STEP_KINDS: Final = (ENTERED, NODE, ACTION, TIMEOUT, ERROR, EXITED, DISCARDED)


class Send(NamedTuple):
    """Hand a rendered message to a channel gateway."""

    journey: str
    instance: str
    node: str
    message_id: str
    channel: str
    payload: dict[str, Any]
    deadline: float | None = None  # when the action stops waiting for the outcome


class ScheduleTimer(NamedTuple):
    """Wake this instance at `due` (epoch seconds) unless it has moved on by then."""

    due: float
    journey: str
    instance: str
    node: str


class StepEvent(NamedTuple):
    """One line of a journey's report: which node, what happened, and why."""

    journey: str
    version: int
    instance: str
    node: str
    kind: str
    reason: str | None = None


Effect = Send | ScheduleTimer | StepEvent
