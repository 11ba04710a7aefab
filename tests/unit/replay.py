"""Replays a recorded input stream through the pure engine and returns its step events.

A stream is JSON: the journeys it uses (names of definitions in journey_helpers), the
profile key, and inputs at relative times: events, outcomes for the last message sent by
a node, or a bare time to let timers fire. Timers due before an input fire first, in due
order, exactly as a shard's timer queue would fire them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from itinerary.engine.effects import ScheduleTimer, Send, StepEvent
from itinerary.engine.messages import outcome_for
from itinerary.engine.timers import TimerQueue
from tests.unit import journey_helpers

T0 = 1_800_000_000.0


def replay(stream: dict[str, Any]) -> list[list[Any]]:
    journeys = [getattr(journey_helpers, name) for name in stream["journeys"]]
    engine = journey_helpers.catalog(*journeys).engine()
    key = stream["profile"]
    profile = engine.new_profile(key, T0)
    timers: TimerQueue[tuple[str, str, str]] = TimerQueue()
    last_send: dict[str, Send] = {}
    steps: list[list[Any]] = []

    def execute(effects: list[Any] | None, at: float) -> None:
        for effect in effects or []:
            if isinstance(effect, StepEvent):
                steps.append([round(at - T0, 3), effect.journey, effect.node, effect.kind, effect.reason])
            elif isinstance(effect, ScheduleTimer):
                timers.push(effect.due, (effect.journey, effect.instance, effect.node))
            elif isinstance(effect, Send):
                last_send[effect.node] = effect

    for item in stream["inputs"]:
        at = T0 + item["at"]
        for due, (journey, instance, node) in timers.pop_due(at):
            execute(engine.apply_timer(profile, journey, instance, node, due, due), due)
        if "event" in item:
            body = journey_helpers.event(item["event"], item["n"], **item.get("fields", {}))
            execute(engine.apply_event(profile, item["event"], body, at), at)
        elif "outcome" in item:
            send = last_send[item["node"]]
            request = {
                "id": send.message_id,
                "channel": send.channel,
                "shard": 0,
                "profile": key,
                "journey": send.journey,
                "instance": send.instance,
                "node": send.node,
            }
            outcome = outcome_for(request, item["outcome"], at=at, reason=item.get("reason"))
            execute(engine.apply_outcome(profile, outcome, at), at)
    return steps


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))
