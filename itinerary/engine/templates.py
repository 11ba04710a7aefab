"""Message templates: Jinja2 rendered in an immutable sandbox with `profile`, `event` and
`journey` in scope.

Templates are compiled once per journey version and rendered per message. The sandbox blocks
Python internals (underscore attributes, mutating methods, unbounded ranges); on top of it this
module removes the globals that hand out Python objects, looks up mapping keys before
attributes (so `profile.items` is the profile's `items`, not `dict.items`), refuses oversized
`*` and `**` results, renders null as an empty string and caps the output at 256 KiB. Every
failure, at compile or render time, is a TemplateError.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError, Undefined
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from itinerary.errors import TemplateError

MAX_OUTPUT_BYTES: Final = 256 * 1024
# A power whose result would exceed this many bits is refused before Python computes it.
_MAX_POWER_BITS: Final = 1 << 16
# Globals that hand out Python objects with reachable internals, and nothing a message needs.
_REMOVED_GLOBALS: Final = ("cycler", "joiner", "namespace", "lipsum")


class _OutputTooLarge(Exception):
    pass


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with key-first lookup on mappings and bounded `*` and `**`."""

    # Intercepted operators also stop Jinja folding them at compile time, so a template
    # such as {{ 'x' * 10**10 }} fails when rendered instead of while being compiled.
    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Journey data are JSON objects: a key named like a dict method must win, and the
        # sandboxed attribute lookup stays as the fallback (`profile.items()` still works).
        if isinstance(obj, Mapping):
            return self.getitem(obj, attribute)
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_OUTPUT_BYTES
                ):
                    raise SecurityError("repetition result too large")
        elif (
            operator == "**"
            and isinstance(left, int)
            and isinstance(right, int)
            and right > 0
            and left.bit_length() * right > _MAX_POWER_BITS
        ):
            raise SecurityError("power result too large")
        return super().call_binop(context, operator, left, right)


def _finalize(value: Any) -> Any:
    return "" if value is None else value  # JSON null renders as nothing, not "None"


def _default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """Like Jinja's `default`, but null counts as missing: JSON data say null for "unknown"."""
    if value is None or isinstance(value, Undefined) or (boolean and not value):
        return default_value
    return value


def _environment(html: bool) -> _Sandbox:
    env = _Sandbox(
        autoescape=html,
        undefined=ChainableUndefined,
        finalize=_finalize,
        keep_trailing_newline=True,  # message bodies are rendered exactly as written
        cache_size=0,
        auto_reload=False,
    )
    for name in _REMOVED_GLOBALS:
        env.globals.pop(name, None)
    env.filters["default"] = env.filters["d"] = _default
    return env


_TEXT: Final = _environment(html=False)
_HTML: Final = _environment(html=True)


class MessageTemplate:
    """A compiled message template; `render(scope)` returns the text or raises TemplateError."""

    __slots__ = ("_template", "html", "source")

    def __init__(self, source: str, template: Template, html: bool) -> None:
        self.source = source
        self.html = html
        self._template = template

    def render(self, scope: Mapping[str, Any]) -> str:
        """Render with `scope` (typically profile, event, journey); output is capped."""
        parts: list[str] = []
        size = 0
        try:
            # Streaming lets an oversized render stop early instead of filling memory first.
            for chunk in self._template.generate(scope):
                size += len(chunk)
                if size > MAX_OUTPUT_BYTES:
                    raise _OutputTooLarge
                parts.append(chunk)
        except _OutputTooLarge:
            raise self._too_large() from None
        except Exception as exc:  # SecurityError, UndefinedError, TypeError, RecursionError...
            reason = f"render failed: {_describe(exc)}"
            raise TemplateError(source=self.source, reason=reason) from exc
        text = "".join(parts)
        # Characters never outnumber UTF-8 bytes, so encode only when the answer is in doubt.
        in_doubt = size * 4 > MAX_OUTPUT_BYTES
        if in_doubt and len(text.encode("utf-8", "surrogatepass")) > MAX_OUTPUT_BYTES:
            raise self._too_large()
        return text

    def _too_large(self) -> TemplateError:
        reason = f"output larger than {MAX_OUTPUT_BYTES} bytes"
        return TemplateError(source=self.source, reason=reason)

    def __repr__(self) -> str:
        return f"MessageTemplate({self.source[:40]!r}{'...' if len(self.source) > 40 else ''})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Jinja templates do not pickle; the source is the canonical form, so recompile.
        return _recompile, (self.source, self.html)


def _recompile(source: str, html: bool) -> MessageTemplate:
    return compile_template(source, html=html)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def compile_template(source: str, *, html: bool = False) -> MessageTemplate:
    """Compile `source` in the sandbox (autoescaping when `html`); raises TemplateError."""
    if not isinstance(source, str):
        raise TemplateError(source=repr(source), reason="a template is a string")
    env = _HTML if html else _TEXT
    try:
        template = env.from_string(source)
    except TemplateSyntaxError as exc:
        reason = f"line {exc.lineno}: {exc.message or exc}"
        raise TemplateError(source=source, reason=reason) from exc
    except Exception as exc:  # e.g. RecursionError on absurdly nested blocks
        raise TemplateError(source=source, reason=f"cannot compile: {_describe(exc)}") from exc
    return MessageTemplate(source, template, html)


def template_event_fields(source: str) -> frozenset[str] | None:
    """The top-level keys of `event` a template reads (`event.x...`, `event['x']...`), or
    None if it may read all of it (`event` passed whole, or indexed by a computed key)."""
    from jinja2 import nodes

    tree = _TEXT.parse(source)
    uses = sum(1 for n in tree.find_all(nodes.Name) if n.name == "event")
    keys: set[str] = set()
    reached = 0
    for access in tree.find_all(nodes.Getattr):
        assert isinstance(access, nodes.Getattr)
        if isinstance(access.node, nodes.Name) and access.node.name == "event":
            reached += 1
            keys.add(access.attr)
    for item in tree.find_all(nodes.Getitem):
        assert isinstance(item, nodes.Getitem)
        if isinstance(item.node, nodes.Name) and item.node.name == "event":
            reached += 1
            if not (isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str)):
                return None
            keys.add(item.arg.value)
    return frozenset(keys) if reached == uses else None
