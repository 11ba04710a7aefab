"""The safe expression language of journey conditions, event rules and payload mappings.

Source text is tokenized and parsed once (precedence climbing) into a tree of Python
closures, so evaluating is a few nested calls: no parsing, no string dispatch, and no
eval/exec/compile anywhere. Syntax is strict and data is forgiving: every syntax error is an
ExpressionError with the 0-based position of the offending token, while at run time a missing
path, a type mismatch or a division by zero gives None (or False for a comparison).
Only dict keys and list indices are ever traversed, never Python attributes.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any, Final, NamedTuple

from itinerary.errors import ExpressionError

Evaluator = Callable[[Mapping[str, Any]], Any]

MAX_SOURCE_LENGTH: Final = 4096
# Parentheses, brackets, calls, list literals and unary operators each add a level. The
# limit bounds the parser's recursion and the depth of the closure tree evaluated per event.
MAX_NESTING: Final = 64


# ---------------------------------------------------------------------------- values


def _is_num(v: Any) -> bool:
    """Numbers are int and float, never bool (JSON true is not 1)."""
    t = type(v)
    return t is int or t is float or (t is not bool and isinstance(v, int | float))


def _truthy(v: Any) -> bool:
    if v is None or v is False:
        return False
    try:
        return bool(v)
    except Exception:  # a foreign object in the scope must not break evaluation
        return False


def _get(container: Any, key: Any) -> Any:
    """One path step: a key of a mapping or an index of a list; anything else is None."""
    t = type(container)
    if t is dict:
        return container.get(key)
    if t is list or t is tuple:
        if type(key) is int:
            try:
                return container[key]
            except IndexError:
                return None
        return None
    if container is None or isinstance(container, str | bytes):
        return None
    try:
        if isinstance(container, Mapping):
            return container.get(key)
        if isinstance(container, list | tuple) and type(key) is int:
            return container[key]
    except Exception:
        return None
    return None


def _get_dynamic(container: Any, key: Any) -> Any:
    # Computed keys may be anything; only strings and (non-bool) ints address data.
    t = type(key)
    return _get(container, key) if t is str or t is int else None


def _eq(a: Any, b: Any) -> bool:
    ta, tb = type(a), type(b)
    if ta is tb and (ta is str or ta is int or ta is float or ta is bool):
        return bool(a == b)
    if a is None or b is None:
        return a is b
    if ta is bool or tb is bool:
        return False
    if _is_num(a) and _is_num(b):
        return bool(a == b)
    try:  # containers compare element-wise with the same rules; a cycle or depth gives False
        if isinstance(a, list | tuple) and isinstance(b, list | tuple):
            return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b, strict=True))
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            return len(a) == len(b) and all(k in b and _eq(v, b[k]) for k, v in a.items())
        return bool(a == b)
    except Exception:
        return False


def _ne(a: Any, b: Any) -> bool:
    return not _eq(a, b)


def _orderable(a: Any, b: Any) -> bool:
    return (_is_num(a) and _is_num(b)) or (isinstance(a, str) and isinstance(b, str))


def _lt(a: Any, b: Any) -> bool:
    return _orderable(a, b) and bool(a < b)


def _le(a: Any, b: Any) -> bool:
    return _orderable(a, b) and bool(a <= b)


def _gt(a: Any, b: Any) -> bool:
    return _orderable(a, b) and bool(a > b)


def _ge(a: Any, b: Any) -> bool:
    return _orderable(a, b) and bool(a >= b)


def _in(x: Any, container: Any) -> bool:
    if isinstance(container, str):
        return isinstance(x, str) and x in container
    if isinstance(container, list | tuple):
        return any(_eq(x, item) for item in container)
    if isinstance(container, Mapping):
        try:
            return isinstance(x, str | int) and not isinstance(x, bool) and x in container
        except Exception:
            return False
    return False


def _not_in(x: Any, container: Any) -> bool:
    return not _in(x, container)


def _add(a: Any, b: Any) -> Any:
    if _is_num(a) and _is_num(b):
        try:
            return a + b
        except ArithmeticError:  # e.g. an int too large to convert to float
            return None
    if isinstance(a, str) and isinstance(b, str):
        return a + b
    return None


def _numeric(op: Callable[[Any, Any], Any], zero_guard: bool) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if not (_is_num(a) and _is_num(b)) or (zero_guard and b == 0):
            return None
        try:
            return op(a, b)
        except ArithmeticError:
            return None

    return apply


_ARITHMETIC: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+": _add,
    "-": _numeric(operator.sub, False),
    "*": _numeric(operator.mul, False),
    "/": _numeric(operator.truediv, True),
    "%": _numeric(operator.mod, True),
}
_COMPARISONS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "==": _eq,
    "!=": _ne,
    "<": _lt,
    "<=": _le,
    ">": _gt,
    ">=": _ge,
    "in": _in,
    "not in": _not_in,
}
_FAST_ORDER: Final = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


# ---------------------------------------------------------------------------- functions


def _text_fn(method: Callable[[str], str]) -> Callable[[Any], Any]:
    return lambda v: method(v) if isinstance(v, str) else None


def _length(v: Any) -> Any:
    return len(v) if isinstance(v, str | list | tuple | Mapping) else None


def _starts_with(s: Any, p: Any) -> bool:
    return isinstance(s, str) and isinstance(p, str) and s.startswith(p)


def _ends_with(s: Any, p: Any) -> bool:
    return isinstance(s, str) and isinstance(p, str) and s.endswith(p)


def _string(v: Any) -> Any:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if _is_num(v):
        return str(v)
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"), default=str)


def _concat(*args: Any) -> str:
    return "".join("" if a is None else _string(a) for a in args)


def _extreme(pick: Callable[[list[Any]], Any]) -> Callable[..., Any]:
    # SQL-like: nulls are ignored; one list argument means its elements; mixed types give None.
    def apply(*args: Any) -> Any:
        values = args[0] if len(args) == 1 and isinstance(args[0], list | tuple) else args
        kept = [v for v in values if v is not None]
        if kept and (all(_is_num(v) for v in kept) or all(isinstance(v, str) for v in kept)):
            return pick(kept)
        return None

    return apply


_DECIMAL = Context(prec=400)  # enough digits for any float, so quantize never runs out


def _round(x: Any, ndigits: Any = 0) -> Any:
    """Half away from zero (2.5 -> 3, 2.675 -> 2.68), unlike Python's banker's rounding."""
    if not _is_num(x) or type(ndigits) is not int:
        return None
    if isinstance(x, int) and ndigits >= 0:
        return x
    exact = Decimal(x) if isinstance(x, int) else Decimal(repr(x))
    q = exact.quantize(Decimal(1).scaleb(-ndigits), rounding=ROUND_HALF_UP, context=_DECIMAL)
    return int(q) if ndigits <= 0 else float(q)


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _number(v: Any) -> Any:
    if _is_num(v):
        return v
    if not isinstance(v, str):
        return None
    text = v.strip()
    if _INTEGER.fullmatch(text):
        return int(text)
    try:
        f = float(text)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def _timestamp(v: Any) -> Any:
    """ISO-8601 date-time -> epoch seconds; naive times are UTC; numbers pass through."""
    if _is_num(v):
        return float(v)
    if not isinstance(v, str):
        return None
    text = v.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


_N = r"([0-9]+(?:[.,][0-9]+)?)"
# Weeks, days, hours, minutes, seconds. Years and months have no fixed length: not accepted.
_DURATION = re.compile(rf"P(?!$)(?:{_N}W)?(?:{_N}D)?(?:T(?=[0-9])(?:{_N}H)?(?:{_N}M)?(?:{_N}S)?)?")
_DURATION_UNITS: Final = (604800.0, 86400.0, 3600.0, 60.0, 1.0)


def _duration(v: Any) -> Any:
    """ISO-8601 duration ('PT30M', 'P1DT2H') -> seconds; numbers pass through as seconds."""
    if _is_num(v):
        return float(v)
    if not isinstance(v, str):
        return None
    m = _DURATION.fullmatch(v.strip().upper())
    if m is None:
        return None
    return sum(
        float(part.replace(",", ".")) * unit
        for part, unit in zip(m.groups(), _DURATION_UNITS, strict=True)
        if part is not None
    )


class _Function(NamedTuple):
    impl: Callable[..., Any]
    min_args: int
    max_args: int | None  # None: variadic


_FUNCTIONS: Final[dict[str, _Function]] = {
    "exists": _Function(lambda v: v is not None, 1, 1),
    "lower": _Function(_text_fn(str.lower), 1, 1),
    "upper": _Function(_text_fn(str.upper), 1, 1),
    "trim": _Function(_text_fn(str.strip), 1, 1),
    "length": _Function(_length, 1, 1),
    "len": _Function(_length, 1, 1),
    "contains": _Function(lambda c, x: _in(x, c), 2, 2),
    "startsWith": _Function(_starts_with, 2, 2),
    "endsWith": _Function(_ends_with, 2, 2),
    "concat": _Function(_concat, 1, None),
    "coalesce": _Function(lambda *a: next((v for v in a if v is not None), None), 1, None),
    "abs": _Function(lambda v: abs(v) if _is_num(v) else None, 1, 1),
    "min": _Function(_extreme(min), 1, None),
    "max": _Function(_extreme(max), 1, None),
    "round": _Function(_round, 1, 2),
    "number": _Function(_number, 1, 1),
    "string": _Function(_string, 1, 1),
    "timestamp": _Function(_timestamp, 1, 1),
    "duration": _Function(_duration, 1, 1),
}
FUNCTION_NAMES: Final = frozenset(_FUNCTIONS)


def _apply(impl: Callable[..., Any], *args: Any) -> Any:
    try:
        return impl(*args)
    except Exception:  # the function layer is the one place allowed to swallow errors
        return None


# ---------------------------------------------------------------------------- closure tree


class _Node:
    """A compiled sub-expression; constants carry their value so parents can fold them."""

    __slots__ = ("boolean", "const", "fn", "value")

    def __init__(self, fn: Evaluator, const: bool = False, value: Any = None, boolean: bool = False) -> None:
        self.fn = fn
        self.const = const
        self.value = value
        self.boolean = boolean  # always returns a bool, so `and`/`or` can skip _truthy


def _boolean(fn: Evaluator) -> _Node:
    return _Node(fn, boolean=True)


def _fresh(v: Any) -> Any:
    return [_fresh(x) for x in v] if isinstance(v, list) else v


def _const(value: Any) -> _Node:
    if isinstance(value, list):  # a caller may mutate a returned list: hand out copies
        return _Node(lambda s: _fresh(value), True, value)
    return _Node(lambda s: value, True, value)


def _list(items: list[_Node]) -> _Node:
    if all(i.const for i in items):
        return _const([i.value for i in items])
    fns = tuple(i.fn for i in items)
    return _Node(lambda s: [f(s) for f in fns])


def _not(operand: _Node) -> _Node:
    if operand.const:
        return _const(not _truthy(operand.value))
    f = operand.fn
    if operand.boolean:
        return _boolean(lambda s: not f(s))
    return _boolean(lambda s: not _truthy(f(s)))


def _negate(operand: _Node) -> _Node:
    def neg(v: Any) -> Any:
        return -v if _is_num(v) else None

    if operand.const:
        return _const(neg(operand.value))
    f = operand.fn
    return _Node(lambda s: neg(f(s)))


def _logic(is_and: bool, operands: list[_Node]) -> _Node:
    if all(o.const for o in operands):
        truths = (_truthy(o.value) for o in operands)
        return _const(all(truths) if is_and else any(truths))
    fns = tuple(o.fn for o in operands)
    if len(fns) == 2 and all(o.boolean for o in operands):  # e.g. two comparisons
        a, b = fns
        return _boolean((lambda s: a(s) and b(s)) if is_and else (lambda s: a(s) or b(s)))
    if is_and:
        return _boolean(lambda s: all(_truthy(f(s)) for f in fns))
    return _boolean(lambda s: any(_truthy(f(s)) for f in fns))


def _arithmetic(ops: list[str], operands: list[_Node]) -> _Node:
    # A run of same-precedence operators becomes one loop, so `1+1+...+1` is not a deep tree.
    pairs = tuple((_ARITHMETIC[op], node) for op, node in zip(ops, operands[1:], strict=True))
    if all(o.const for o in operands):
        value = operands[0].value
        for apply, node in pairs:
            value = apply(value, node.value)
        return _const(value)
    first = operands[0].fn
    steps = tuple((apply, node.fn) for apply, node in pairs)
    if len(steps) == 1:
        ((apply, second),) = steps
        return _Node(lambda s: apply(first(s), second(s)))

    def run(s: Mapping[str, Any]) -> Any:
        v = first(s)
        for apply, f in steps:
            v = apply(v, f(s))
            if v is None:
                return None
        return v

    return _Node(run)


def _compare(op: str, left: _Node, right: _Node) -> _Node:
    compare = _COMPARISONS[op]
    if left.const and right.const:
        return _const(compare(left.value, right.value))
    a = left.fn
    if not right.const:
        b = right.fn
        return _boolean(lambda s: compare(a(s), b(s)))
    c = right.value
    # Specialise the common "path OP literal" shapes; the generic function is the fallback.
    if c is None and op in ("==", "!="):
        return _boolean((lambda s: a(s) is None) if op == "==" else (lambda s: a(s) is not None))
    if type(c) is str and op == "==":
        return _boolean(lambda s: (v == c) if type(v := a(s)) is str else _eq(v, c))
    if _is_num(c) and op in _FAST_ORDER:
        fast = _FAST_ORDER[op]
        return _boolean(lambda s: fast(v, c) if (t := type(v := a(s))) is int or t is float else compare(v, c))
    if op in ("in", "not in") and isinstance(c, list) and c and all(type(x) is str for x in c):
        members, wanted = frozenset(c), op == "in"
        return _boolean(lambda s: ((v in members) if type(v := a(s)) is str else _in(v, c)) is wanted)
    return _boolean(lambda s: compare(a(s), c))


def _path(base: _Node | None, root: str, steps: list[str | int | _Node]) -> _Node:
    """`base` then `steps`; with no base the path starts at scope[root]."""
    if base is not None and not steps:
        return base
    start: Evaluator = base.fn if base is not None else (lambda s: s.get(root))
    if not steps:
        return _Node(start)
    dynamic = tuple(k.fn if isinstance(k, _Node) else None for k in steps)
    if any(dynamic):
        parts = tuple(zip(steps, dynamic, strict=True))

        def walk_dynamic(s: Mapping[str, Any]) -> Any:
            v = start(s)
            for k, f in parts:
                if v is None:
                    return None
                v = _get(v, k) if f is None else _get_dynamic(v, f(s))
            return v

        return _Node(walk_dynamic)
    keys = tuple(steps)

    def walk(v: Any) -> Any:
        for k in keys:
            if v is None:
                return None
            v = _get(v, k)
        return v

    if base is not None and base.const:
        return _const(walk(base.value))
    if base is None and len(keys) == 1 and type(keys[0]) is str:
        k0 = keys[0]  # the hot path: `event.eventType`
        return _Node(lambda s: v.get(k0) if type(v := s.get(root)) is dict else _get(v, k0))
    return _Node(lambda s: walk(start(s)))


def _call(fn: _Function, args: list[_Node]) -> _Node:
    impl = fn.impl
    if all(a.const for a in args):  # every function is pure: fold at compile time
        return _const(_apply(impl, *(a.value for a in args)))
    fns = tuple(a.fn for a in args)
    if impl is _FUNCTIONS["coalesce"].impl:  # lazy: stop at the first non-null argument
        return _Node(lambda s: next((v for f in fns if (v := f(s)) is not None), None))
    if len(fns) == 1:
        (f0,) = fns
        return _Node(lambda s: _apply(impl, f0(s)))
    return _Node(lambda s: _apply(impl, *(f(s) for f in fns)))


# ---------------------------------------------------------------------------- parsing


class _Token(NamedTuple):
    kind: str  # "num", "str", "name", "op" or "end"
    text: str  # as written, for messages
    pos: int
    value: Any = None


_TOKEN = re.compile(
    r"(?P<ws>\s+)|(?P<num>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||[-<>+*/%()\[\],.!])|(?P<quote>['\"])"
)
_ESCAPES: Final = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "0": "\0",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "/": "/",
}
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_HINTS: Final = {"=": " (use '==')", "&": " (use '&&' or 'and')", "|": " (use '||' or 'or')"}
_LITERALS: Final = {"true": True, "false": False, "null": None}
_KEYWORDS: Final = frozenset({"and", "or", "not", "in"})
# Binary operators by precedence; `not` (3) is prefix, unary minus and postfix bind tighter.
_BINARY: Final = {
    "or": 1,
    "||": 1,
    "and": 2,
    "&&": 2,
    "==": 4,
    "!=": 4,
    "<": 4,
    "<=": 4,
    ">": 4,
    ">=": 4,
    "in": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "/": 6,
    "%": 6,
}
_ALIASES: Final = {"||": "or", "&&": "and"}
_NOT, _COMPARISON = 3, 4


def _error(source: str, position: int, reason: str) -> ExpressionError:
    return ExpressionError(source=source, position=position, reason=reason)


def _scan_string(source: str, start: int) -> tuple[str, int]:
    quote, i, n = source[start], start + 1, len(source)
    out: list[str] = []
    while i < n:
        c = source[i]
        if c == quote:
            return "".join(out), i + 1
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= n:
            break
        e = source[i + 1]
        if e == "u" and _HEX4.fullmatch(source, i + 2, i + 6):
            out.append(chr(int(source[i + 2 : i + 6], 16)))
            i += 6
        elif e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        else:
            raise _error(source, i, f"invalid escape '\\{e}'")
    raise _error(source, start, "unterminated string")


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos, n = 0, len(source)
    while pos < n:
        m = _TOKEN.match(source, pos)
        if m is None:
            c = source[pos]
            raise _error(source, pos, f"unexpected character {c!r}{_HINTS.get(c, '')}")
        kind, text = m.lastgroup or "", m.group()
        if kind == "quote":
            value, end = _scan_string(source, pos)
            tokens.append(_Token("str", source[pos:end], pos, value))
            pos = end
            continue
        if kind == "num":
            tokens.append(_Token(kind, text, pos, int(text) if text.isdigit() else float(text)))
        elif kind != "ws":
            tokens.append(_Token(kind, text, pos))
        pos = m.end()
    tokens.append(_Token("end", "", n))
    return tokens


class _Parser:
    """Precedence climbing over the token list, building closures as it goes."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.i = 0
        self.depth = 0
        self.roots: set[str] = set()
        # Which top-level keys of `event` the expression reads; None once it uses `event`
        # other than through a constant first key (then all of it may matter).
        self.event_keys: set[str] | None = set()

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def is_op(self, text: str) -> bool:
        tok = self.tokens[self.i]
        return tok.kind == "op" and tok.text == text

    def fail(self, tok: _Token, reason: str | None = None) -> ExpressionError:
        if reason is None:
            at_end = tok.kind == "end"
            reason = "unexpected end of expression" if at_end else f"unexpected token {tok.text!r}"
        return _error(self.source, tok.pos, reason)

    def expect(self, text: str) -> None:
        tok = self.peek()
        if not self.is_op(text):
            found = "the end" if tok.kind == "end" else repr(tok.text)
            raise self.fail(tok, f"expected {text!r} but found {found}")
        self.i += 1

    def enter(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.fail(tok, f"nesting deeper than {MAX_NESTING}")

    def binary(self) -> tuple[str, int, int] | None:
        """The binary operator at the cursor as (name, precedence, tokens), or None."""
        tok = self.peek()
        if tok.kind == "name" and tok.text == "not":
            nxt = self.peek(1)
            return ("not in", _COMPARISON, 2) if nxt.kind == "name" and nxt.text == "in" else None
        if tok.kind in ("op", "name") and tok.text in _BINARY:
            return _ALIASES.get(tok.text, tok.text), _BINARY[tok.text], 1
        return None

    def parse(self) -> _Node:
        node = self.expression(1)
        if self.peek().kind != "end":
            raise self.fail(self.peek())
        return node

    def expression(self, min_prec: int) -> _Node:
        tok = self.peek()
        if min_prec <= _NOT and (tok.kind in ("name", "op")) and tok.text in ("not", "!"):
            self.i += 1
            self.enter(tok)
            left = _not(self.expression(_NOT))
            self.depth -= 1
        else:
            left = self.unary()
        while (op := self.binary()) is not None and op[1] >= min_prec:
            name, prec, width = op
            if prec == _COMPARISON:
                self.i += width
                left = _compare(name, left, self.expression(prec + 1))
                nxt = self.binary()
                if nxt is not None and nxt[1] == _COMPARISON:
                    raise self.fail(self.peek(), "comparisons cannot be chained; use 'and'")
                continue
            ops, operands = [], [left]
            while op is not None and op[1] == prec:
                self.i += op[2]
                ops.append(op[0])
                operands.append(self.expression(prec + 1))
                op = self.binary()
            left = _logic(prec == 2, operands) if prec <= 2 else _arithmetic(ops, operands)
        return left

    def unary(self) -> _Node:
        tok = self.peek()
        if not self.is_op("-"):
            return self.postfix()
        self.i += 1
        self.enter(tok)
        node = _negate(self.unary())
        self.depth -= 1
        return node

    def postfix(self) -> _Node:
        base, root = self.primary()
        steps: list[str | int | _Node] = []
        while True:
            tok = self.peek()
            if self.is_op("."):
                name = self.peek(1)
                if name.kind != "name":  # keywords are fine as keys: `a.in`, `a.null`
                    raise self.fail(name, "expected a name after '.'")
                steps.append(name.text)
                self.i += 2
            elif self.is_op("["):
                self.i += 1
                self.enter(tok)
                key = self.expression(1)
                self.expect("]")
                self.depth -= 1
                ok = key.const and type(key.value) in (str, int)
                steps.append(key.value if ok else key)
            elif self.is_op("("):
                raise self.fail(tok, "only functions can be called, e.g. lower(x)")
            else:
                if base is None and root == "event" and self.event_keys is not None:
                    if steps and type(steps[0]) is str:
                        self.event_keys.add(steps[0])
                    else:
                        self.event_keys = None
                return _path(base, root, steps)

    def items(self, close: str) -> list[_Node]:
        items: list[_Node] = []
        if not self.is_op(close):
            items.append(self.expression(1))
            while self.is_op(","):
                self.i += 1
                items.append(self.expression(1))
        self.expect(close)
        return items

    def primary(self) -> tuple[_Node | None, str]:
        """A literal, parenthesis, list, call or root name: (node, "") or (None, root)."""
        tok = self.peek()
        self.i += 1
        if tok.kind in ("num", "str"):
            return _const(tok.value), ""
        if tok.kind == "name" and tok.text in _LITERALS:
            return _const(_LITERALS[tok.text]), ""
        if tok.kind == "name" and tok.text not in _KEYWORDS:
            if not self.is_op("("):
                self.roots.add(tok.text)
                return None, tok.text
            fn = _FUNCTIONS.get(tok.text)
            if fn is None:
                raise self.fail(tok, f"unknown function {tok.text!r}")
            self.enter(tok)
            self.i += 1
            first_arg = self.peek()
            args = self.items(")")
            self.depth -= 1
            lo, hi = fn.min_args, fn.max_args
            if len(args) < lo or (hi is not None and len(args) > hi):
                want = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi else f"at least {lo}"
                noun = "argument" if want in ("1", "at least 1") else "arguments"
                raise self.fail(tok, f"{tok.text}() takes {want} {noun}, got {len(args)}")
            node = _call(fn, args)
            # A literal that can never be a date or a duration is a mistake worth reporting now.
            literal = args[0].value if args[0].const else None
            checked = tok.text in ("duration", "timestamp") and isinstance(literal, str)
            if checked and node.value is None:
                raise self.fail(first_arg, f"invalid {tok.text} {literal!r}")
            return node, ""
        if tok.kind == "op" and tok.text in ("(", "["):
            self.enter(tok)
            if tok.text == "(":
                node = self.expression(1)
                self.expect(")")
            else:
                node = _list(self.items("]"))
            self.depth -= 1
            return node, ""
        self.i -= 1
        raise self.fail(tok)


# ---------------------------------------------------------------------------- public API


class Expression:
    """A compiled expression. `evaluate(scope)` never raises: missing data gives None."""

    __slots__ = ("evaluate", "roots", "source")
    source: str
    roots: frozenset[str]
    evaluate: Evaluator  # the closure itself, so a call costs no method dispatch

    def __init__(self, source: str, evaluate: Evaluator, roots: frozenset[str]) -> None:
        self.source = source
        self.evaluate = evaluate
        self.roots = roots

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Closures do not pickle portably; the source is the canonical form, so recompile.
        return compile_expression, (self.source,)


def compile_expression(source: str) -> Expression:
    """Parse `source` once into closures; raises ExpressionError on any syntax error."""
    if not isinstance(source, str):
        raise _error(repr(source), 0, f"an expression is a string, not {type(source).__name__}")
    if len(source) > MAX_SOURCE_LENGTH:
        raise _error(source, MAX_SOURCE_LENGTH, f"longer than {MAX_SOURCE_LENGTH} characters")
    parser = _Parser(source)
    try:
        node = parser.parse()
    except RecursionError:  # belt and braces: MAX_NESTING should stop this well before
        raise parser.fail(parser.peek(), "expression nested too deeply") from None
    return Expression(source, node.fn, frozenset(parser.roots))


def event_fields(source: str) -> frozenset[str] | None:
    """The top-level keys of `event` the expression `source` reads, or None if it may read
    all of it (`event` itself, `event[k]` with a computed k). Raises ExpressionError."""
    parser = _Parser(source)
    parser.parse()
    return None if parser.event_keys is None else frozenset(parser.event_keys)


def mapping_event_fields(template: Any) -> frozenset[str] | None:
    """`event_fields` over every string leaf of a payload mapping (None if any is None)."""
    keys: set[str] = set()
    stack = [template]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            found = event_fields(value)
            if found is None:
                return None
            keys |= found
        elif isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return frozenset(keys)


class CompiledMapping:
    """A JSON payload mapping whose string leaves are compiled expressions.

    `evaluate(scope)` builds a fresh JSON value (new dicts and lists) on every call.
    """

    __slots__ = ("evaluate", "name", "roots", "template")
    template: Any
    name: str
    roots: frozenset[str]
    evaluate: Evaluator

    def __init__(self, template: Any, name: str, evaluate: Evaluator, roots: frozenset[str]) -> None:
        self.template = template
        self.name = name
        self.evaluate = evaluate
        self.roots = roots

    def __repr__(self) -> str:
        return f"CompiledMapping({self.name}={self.template!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return _recompile_mapping, (self.template, self.name)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def compile_mapping(template: Any, *, name: str = "payload") -> CompiledMapping:
    """Compile every string leaf of `template`; errors name the key path (`payload.items[0]`)."""
    roots: set[str] = set()
    evaluate = _compile_value(template, name, roots, 0)
    return CompiledMapping(template, name, evaluate, frozenset(roots))


def _recompile_mapping(template: Any, name: str) -> CompiledMapping:
    return compile_mapping(template, name=name)


def _compile_value(value: Any, path: str, roots: set[str], depth: int) -> Evaluator:
    if depth > MAX_NESTING:
        raise _error("", 0, f"{path}: nesting deeper than {MAX_NESTING}")
    if isinstance(value, str):
        try:
            expression = compile_expression(value)
        except ExpressionError as exc:
            raise _error(exc.source, exc.position, f"{path}: {exc.reason}") from None
        roots.update(expression.roots)
        return expression.evaluate
    if value is None or isinstance(value, bool | int | float):
        return lambda s: value
    if isinstance(value, Mapping):
        entries = []
        for key, sub in value.items():
            if not isinstance(key, str):
                raise _error("", 0, f"{path}: keys must be strings, not {type(key).__name__}")
            where = f"{path}.{key}" if _IDENTIFIER.fullmatch(key) else f"{path}[{key!r}]"
            entries.append((key, _compile_value(sub, where, roots, depth + 1)))
        pairs = tuple(entries)
        return lambda s: {k: f(s) for k, f in pairs}
    if isinstance(value, list | tuple):
        fns = tuple(_compile_value(v, f"{path}[{i}]", roots, depth + 1) for i, v in enumerate(value))
        return lambda s: [f(s) for f in fns]
    raise _error("", 0, f"{path}: unsupported value of type {type(value).__name__}")
