"""The expression language: syntax, semantics, functions, errors, limits and mappings."""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itinerary.engine.expressions import (
    MAX_NESTING,
    MAX_SOURCE_LENGTH,
    CompiledMapping,
    Expression,
    compile_expression,
    compile_mapping,
)
from itinerary.errors import ExpressionError

SCOPE: dict[str, Any] = {
    "event": {
        "eventType": "commerce.purchases",
        "_id": "evt-1",
        "_experience": {"campaign": {"id": "c9"}},
        "timestamp": "2024-05-01T10:00:00Z",
        "productListItems": [
            {"SKU": "A-1", "quantity": 2, "priceTotal": 19.5},
            {"SKU": "B-2", "quantity": 1, "priceTotal": 5},
        ],
        "commerce": {"order": {"priceTotal": 24.5, "currencyCode": "EUR"}},
        "nothing": None,
        "weird keys": {"key with space": 1, "0": "zero"},
    },
    "profile": {
        "firstName": "  Ada ",
        "lastName": "Lovelace",
        "age": 36,
        "score": 2.5,
        "vip": True,
        "tags": ["vip", "early", 3],
        "empty": [],
        "emptyText": "",
        "zero": 0,
    },
    "now": 1_714_557_600.0,
}


def ev(source: str, scope: Mapping[str, Any] = SCOPE) -> Any:
    return compile_expression(source).evaluate(scope)


def error_of(source: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        compile_expression(source)
    return info.value


# ---------------------------------------------------------------------------- literals


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("42", 42),
        ("0", 0),
        ("3.25", 3.25),
        ("1e3", 1000.0),
        ("2.5E-1", 0.25),
        ("'single'", "single"),
        ('"double"', "double"),
        ("''", ""),
        (r"'it\'s'", "it's"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'a\nb\tc\\d'", "a\nb\tc\\d"),
        (r"'\u00e9t\u00E9'", "été"),
        ("'é and 漢字'", "é and 漢字"),
        ("true", True),
        ("false", False),
        ("null", None),
        ("[]", []),
        ("[1, 'a', null, true, [2]]", [1, "a", None, True, [2]]),
        ("[1, profile.age]", [1, 36]),
    ],
)
def test_literals(source: str, expected: Any) -> None:
    assert ev(source) == expected
    assert type(ev(source)) is type(expected)


def test_literal_lists_are_fresh_on_every_evaluation() -> None:
    expression = compile_expression("[1, [2]]")
    first = expression.evaluate({})
    first[1].append(3)
    assert expression.evaluate({}) == [1, [2]]


# ---------------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("event.eventType", "commerce.purchases"),
        ("event._id", "evt-1"),
        ("event._experience.campaign.id", "c9"),
        ("event.productListItems[0].SKU", "A-1"),
        ("event.productListItems[1]['SKU']", "B-2"),
        ("event.productListItems[-1].quantity", 1),
        ("event['weird keys']['key with space']", 1),
        ("event['weird keys']['0']", "zero"),
        ("event.productListItems[1 - 1].SKU", "A-1"),
        ("event.productListItems[profile.zero].SKU", "A-1"),
        ("event[concat('event', 'Type')]", "commerce.purchases"),
        ("profile.tags[2]", 3),
        ("[10, 20, 30][1]", 20),
        ("([10, [20, 21]])[1][0]", 20),
        ("now", 1_714_557_600.0),
    ],
)
def test_paths(source: str, expected: Any) -> None:
    assert ev(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        "unknownRoot",
        "unknownRoot.a.b",
        "event.missing",
        "event.missing.deeper[0].x",
        "event.nothing.x",
        "event.productListItems[2]",
        "event.productListItems[-3]",
        "event.productListItems[99999999999999999999999]",
        "event.productListItems['0']",
        "event.productListItems.SKU",
        "event.eventType.length",
        "event.eventType[0]",
        "profile.age.x",
        "profile.tags[true]",
        "profile.tags[0.0]",
        "event[null]",
        "event[[1]]",
        "event.productListItems[event.missing]",
        "null.x",
        "'abc'.x",
        "1[0]",
    ],
)
def test_missing_paths_are_none(source: str) -> None:
    assert ev(source) is None


def test_only_keys_are_traversed_never_attributes() -> None:
    class Sneaky:
        secret = "attribute"

    scope = {"obj": Sneaky(), "d": {"keys": "data", "__class__": "data too"}}
    assert ev("obj.secret", scope) is None
    assert ev("obj.__class__", scope) is None
    assert ev("d.keys", scope) == "data"
    assert ev("d.__class__", scope) == "data too"
    assert ev("d.items", scope) is None


def test_keywords_are_allowed_as_keys() -> None:
    scope = {"a": {"in": 1, "null": 2, "and": 3, "true": 4}}
    assert ev("a.in + a.null + a.and + a.true", scope) == 10


def test_roots() -> None:
    assert compile_expression("event.a == profile.b[x.y]").roots == {"event", "profile", "x"}
    assert compile_expression("lower('A') == 'a'").roots == frozenset()
    assert compile_expression("a.in").roots == {"a"}
    assert isinstance(compile_expression("a").roots, frozenset)


def test_works_with_any_mapping_scope() -> None:
    class Scope(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            if key == "event":
                return {"x": 1}
            raise KeyError(key)

        def __iter__(self) -> Any:
            return iter(["event"])

        def __len__(self) -> int:
            return 1

    assert ev("event.x + 1", Scope()) == 2
    assert ev("profile.x", Scope()) is None


# ---------------------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # precedence: or < and < not < comparison < + - < * / % < unary minus < postfix
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("2 * 3 % 4", 2),
        ("100 / 10 / 5", 2.0),
        ("-2 * -3", 6),
        ("--2", 2),
        ("-profile.age + 1", -35),
        ("1 + 2 == 3", True),
        ("1 + 2 * 3 == 7 and 2 > 1", True),
        ("not 1 == 2", True),
        ("not true and false", False),
        ("not (true and false)", True),
        ("true or false and false", True),
        ("(true or false) and false", False),
        ("false or not false", True),
        ("!false && true", True),
        ("false || true", True),
        ("! 1 == 1", False),
        ("not not 1", True),
        ("1 == 1 and 2 == 2 or false", True),
        ("1 + 1 in [2, 3]", True),
    ],
)
def test_precedence(source: str, expected: Any) -> None:
    assert ev(source) == expected


def test_chained_comparisons_are_errors() -> None:
    err = error_of("1 < 2 < 3")
    assert err.position == 6
    assert "chained" in err.reason


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("7 / 2", 3.5),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("7.5 % 2", 1.5),
        ("2 * 2.5", 5.0),
        ("'ab' + 'cd'", "abcd"),
        ("profile.lastName + '!'", "Lovelace!"),
        ("1 / 0", None),
        ("1 % 0", None),
        ("1.0 / 0.0", None),
        ("profile.age / profile.zero", None),
        ("null + 1", None),
        ("1 + null", None),
        ("event.missing * 2", None),
        ("'a' + 1", None),
        ("1 + 'a'", None),
        ("'a' * 3", None),
        ("'a' - 'a'", None),
        ("true + 1", None),
        ("[1] + [2]", None),
        ("-'a'", None),
        ("-null", None),
        ("-true", None),
        ("1 + 2 + null + 3", None),
        ("1e308 * 10", math.inf),
    ],
)
def test_arithmetic(source: str, expected: Any) -> None:
    assert ev(source) == expected


def test_arithmetic_overflow_is_none() -> None:
    scope = {"big": 10**400}
    assert ev("big / 1", scope) is None
    assert ev("big + 0.5", scope) is None
    assert ev("big + 1", scope) == 10**400 + 1


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 == 1.0", True),
        ("1 != 1.0", False),
        ("'a' == 'a'", True),
        ("'a' != 'b'", True),
        ("null == null", True),
        ("event.missing == null", True),
        ("event.missing != null", False),
        ("true == 1", False),
        ("false == 0", False),
        ("1 == true", False),
        ("[1, 'a'] == [1.0, 'a']", True),
        ("[1] == [true]", False),
        ("[1] == 1", False),
        ("event.commerce.order == event.commerce.order", True),
        ("event.eventType == 'commerce.purchases'", True),
        ("profile.age == '36'", False),
        ("2 < 3", True),
        ("3 <= 3", True),
        ("4 > 3.5", True),
        ("3 >= 4", False),
        ("'abc' < 'abd'", True),
        ("'b' >= 'a'", True),
        ("profile.age > 18", True),
        ("profile.age < 18", False),
        ("profile.score >= 2.5", True),
        # incompatible types and nulls never order and never raise
        ("'a' < 1", False),
        ("1 > 'a'", False),
        ("null < 1", False),
        ("null >= null", False),
        ("event.missing > 0", False),
        ("event.missing <= 0", False),
        ("true > false", False),
        ("[1] < [2]", False),
        ("profile.firstName > 3", False),
        ("profile.vip > 0", False),
    ],
)
def test_comparisons(source: str, expected: bool) -> None:
    assert ev(source) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("'vip' in profile.tags", True),
        ("'gold' in profile.tags", False),
        ("3 in profile.tags", True),
        ("3.0 in profile.tags", True),
        ("true in [1]", False),
        ("'vip' not in profile.tags", False),
        ("'gold' not in profile.tags", True),
        ("'ove' in profile.lastName", True),
        ("'xyz' in profile.lastName", False),
        ("1 in 'a1'", False),
        ("'a' in null", False),
        ("'a' not in null", True),
        ("'a' in event.missing", False),
        ("'eventType' in event", True),
        ("[1] in [[1], 2]", True),
        ("event.eventType in ['commerce.purchases', 'x']", True),
        ("event.eventType not in ['commerce.purchases', 'x']", False),
        ("profile.age in ['36', 'x']", False),
        ("profile.age in [36, 'x']", True),
        ("event.missing in ['a']", False),
        ("'a' in 3", False),
    ],
)
def test_membership(source: str, expected: bool) -> None:
    assert ev(source) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 and 'x'", True),
        ("0 or ''", False),
        ("[] or []", False),
        ("profile.empty or profile.emptyText", False),
        ("profile.tags and profile.lastName", True),
        ("profile.zero or null", False),
        ("event.commerce and 1", True),
        ("0.0 or false", False),
        ("not profile.empty", True),
        ("not event", False),
        ("not event.missing", True),
        ("event.eventType == 'commerce.purchases' and profile.age > 30", True),
        ("1 and 2 and 3 and 0", False),
        ("0 or 0 or 0 or 'x'", True),
    ],
)
def test_truthiness_and_boolean_results(source: str, expected: bool) -> None:
    assert ev(source) is expected


def test_and_or_short_circuit() -> None:
    calls: list[str] = []

    class Spy(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            calls.append(key)
            return super().get(key, default)

    scope = Spy(a=0, b=1)
    assert ev("a and b.x", scope) is False
    assert calls == ["a"]
    calls.clear()
    assert ev("b or a.x", scope) is True
    assert calls == ["b"]
    calls.clear()
    assert ev("a and b and a.y", scope) is False
    assert calls == ["a"]
    calls.clear()
    assert ev("coalesce(b, a.z)", scope) == 1
    assert calls == ["b"]


def test_truthiness_survives_objects_that_refuse_bool() -> None:
    class Refuses:
        def __bool__(self) -> bool:
            raise ValueError("ambiguous")

        def __eq__(self, other: object) -> bool:
            raise ValueError("no")

        __hash__ = object.__hash__

    scope = {"x": Refuses()}
    assert ev("x or false", scope) is False
    assert ev("not x", scope) is True
    assert ev("x == 1", scope) is False
    assert ev("x in [1, 2]", scope) is False


# ---------------------------------------------------------------------------- functions


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("exists(profile.age)", True),
        ("exists(event.missing)", False),
        ("exists(0)", True),
        ("exists(event.nothing)", False),
        ("lower('AbC')", "abc"),
        ("upper(profile.lastName)", "LOVELACE"),
        ("lower(1)", None),
        ("trim(profile.firstName)", "Ada"),
        ("trim(null)", None),
        ("upper(null)", None),
        ("length('abc')", 3),
        ("len(profile.tags)", 3),
        ("length(event.commerce)", 1),
        ("length(3)", None),
        ("length(null)", None),
        ("len('')", 0),
        ("contains(profile.tags, 'vip')", True),
        ("contains(profile.lastName, 'love')", False),
        ("contains(profile.lastName, 'Love')", True),
        ("contains(null, 'a')", False),
        ("startsWith(event.eventType, 'commerce.')", True),
        ("startsWith(null, 'a')", False),
        ("endsWith(event.eventType, 'purchases')", True),
        ("endsWith('abc', 1)", False),
        ("concat('a', 'b')", "ab"),
        ("concat('n=', 1, ', ok=', true, ', x=', null)", "n=1, ok=true, x="),
        ("concat(profile.lastName)", "Lovelace"),
        ("concat('v', 2.5, [1, 'a'])", 'v2.5[1,"a"]'),
        ("coalesce(event.missing, null, 'x', 'y')", "x"),
        ("coalesce(null)", None),
        ("coalesce(profile.zero, 1)", 0),
        ("abs(-3)", 3),
        ("abs(2.5)", 2.5),
        ("abs('x')", None),
        ("abs(null)", None),
        ("min(3, 1, 2)", 1),
        ("max(3, 1, 2.5)", 3),
        ("max([4, 9, 2])", 9),
        ("min(['b', 'a'])", "a"),
        ("max(null, 1)", 1),
        ("max(null)", None),
        ("max([])", None),
        ("min(1, 'a')", None),
        ("max(profile.age, 18)", 36),
        ("round(2.5)", 3),
        ("round(-2.5)", -3),
        ("round(2.4)", 2),
        ("round(2.675, 2)", 2.68),
        ("round(1234, -2)", 1200),
        ("round(7)", 7),
        ("round('x')", None),
        ("round(1.5, 'a')", None),
        ("round(null)", None),
        ("number('42')", 42),
        ("number(' -3 ')", -3),
        ("number('2.5')", 2.5),
        ("number('1e2')", 100.0),
        ("number(7)", 7),
        ("number('abc')", None),
        ("number('nan')", None),
        ("number(null)", None),
        ("number(true)", None),
        ("number('')", None),
        ("string(1)", "1"),
        ("string(2.5)", "2.5"),
        ("string(true)", "true"),
        ("string('s')", "s"),
        ("string(null)", None),
        ("string([1, null])", "[1,null]"),
        ("string(event.commerce.order)", '{"priceTotal":24.5,"currencyCode":"EUR"}'),
        ("timestamp('1970-01-01T00:01:00Z')", 60.0),
        ("timestamp('1970-01-01T01:00:00+01:00')", 0.0),
        ("timestamp('1970-01-02')", 86400.0),
        ("timestamp('1970-01-01T00:00:01.5')", 1.5),
        ("timestamp(event.timestamp)", 1_714_557_600.0),
        ("timestamp(12.5)", 12.5),
        ("timestamp(event.eventType)", None),
        ("timestamp(null)", None),
        ("timestamp(event.missing)", None),
        ("duration('PT30M')", 1800.0),
        ("duration('P1DT2H')", 93600.0),
        ("duration('PT1.5S')", 1.5),
        ("duration('P2W')", 1_209_600.0),
        ("duration('PT1H1M1S')", 3661.0),
        ("duration(90)", 90.0),
        ("duration(event.eventType)", None),
        ("duration(null)", None),
        ("now - timestamp(event.timestamp) < duration('PT1H')", True),
    ],
)
def test_functions(source: str, expected: Any) -> None:
    result = ev(source)
    assert result == expected
    assert type(result) is type(expected)


def test_functions_never_raise_on_hostile_values() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    scope = {"huge": 10**5000, "cyclic": cyclic}
    assert ev("string(huge)", scope) is None
    assert ev("string(cyclic)", scope) is None
    assert ev("concat('x', cyclic)", scope) is None
    assert ev("number(string(huge))", scope) is None
    assert ev("round(huge, 2)", scope) == 10**5000
    assert ev("timestamp(huge)", scope) is None
    assert ev("cyclic == cyclic", scope) in (True, False)
    assert ev("round(1.5, 99999999999)", scope) is None


@pytest.mark.parametrize(
    ("source", "reason", "position"),
    [
        ("foo(1)", "unknown function 'foo'", 0),
        ("event.x == bar()", "unknown function 'bar'", 11),
        ("lower()", "lower() takes 1 argument, got 0", 0),
        ("lower('a', 'b')", "lower() takes 1 argument, got 2", 0),
        ("1 + contains('a')", "contains() takes 2 arguments, got 1", 4),
        ("round(1, 2, 3)", "round() takes 1 to 2 arguments, got 3", 0),
        ("coalesce()", "coalesce() takes at least 1 argument, got 0", 0),
        ("duration('P1M')", "invalid duration 'P1M'", 9),
        ("timestamp('soon')", "invalid timestamp 'soon'", 10),
    ],
)
def test_function_errors(source: str, reason: str, position: int) -> None:
    err = error_of(source)
    assert err.reason == reason
    assert err.position == position


def test_functions_are_only_called_by_name() -> None:
    assert error_of("event.lower('x')").reason.startswith("only functions can be called")
    assert ev("lower", {"lower": "a root, not a function"}) == "a root, not a function"


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("source", "position", "reason"),
    [
        ("a ==", 4, "unexpected end of expression"),
        ("event.x == 'abc", 11, "unterminated string"),
        ('"abc', 0, "unterminated string"),
        ("'abc\\", 0, "unterminated string"),
        ("", 0, "unexpected end of expression"),
        ("   ", 3, "unexpected end of expression"),
        ("(1 + 2))", 7, "unexpected token ')'"),
        (")", 0, "unexpected token ')'"),
        ("1 +* 2", 3, "unexpected token '*'"),
        ("a b", 2, "unexpected token 'b'"),
        ("a[0", 3, "expected ']' but found the end"),
        ("a[0)", 3, "expected ']' but found ')'"),
        ("(1", 2, "expected ')' but found the end"),
        ("[1, 2", 5, "expected ']' but found the end"),
        ("[1,]", 3, "unexpected token ']'"),
        ("lower('a'", 9, "expected ')' but found the end"),
        ("a.", 2, "expected a name after '.'"),
        ("a.1", 2, "expected a name after '.'"),
        ("a = 1", 2, "unexpected character '=' (use '==')"),
        ("a & b", 2, "unexpected character '&' (use '&&' or 'and')"),
        ("a | b", 2, "unexpected character '|' (use '||' or 'or')"),
        ("a @ b", 2, "unexpected character '@'"),
        ("'\\q'", 1, "invalid escape '\\q'"),
        ("'\\u12'", 1, "invalid escape '\\u'"),
        ("a and", 5, "unexpected end of expression"),
        ("not", 3, "unexpected end of expression"),
        ("a == not b", 5, "unexpected token 'not'"),
        ("a + !b", 4, "unexpected token '!'"),
        ("and", 0, "unexpected token 'and'"),
        ("a in", 4, "unexpected end of expression"),
        ("a not b", 2, "unexpected token 'not'"),
        ("+1", 0, "unexpected token '+'"),
    ],
)
def test_syntax_errors(source: str, position: int, reason: str) -> None:
    err = error_of(source)
    assert (err.position, err.reason) == (position, reason)
    assert err.source == source
    assert f"at position {position}" in str(err)


def test_non_string_source_is_an_error() -> None:
    with pytest.raises(ExpressionError):
        compile_expression(42)  # type: ignore[arg-type]


def test_length_limit() -> None:
    ok = "1" + " " * (MAX_SOURCE_LENGTH - 1)
    assert compile_expression(ok).evaluate({}) == 1
    err = error_of(ok + " ")
    assert err.position == MAX_SOURCE_LENGTH
    assert "longer than" in err.reason


@pytest.mark.parametrize(
    ("opening", "closing"),
    [("(", ")"), ("[", "]"), ("lower(", ")"), ("-", ""), ("not ", ""), ("!", "")],
)
def test_nesting_limit(opening: str, closing: str) -> None:
    compile_expression(opening * MAX_NESTING + "1" + closing * MAX_NESTING)
    err = error_of(opening * (MAX_NESTING + 1) + "1" + closing * (MAX_NESTING + 1))
    assert err.reason == f"nesting deeper than {MAX_NESTING}"
    assert err.position == MAX_NESTING * len(opening)


def test_nesting_limit_on_indexes() -> None:
    source = "a" + "[a" * MAX_NESTING + "]" * MAX_NESTING
    assert compile_expression(source).evaluate({}) is None
    too_deep = "a" + "[a" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1)
    assert error_of(too_deep).position == 2 * MAX_NESTING + 1


def test_worst_case_nesting_evaluates() -> None:
    # Every operator level at every nesting level: the deepest closure tree the limits allow.
    source = "x"
    for _ in range(MAX_NESTING - 1):
        source = f"(x and x or {source} - x * x[0] + x == x)"
    expression = compile_expression(source)
    # With x falsy nothing short-circuits: every level is evaluated, innermost first.
    assert expression.evaluate({"x": 0}) is False
    assert expression.evaluate({}) is True


def test_long_flat_chains_compile_and_evaluate() -> None:
    # 2000 operands of one operator are one loop, not a 2000-deep tree.
    assert ev("+".join(["1"] * 2000)) == 2000
    assert ev("+".join(["x"] * 2000), {"x": 1}) == 2000
    assert ev("-".join(["x"] * 2000), {"x": 1}) == -1998
    assert ev("&&".join(["x"] * 1300), {"x": 1}) is True
    assert ev("||".join(["x"] * 1300), {"x": 0}) is False
    assert ev("x" + ".a" * 2000, {"x": None}) is None
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(1300):
        node["a"] = node = {}
    assert ev("x" + ".a" * 1300, {"x": deep}) == {}


def test_expression_object() -> None:
    expression = compile_expression("event.eventType == 'commerce.purchases'")
    assert isinstance(expression, Expression)
    assert expression.source == "event.eventType == 'commerce.purchases'"
    assert expression.evaluate(SCOPE) is True
    assert expression.evaluate({"event": {"eventType": "other"}}) is False
    assert expression.evaluate({"event": "not a dict"}) is False
    assert expression.evaluate({}) is False
    assert "event.eventType" in repr(expression)


# ---------------------------------------------------------------------------- mappings


def test_mapping_evaluates_nested_structures() -> None:
    mapping = compile_mapping(
        {
            "sku": "event.productListItems[0].SKU",
            "kind": "'reminder'",
            "qty": 3,
            "ratio": 0.5,
            "flag": False,
            "none": None,
            "items": ["profile.lastName", 7, ["upper(profile.lastName)"]],
            "nested": {"total": "event.commerce.order.priceTotal * 2", "missing": "event.nope"},
        }
    )
    assert isinstance(mapping, CompiledMapping)
    assert mapping.roots == {"event", "profile"}
    assert mapping.evaluate(SCOPE) == {
        "sku": "A-1",
        "kind": "reminder",
        "qty": 3,
        "ratio": 0.5,
        "flag": False,
        "none": None,
        "items": ["Lovelace", 7, ["LOVELACE"]],
        "nested": {"total": 49.0, "missing": None},
    }


def test_mapping_values_are_fresh_each_time() -> None:
    mapping = compile_mapping({"a": [1, {"b": 2}], "c": "[1, 2]"})
    first = mapping.evaluate({})
    first["a"][1]["b"] = 99
    first["c"].append(3)
    assert mapping.evaluate({}) == {"a": [1, {"b": 2}], "c": [1, 2]}


def test_mapping_scalars_and_top_level_forms() -> None:
    assert compile_mapping("profile.age").evaluate(SCOPE) == 36
    assert compile_mapping(5).evaluate(SCOPE) == 5
    assert compile_mapping(None).evaluate(SCOPE) is None
    assert compile_mapping([]).evaluate(SCOPE) == []
    assert compile_mapping(("'a'",)).evaluate(SCOPE) == ["a"]
    assert compile_mapping({}).evaluate(SCOPE) == {}


@pytest.mark.parametrize(
    ("template", "prefix", "position"),
    [
        ({"items": ["ok", "a +"]}, "payload.items[1]: unexpected end of expression", 3),
        ({"a": {"b c": "x =="}}, "payload.a['b c']: unexpected end of expression", 4),
        ({"a": {"b": "foo(1)"}}, "payload.a.b: unknown function 'foo'", 0),
        ("1 +", "payload: unexpected end of expression", 3),
        ([["x", "'open"]], "payload[0][1]: unterminated string", 0),
    ],
)
def test_mapping_errors_name_the_key_path(template: Any, prefix: str, position: int) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_mapping(template)
    assert info.value.reason == prefix
    assert info.value.position == position


def test_mapping_error_root_name_is_configurable() -> None:
    with pytest.raises(ExpressionError, match=r"headers\.x: "):
        compile_mapping({"x": ")"}, name="headers")


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ({1: "a"}, "payload: keys must be strings, not int"),
        ({"a": {1.5}}, "payload.a: unsupported value of type set"),
        ({"a": object()}, "payload.a: unsupported value of type object"),
    ],
)
def test_mapping_refuses_non_json(template: Any, reason: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_mapping(template)
    assert info.value.reason == reason


def test_mapping_nesting_limit() -> None:
    deep: Any = "1"
    for _ in range(MAX_NESTING):
        deep = [deep]
    compile_mapping(deep)
    with pytest.raises(ExpressionError, match="nesting deeper than"):
        compile_mapping([deep])


# ---------------------------------------------------------------------------- property tests

_ALPHABET = st.sampled_from(
    [
        *"abcxyz_019.[]()'\"\\,!=<>+-*/%&| \t",
        "and",
        "or",
        "not",
        "in",
        "true",
        "null",
        "lower(",
        "concat(",
        "coalesce(",
        "round(",
        "duration(",
        "timestamp(",
        "event",
        "profile",
        ".x",
        "[0]",
        "[-1]",
        "'s'",
        "1.5",
        "1e3",
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(min_size=0, max_size=80) | st.lists(_ALPHABET, max_size=40).map("".join))
def test_random_text_compiles_or_raises_expression_error(source: str) -> None:
    try:
        expression = compile_expression(source)
    except ExpressionError as err:
        assert 0 <= err.position <= len(source)
        return
    expression.evaluate(SCOPE)
    expression.evaluate({})


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=5)
    | st.sampled_from(["x", "a", "PT1M", "2024-01-01T00:00:00Z", "3"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["x", "y", "a", "0", "_id"]), children, max_size=4)
    ),
    max_leaves=20,
)
_SCOPES = st.dictionaries(st.sampled_from(["event", "profile", "x", "a"]), _JSON, max_size=4)


def _atoms() -> st.SearchStrategy[str]:
    path = st.builds(
        lambda root, steps: root + "".join(steps),
        st.sampled_from(["event", "profile", "x", "a", "nope"]),
        st.lists(st.sampled_from([".x", ".y", ".a", "._id", "[0]", "[-1]", "['0']", "[x]"]), max_size=4),
    )
    literal = st.sampled_from(
        ["0", "1", "-2", "2.5", "1e308", "'x'", "''", "'PT1M'", "true", "false", "null", "[]", "[1, 'x', null]"]
    )
    return path | literal


def _compose(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.builds(
        lambda a, op, b: f"{a} {op} {b}",
        children,
        st.sampled_from(
            ["or", "||", "and", "&&", "==", "!=", "<", "<=", ">", ">=", "in", "not in", "+", "-", "*", "/", "%"]
        ),
        children,
    )
    unary = st.builds(lambda op, a: f"{op}{a}", st.sampled_from(["not ", "!", "-"]), children)
    call1 = st.builds(
        lambda f, a: f"{f}({a})",
        st.sampled_from(
            [
                "exists",
                "lower",
                "upper",
                "trim",
                "length",
                "len",
                "abs",
                "min",
                "max",
                "round",
                "number",
                "string",
                "timestamp",
                "duration",
                "concat",
                "coalesce",
            ]
        ),
        children,
    )
    call2 = st.builds(
        lambda f, a, b: f"{f}({a}, {b})",
        st.sampled_from(["contains", "startsWith", "endsWith", "concat", "coalesce", "min", "max", "round"]),
        children,
        children,
    )
    grouped = st.builds(lambda a: f"({a})", children)
    indexed = st.builds(lambda a, b: f"({a})[{b}]", children, children)
    listed = st.builds(lambda items: "[" + ", ".join(items) + "]", st.lists(children, max_size=3))
    return binary | unary | call1 | call2 | grouped | indexed | listed


_EXPRESSIONS = st.recursive(_atoms(), _compose, max_leaves=12)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_EXPRESSIONS, _SCOPES)
def test_random_expressions_never_raise_when_evaluated(source: str, scope: dict[str, Any]) -> None:
    try:
        expression = compile_expression(source)
    except ExpressionError:
        return  # e.g. chained comparisons or a literal duration that is not one
    expression.evaluate(scope)
    compile_mapping({"v": [source, {"w": source}]}).evaluate(scope)


def test_compiled_objects_pickle_by_source() -> None:
    expression = pickle.loads(pickle.dumps(compile_expression("profile.age + 1")))
    assert expression.source == "profile.age + 1"
    assert expression.evaluate(SCOPE) == 37
    mapping = pickle.loads(pickle.dumps(compile_mapping({"n": "profile.age"}, name="body")))
    assert (mapping.name, mapping.evaluate(SCOPE)) == ("body", {"n": 36})
