"""The journey step: a pure function of (instance, input, profile, now) -> (instance, effects).

An instance is a small plain dict (msgpack-serialisable) that records where one profile
stands in one journey. The step never reads the clock and never performs I/O: it returns
effects (`Send`, `ScheduleTimer`, `StepEvent`) for the profile shard to execute.

Instance keys: id, j (journey id), v (version), n (current node), st (status), k (number of
transitions so far, part of message ids), t0 (entry time), due (pending timer or None),
msg (message awaited by an action node or None), ev (the event in scope for templates).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from itinerary.engine import effects as fx
from itinerary.engine.effects import Effect, ScheduleTimer, Send, StepEvent
from itinerary.engine.messages import EXPIRED, FAILED, SENT, THROTTLED

ENTRY: Final = "entry"
CONDITION: Final = "condition"
WAIT: Final = "wait"
WAIT_EVENT: Final = "wait_event"
ACTION: Final = "action"
END: Final = "end"
BLOCKING_KINDS: Final = frozenset({WAIT, WAIT_EVENT, ACTION})

RUNNING: Final = "running"
WAITING: Final = "waiting"  # on a timer or an event
AWAITING: Final = "awaiting"  # an action's outcome
ENDED: Final = "ended"

# A step that passes more nodes than this without blocking is a runaway; the compiler
# already refuses loops without a blocking node, this is the belt to those braces.
MAX_TRANSITIONS_PER_STEP: Final = 200

Predicate = Callable[[Mapping[str, Any]], Any]
Renderer = Callable[[Mapping[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class CompiledNode:
    """A node with its expressions and templates compiled, ready to run."""

    id: str
    kind: str
    next: str | None = None
    condition: Predicate | None = None
    branches: tuple[tuple[Predicate, str], ...] = ()
    otherwise: str | None = None
    seconds: float = 0.0  # wait duration, wait-for-event timeout or action timeout
    events: tuple[tuple[str, Predicate | None, str], ...] = ()
    on_timeout: str | None = None
    on_error: str | None = None
    channel: str | None = None
    render: Renderer | None = None


@dataclass(frozen=True, slots=True)
class CompiledJourney:
    """A validated journey version: nodes by id, its entry event and re-entrance rule."""

    id: str
    version: int
    name: str
    live: bool
    entry: CompiledNode
    nodes: dict[str, CompiledNode]
    reentrance_allowed: bool
    reentrance_wait: float
    entry_event: str = ""
    listens: frozenset[str] = field(default_factory=frozenset)  # events a waiting node takes
    # Top-level event keys the journey's nodes read; an instance keeps only these of the
    # event that moved it (None: keep the whole event).
    event_fields: frozenset[str] | None = None


def kept_event(journey: CompiledJourney, event: dict[str, Any]) -> dict[str, Any]:
    """The part of `event` an instance of `journey` needs to keep for its later nodes."""
    fields = journey.event_fields
    if fields is None:
        return event
    return {k: v for k, v in event.items() if k in fields}


class EventInput(NamedTuple):
    """An event, already matched to its definition `name`."""

    name: str
    event: dict[str, Any]


class TimerInput(NamedTuple):
    """A timer set by `node` for `due` has fired."""

    node: str
    due: float


class OutcomeInput(NamedTuple):
    """A channel's answer about a message (see itinerary.engine.messages)."""

    outcome: dict[str, Any]


Input = EventInput | TimerInput | OutcomeInput


def try_enter(
    journey: CompiledJourney,
    event: EventInput,
    profile: Mapping[str, Any],
    history: tuple[int, float | None],
    active: bool,
    instance_prefix: str,
    now: float,
) -> tuple[dict[str, Any] | None, list[Effect]]:
    """Decide whether `event` starts a new instance; `history` is (entries so far, last exit).

    Returns the new instance (None when the event is refused or the entry condition does not
    hold) and the effects of running it up to its first blocking node.
    """
    entry = journey.entry
    entries, last_exit = history
    instance_id = f"{instance_prefix}/{journey.id}/{entries + 1}"

    def discarded(reason: str) -> tuple[None, list[Effect]]:
        return None, [StepEvent(journey.id, journey.version, instance_id, entry.id, fx.DISCARDED, reason)]

    if not journey.live:
        return discarded("journey is not live")
    if active:
        return discarded("profile already in the journey")
    if entries and not journey.reentrance_allowed:
        return discarded("re-entrance not allowed")
    if last_exit is not None and now - last_exit < journey.reentrance_wait:
        return discarded("within the re-entrance wait period")
    scope = {"event": event.event, "profile": profile, "now": now}
    if entry.condition is not None and not entry.condition(scope):
        return None, []
    instance: dict[str, Any] = {
        "id": instance_id,
        "j": journey.id,
        "v": journey.version,
        "n": entry.id,
        "st": RUNNING,
        "k": 0,
        "t0": now,
        "due": None,
        "msg": None,
        "ev": kept_event(journey, event.event),
    }
    effects: list[Effect] = [StepEvent(journey.id, journey.version, instance_id, entry.id, fx.ENTERED)]
    assert entry.next is not None
    _goto(journey, instance, entry.next, effects)
    _run(journey, instance, profile, now, effects)
    return instance, effects


def step(
    journey: CompiledJourney,
    instance: dict[str, Any],
    inp: Input,
    profile: Mapping[str, Any],
    now: float,
) -> tuple[dict[str, Any], list[Effect]]:
    """Apply one input to a waiting instance; inputs it is not waiting for change nothing."""
    if instance["st"] == ENDED:
        return instance, []
    node = journey.nodes.get(instance["n"])
    if node is None:  # the version changed under it: end it loudly rather than guess
        out = dict(instance)
        effects: list[Effect] = []
        _exit(journey, out, f"node {instance['n']!r} no longer exists", effects)
        return out, effects
    if isinstance(inp, EventInput):
        return _on_event(journey, node, instance, inp, profile, now)
    if isinstance(inp, TimerInput):
        return _on_timer(journey, node, instance, inp, profile, now)
    if isinstance(inp, OutcomeInput):
        return _on_outcome(journey, node, instance, inp.outcome, profile, now)
    raise TypeError(f"unknown journey input {type(inp).__name__}")


def _on_event(
    journey: CompiledJourney,
    node: CompiledNode,
    instance: dict[str, Any],
    inp: EventInput,
    profile: Mapping[str, Any],
    now: float,
) -> tuple[dict[str, Any], list[Effect]]:
    if node.kind != WAIT_EVENT or instance["st"] != WAITING:
        return instance, []
    scope = {"event": inp.event, "profile": profile, "now": now}
    for name, condition, target in node.events:
        if name == inp.name and (condition is None or condition(scope)):
            out = dict(instance, ev=kept_event(journey, inp.event), due=None, st=RUNNING)
            effects: list[Effect] = []
            _goto(journey, out, target, effects)
            _run(journey, out, profile, now, effects)
            return out, effects
    return instance, []


def _on_timer(
    journey: CompiledJourney,
    node: CompiledNode,
    instance: dict[str, Any],
    inp: TimerInput,
    profile: Mapping[str, Any],
    now: float,
) -> tuple[dict[str, Any], list[Effect]]:
    if instance["n"] != inp.node or instance["due"] != inp.due:
        return instance, []  # stale: the instance moved on before the timer fired
    out = dict(instance, due=None, st=RUNNING)
    effects: list[Effect] = []
    if node.kind == WAIT:
        assert node.next is not None
        _goto(journey, out, node.next, effects)
    elif node.kind == WAIT_EVENT:
        effects.append(StepEvent(journey.id, journey.version, out["id"], node.id, fx.TIMEOUT))
        assert node.on_timeout is not None
        _goto(journey, out, node.on_timeout, effects)
    elif node.kind == ACTION:
        out["msg"] = None
        _fail(journey, out, node, "no outcome from the channel within the action timeout", effects)
    else:
        return instance, []
    _run(journey, out, profile, now, effects)
    return out, effects


def _on_outcome(
    journey: CompiledJourney,
    node: CompiledNode,
    instance: dict[str, Any],
    outcome: dict[str, Any],
    profile: Mapping[str, Any],
    now: float,
) -> tuple[dict[str, Any], list[Effect]]:
    if node.kind != ACTION or instance["st"] != AWAITING or instance["msg"] != outcome.get("id"):
        return instance, []
    kind = outcome.get("outcome")
    if kind == THROTTLED:
        return instance, []  # still queued at the channel; the final outcome will follow
    out = dict(instance, msg=None, due=None, st=RUNNING)
    effects: list[Effect] = []
    if kind == SENT:
        assert node.next is not None
        _goto(journey, out, node.next, effects)
    elif kind in (FAILED, EXPIRED):
        _fail(journey, out, node, f"{kind}: {outcome.get('reason') or 'no reason given'}", effects)
    else:
        raise ValueError(f"unknown outcome {kind!r}")
    _run(journey, out, profile, now, effects)
    return out, effects


def _goto(journey: CompiledJourney, instance: dict[str, Any], target: str, effects: list[Effect]) -> None:
    instance["n"] = target
    instance["k"] += 1
    effects.append(StepEvent(journey.id, journey.version, instance["id"], target, fx.NODE))


def _fail(
    journey: CompiledJourney, instance: dict[str, Any], node: CompiledNode, reason: str, effects: list[Effect]
) -> None:
    effects.append(StepEvent(journey.id, journey.version, instance["id"], node.id, fx.ERROR, reason))
    if node.on_error is not None:
        _goto(journey, instance, node.on_error, effects)
    else:
        _exit(journey, instance, reason, effects)


def _exit(journey: CompiledJourney, instance: dict[str, Any], reason: str | None, effects: list[Effect]) -> None:
    instance["st"] = ENDED
    instance["due"] = None
    instance["msg"] = None
    effects.append(StepEvent(journey.id, journey.version, instance["id"], instance["n"], fx.EXITED, reason))


def _run(
    journey: CompiledJourney, instance: dict[str, Any], profile: Mapping[str, Any], now: float, effects: list[Effect]
) -> None:
    """Advance through non-blocking nodes until one blocks or the journey ends."""
    for _ in range(MAX_TRANSITIONS_PER_STEP):
        if instance["st"] == ENDED:
            return
        node = journey.nodes[instance["n"]]
        kind = node.kind
        if kind == CONDITION:
            scope = {"event": instance["ev"], "profile": profile, "now": now}
            target = next((t for pred, t in node.branches if pred(scope)), node.otherwise)
            if target is None:
                _exit(journey, instance, "no branch matched", effects)
                return
            _goto(journey, instance, target, effects)
        elif kind in (WAIT, WAIT_EVENT):
            instance["st"] = WAITING
            instance["due"] = now + node.seconds
            effects.append(ScheduleTimer(instance["due"], journey.id, instance["id"], node.id))
            return
        elif kind == ACTION:
            if _send(journey, node, instance, profile, now, effects):
                return
        elif kind == END:
            _exit(journey, instance, None, effects)
            return
        else:
            raise ValueError(f"node {node.id!r} of unknown kind {kind!r}")
    _exit(journey, instance, "too many transitions without a wait", effects)


def _send(
    journey: CompiledJourney,
    node: CompiledNode,
    instance: dict[str, Any],
    profile: Mapping[str, Any],
    now: float,
    effects: list[Effect],
) -> bool:
    """Hand the message to its channel; False when it could not be rendered (error path taken)."""
    assert node.render is not None and node.channel is not None
    scope = {
        "event": instance["ev"],
        "profile": profile,
        "now": now,
        "journey": {
            "id": journey.id,
            "name": journey.name,
            "version": journey.version,
            "instance": instance["id"],
            "node": node.id,
        },
    }
    try:
        payload = node.render(scope)
    except Exception as exc:  # a template error must take the error path, not crash a shard
        _fail(journey, instance, node, f"cannot render the message: {exc}", effects)
        return False
    message_id = f"{instance['id']}/{node.id}/{instance['k']}"
    instance["st"] = AWAITING
    instance["msg"] = message_id
    instance["due"] = now + node.seconds
    effects.append(Send(journey.id, instance["id"], node.id, message_id, node.channel, payload, instance["due"]))
    effects.append(StepEvent(journey.id, journey.version, instance["id"], node.id, fx.ACTION))
    effects.append(ScheduleTimer(instance["due"], journey.id, instance["id"], node.id))
    return True
