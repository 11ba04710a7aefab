"""Turns journey definitions (config models) into compiled journeys, validating the graph.

Checks at load, so that nothing fails at 3 a.m.: exactly one entry node, no edge to a
missing node, every node reachable from the entry, no loop that never blocks, known events
and channels, a message shape that fits the channel, and every expression and template
compiled (errors carry the position or line).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from itinerary.config.journeys import (
    ActionNode,
    ConditionNode,
    EndNode,
    EntryNode,
    JourneyDefinition,
    JourneyStatus,
    WaitEventNode,
    WaitNode,
)
from itinerary.engine import journey as jr
from itinerary.engine.expressions import compile_expression, compile_mapping, event_fields, mapping_event_fields
from itinerary.engine.messages import OUTCOMES
from itinerary.engine.templates import compile_template, template_event_fields
from itinerary.errors import ExpressionError, JourneyDefinitionError, TemplateError

# Outcomes of messages come back to the profile as events a journey can wait for.
SYSTEM_EVENTS = frozenset(f"message.{o}" for o in OUTCOMES)


class ChannelInfo(NamedTuple):
    """What the compiler needs to know about a channel."""

    kind: str  # "email" or "webhook"
    outcome_timeout: float  # default for how long an action waits for its outcome


def compile_journey(
    definition: JourneyDefinition,
    *,
    events: Iterable[str],
    channels: Mapping[str, ChannelInfo],
) -> jr.CompiledJourney:
    """Validate `definition` and compile it; raises JourneyDefinitionError naming the path."""
    jid = definition.id
    known_events = set(events) | SYSTEM_EVENTS

    def fail(path: str, reason: str) -> JourneyDefinitionError:
        return JourneyDefinitionError(journey=jid, path=path, reason=reason)

    def expr(path: str, source: str) -> Callable[[Mapping[str, Any]], Any]:
        try:
            return compile_expression(source).evaluate
        except ExpressionError as exc:
            raise fail(path, f"{exc.reason} at position {exc.position} in {source!r}") from None

    def event_name(path: str, name: str) -> str:
        if name not in known_events:
            raise fail(path, f"unknown event {name!r} (known: {', '.join(sorted(known_events))})")
        return name

    nodes = definition.nodes
    entries = [nid for nid, n in nodes.items() if isinstance(n, EntryNode)]
    if len(entries) != 1:
        raise fail("nodes", f"a journey has exactly one entry node, found {len(entries)}")

    compiled: dict[str, jr.CompiledNode] = {}
    edges: dict[str, list[tuple[str, str]]] = {}
    for nid, node in nodes.items():
        base = f"nodes.{nid}"
        out: list[tuple[str, str]] = []
        if isinstance(node, EntryNode):
            event_name(f"{base}.event", node.event)
            out.append((f"{base}.next", node.next))
            compiled[nid] = jr.CompiledNode(
                nid,
                jr.ENTRY,
                next=node.next,
                condition=expr(f"{base}.condition", node.condition) if node.condition else None,
            )
        elif isinstance(node, ConditionNode):
            branches = []
            for i, branch in enumerate(node.branches):
                branches.append((expr(f"{base}.branches[{i}].when", branch.when), branch.next))
                out.append((f"{base}.branches[{i}].next", branch.next))
            if node.else_ is not None:
                out.append((f"{base}.else", node.else_))
            compiled[nid] = jr.CompiledNode(nid, jr.CONDITION, branches=tuple(branches), otherwise=node.else_)
        elif isinstance(node, WaitNode):
            out.append((f"{base}.next", node.next))
            compiled[nid] = jr.CompiledNode(nid, jr.WAIT, next=node.next, seconds=node.duration.total_seconds())
        elif isinstance(node, WaitEventNode):
            listened = []
            for i, branch in enumerate(node.events):
                path = f"{base}.events[{i}]"
                name = event_name(f"{path}.event", branch.event)
                cond = expr(f"{path}.condition", branch.condition) if branch.condition else None
                listened.append((name, cond, branch.next))
                out.append((f"{path}.next", branch.next))
            out.append((f"{base}.on_timeout", node.on_timeout))
            compiled[nid] = jr.CompiledNode(
                nid,
                jr.WAIT_EVENT,
                events=tuple(listened),
                on_timeout=node.on_timeout,
                seconds=node.timeout.total_seconds(),
            )
        elif isinstance(node, ActionNode):
            compiled[nid] = _compile_action(nid, node, channels, fail, expr)
            out.append((f"{base}.next", node.next))
            if node.on_error is not None:
                out.append((f"{base}.on_error", node.on_error))
        elif isinstance(node, EndNode):
            compiled[nid] = jr.CompiledNode(nid, jr.END)
        else:  # pragma: no cover - the config union is closed
            raise fail(base, f"unknown node type {type(node).__name__}")
        for path, target in out:
            if target not in nodes:
                raise fail(path, f"edge to unknown node {target!r}")
        edges[nid] = out

    entry = compiled[entries[0]]
    _check_reachable(entry.id, edges, nodes, fail)
    kept = _event_fields_read(nodes)
    _check_loops_block(edges, compiled, fail)
    entry_node = nodes[entry.id]
    assert isinstance(entry_node, EntryNode)
    listens = frozenset(name for n in compiled.values() for name, _, _ in n.events)
    return jr.CompiledJourney(
        id=jid,
        version=definition.version,
        name=definition.name or jid,
        live=definition.status == JourneyStatus.LIVE,
        entry=entry,
        nodes=compiled,
        reentrance_allowed=definition.reentrance.allowed,
        reentrance_wait=definition.reentrance.wait.total_seconds(),
        entry_event=entry_node.event,
        listens=listens,
        event_fields=kept,
    )


def _event_fields_read(nodes: Mapping[str, Any]) -> frozenset[str] | None:
    """The top-level event keys any node of the journey reads (None: the whole event).

    An instance keeps the event that moved it last for the nodes after it; keeping only
    these keys makes a profile several times smaller (an XDM event is ~1 KB, the fields a
    journey reads are a few). Sources compiled without error above, so parsing cannot fail.
    """
    keys: set[str] = set()
    for node in nodes.values():
        found: list[frozenset[str] | None] = []
        if isinstance(node, EntryNode) and node.condition:
            found.append(event_fields(node.condition))
        elif isinstance(node, ConditionNode):
            found.extend(event_fields(b.when) for b in node.branches)
        elif isinstance(node, WaitEventNode):
            found.extend(event_fields(b.condition) for b in node.events if b.condition)
        elif isinstance(node, ActionNode):
            if node.message is not None:
                message = node.message
                found.append(event_fields(message.to))
                found.extend(template_event_fields(t) for t in (message.subject, message.text, message.html) if t)
            if node.payload is not None:
                found.append(mapping_event_fields(node.payload))
        for item in found:
            if item is None:
                return None
            keys |= item
    return frozenset(keys)


def _compile_action(
    nid: str,
    node: ActionNode,
    channels: Mapping[str, ChannelInfo],
    fail: Callable[[str, str], JourneyDefinitionError],
    expr: Callable[[str, str], Callable[[Mapping[str, Any]], Any]],
) -> jr.CompiledNode:
    base = f"nodes.{nid}"
    info = channels.get(node.channel)
    if info is None:
        raise fail(f"{base}.channel", f"unknown channel {node.channel!r} (known: {', '.join(sorted(channels))})")
    render: jr.Renderer
    if info.kind == "email":
        if node.message is None or node.payload is not None:
            raise fail(base, f"channel {node.channel!r} is email: give `message` (to, subject, text)")
        message = node.message
        to = expr(f"{base}.message.to", message.to)
        try:
            subject = compile_template(message.subject)
            text = compile_template(message.text)
            html = compile_template(message.html, html=True) if message.html else None
        except TemplateError as exc:
            raise fail(f"{base}.message", exc.reason) from None

        def render(scope: Mapping[str, Any]) -> dict[str, Any]:
            recipient = to(scope)
            if not recipient or not isinstance(recipient, str):
                raise ValueError("no recipient address")
            return {
                "to": recipient,
                "subject": subject.render(scope),
                "text": text.render(scope),
                "html": html.render(scope) if html is not None else None,
            }
    else:
        if node.payload is None or node.message is not None:
            raise fail(base, f"channel {node.channel!r} is a custom action: give `payload` (a mapping)")
        try:
            mapping = compile_mapping(node.payload)
        except ExpressionError as exc:
            raise fail(f"{base}.payload", f"{exc.reason} at position {exc.position}") from None

        def render(scope: Mapping[str, Any]) -> dict[str, Any]:
            value = mapping.evaluate(scope)
            return value if isinstance(value, dict) else {"value": value}

    seconds = node.timeout.total_seconds() if node.timeout is not None else info.outcome_timeout
    return jr.CompiledNode(
        nid, jr.ACTION, next=node.next, on_error=node.on_error, channel=node.channel, render=render, seconds=seconds
    )


def _check_reachable(
    entry: str,
    edges: Mapping[str, list[tuple[str, str]]],
    nodes: Mapping[str, Any],
    fail: Callable[[str, str], JourneyDefinitionError],
) -> None:
    seen = {entry}
    todo = [entry]
    while todo:
        for _, target in edges[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    unreachable = [nid for nid in nodes if nid not in seen]
    if unreachable:
        raise fail(f"nodes.{unreachable[0]}", "not reachable from the entry node")


def _check_loops_block(
    edges: Mapping[str, list[tuple[str, str]]],
    compiled: Mapping[str, jr.CompiledNode],
    fail: Callable[[str, str], JourneyDefinitionError],
) -> None:
    """A cycle made only of condition nodes would spin forever: refuse it."""
    instant = {nid for nid, n in compiled.items() if n.kind == jr.CONDITION}
    state: dict[str, int] = {}

    def visit(nid: str, path: list[str]) -> None:
        state[nid] = 1
        for _, target in edges[nid]:
            if target not in instant:
                continue
            if state.get(target) == 1:
                raise fail(f"nodes.{target}", "loop without a wait or action: " + " -> ".join([*path, target]))
            if target not in state:
                visit(target, [*path, target])
        state[nid] = 2

    for nid in instant:
        if nid not in state:
            visit(nid, [nid])
