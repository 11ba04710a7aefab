"""Message templates: rendering, defaults, escaping, errors, limits and the sandbox."""

from __future__ import annotations

import pickle
import re
from typing import Any

import pytest

from itinerary.engine.templates import MAX_OUTPUT_BYTES, MessageTemplate, compile_template
from itinerary.errors import TemplateError

SCOPE: dict[str, Any] = {
    "profile": {
        "firstName": "Ada",
        "lastName": None,
        "tier": "gold",
        "items": ["a", "b"],  # a key named like a dict method
        "orders": [{"sku": "A-1", "price": 19.5}, {"sku": "B-2", "price": 5}],
    },
    "event": {"eventType": "commerce.purchases", "_id": "evt-1", "note": "<b>Tom & Jerry</b>"},
    "journey": {"id": "j1", "name": "Welcome", "version": 3},
}


def render(source: str, scope: dict[str, Any] = SCOPE, *, html: bool = False) -> str:
    return compile_template(source, html=html).render(scope)


# ---------------------------------------------------------------------------- rendering


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Hello {{ profile.firstName }}!", "Hello Ada!"),
        ("{{ journey.name }} v{{ journey.version }}", "Welcome v3"),
        ("{{ event._id }}", "evt-1"),
        ("{{ event['eventType'] }}", "commerce.purchases"),
        ("{{ profile.orders[1].sku }}", "B-2"),
        ("{{ profile.orders | length }}", "2"),
        ("{{ profile.firstName | upper }}", "ADA"),
        ("{{ '%.2f' | format(profile.orders[0].price) }}", "19.50"),
        ("{% for o in profile.orders %}{{ o.sku }}{% if not loop.last %}, {% endif %}{% endfor %}", "A-1, B-2"),
        ("{% if profile.tier == 'gold' %}VIP{% else %}regular{% endif %}", "VIP"),
        ("{% if profile.missing %}yes{% else %}no{% endif %}", "no"),
        ("{% set total = profile.orders | sum(attribute='price') %}{{ total }}", "24.5"),
        ("{{ profile.items | join('+') }}", "a+b"),
        ("{% for k, v in journey.items() %}{{ k }};{% endfor %}", "id;name;version;"),
        ("{{ range(3) | list }}", "[0, 1, 2]"),
        ("{{ dict(a=1).a }}", "1"),
        ("line\n", "line\n"),
        ("", ""),
    ],
)
def test_rendering(source: str, expected: str) -> None:
    assert render(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Hi {{ profile.nickname }}!", "Hi !"),
        ("Hi {{ profile.nickname.first.letter }}!", "Hi !"),
        ("Hi {{ missing.deeply['nested'].value }}!", "Hi !"),
        ("Hi {{ profile.lastName }}!", "Hi !"),  # JSON null renders as nothing, not "None"
        ("Hi {{ profile.firstName | default('there') }}", "Hi Ada"),
        ("Hi {{ profile.nickname | default('there') }}", "Hi there"),
        ("Hi {{ profile.lastName | default('there') }}", "Hi there"),
        ("Hi {{ profile.nickname.x | d('there') }}", "Hi there"),
        ("Hi {{ '' | default('there') }}", "Hi "),
        ("Hi {{ '' | default('there', true) }}", "Hi there"),
        ("{% for x in profile.nothing %}{{ x }}{% endfor %}done", "done"),
    ],
)
def test_missing_values(source: str, expected: str) -> None:
    assert render(source) == expected


def test_rendering_with_an_empty_scope() -> None:
    assert render("Hello {{ profile.firstName | default('there') }}", {}) == "Hello there"


def test_html_escaping() -> None:
    assert render("<p>{{ event.note }}</p>", html=True) == ("<p>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>")
    assert render("<p>{{ event.note | safe }}</p>", html=True) == "<p><b>Tom & Jerry</b></p>"
    assert render("{{ event.note }}") == "<b>Tom & Jerry</b>"  # text mode does not escape
    assert render("{{ profile.missing }}", html=True) == ""


def test_template_object() -> None:
    template = compile_template("Hi {{ profile.firstName }}", html=True)
    assert isinstance(template, MessageTemplate)
    assert template.source == "Hi {{ profile.firstName }}"
    assert template.html is True
    assert template.render(SCOPE) == template.render(SCOPE) == "Hi Ada"
    assert "Hi" in repr(template)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("Hello {{ profile.firstName }", 1),
        ("one\ntwo\n{% if %}", 3),
        ("{% for x in y %}\nno end", 1),  # Jinja names the line of the unclosed block
        ("{{ x | no_such_filter }}", 1),
        ("{% endif %}", 1),
        ("a\nb\n{{ 1 + }}", 3),
    ],
)
def test_syntax_errors_name_the_line(source: str, line: int) -> None:
    with pytest.raises(TemplateError) as info:
        compile_template(source)
    assert info.value.reason.startswith(f"line {line}: ")
    assert info.value.source == source


def test_non_string_source() -> None:
    with pytest.raises(TemplateError):
        compile_template(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "source",
    [
        "{{ 1 / 0 }}",
        "{{ profile.missing() }}",
        "{{ profile.firstName + 1 }}",
        "{{ [1, 2] | first(3) }}",
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",  # unbounded recursion
    ],
)
def test_render_errors_are_template_errors(source: str) -> None:
    template = compile_template(source)
    with pytest.raises(TemplateError, match="render failed"):
        template.render(SCOPE)


def test_output_size_limit() -> None:
    under = "x" * 1000
    assert len(render("{% for i in range(262) %}" + under + "{% endfor %}")) == 262_000
    with pytest.raises(TemplateError, match="output larger than"):
        render("{% for i in range(263) %}" + "x" * 1000 + "{% endfor %}")
    # counted in UTF-8 bytes: 100 000 three-byte characters are ~293 KiB
    with pytest.raises(TemplateError, match="output larger than"):
        render("{% for i in range(1000) %}" + "€" * 100 + "{% endfor %}")
    assert len(render("{% for i in range(800) %}" + "€" * 100 + "{% endfor %}")) == 80_000
    # a large value coming from the data is caught as well
    with pytest.raises(TemplateError, match="output larger than"):
        render("{{ profile.bio }}", {"profile": {"bio": "y" * (MAX_OUTPUT_BYTES + 1)}})


def test_oversized_repetition_and_power_are_refused() -> None:
    with pytest.raises(TemplateError, match="too large"):
        render("{{ 'x' * 100000000 }}")
    with pytest.raises(TemplateError, match="too large"):
        render("{{ [1] * 100000000 }}")
    with pytest.raises(TemplateError, match="too large"):
        render("{{ 10 ** 100000000 }}")
    assert render("{{ '-' * 3 }}{{ 2 ** 10 }}{{ 2 * 3 }}{{ 2.5 ** 2 }}") == "---102466.25"


# ---------------------------------------------------------------------------- sandbox

_LEAKS = re.compile(
    r"<class|<module|<function|<built-in|<bound method|<method|<cyfunction|__builtins__"
    r"|os\.|posix|subprocess|object at 0x|<frozen|<code|Popen|__import__|TemplateReference\b.*0x",
)

ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self._TemplateReference__context.cycler }}",
    "{{ config }}",
    "{{ config.items() }}",
    "{{ request }}",
    "{{ request.application.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{{ [].__class__.__base__.__subclasses__() }}",
    "{{ {}.__class__ }}",
    "{{ event.__class__ }}",
    "{{ event.__class__.__init__ }}",
    "{{ event['__class__'] }}",
    "{{ event | attr('__class__') }}",
    "{{ profile.orders.__class__.__mro__ }}",
    "{{ journey.items.__self__ }}",
    "{{ range.__self__ }}",
    "{{ dict.__base__.__subclasses__() }}",
    "{{ '{0.__class__}'.format(event) }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ ''.format_map.__self__ }}",
    "{{ (1).__class__ }}",
    "{{ profile.firstName.upper.__globals__ }}",
    "{{ event.pop('_id') }}",
    "{{ profile.items.append(1) }}",
    "{{ event.update({'a': 1}) }}",
    "{% set x = event.setdefault('a', 1) %}",
    "{% for x in range(100000000) %}{% endfor %}",
    "{% for x in range(10, 1000000000) %}{{ x }}{% endfor %}",
    "{{ range(100000000) | list }}",
    "{{ cycler('a', 'b').next() }}",
    "{{ joiner() }}",
    "{{ namespace(a=1) }}",
    "{{ lipsum() }}",
    "{{ self.__dict__ }}",
    "{{ self }}",
    "{{ undefined_thing.__class__ }}",
    "{{ profile.missing.__class__.__init__.__globals__ }}",
    "{% import 'os' as os %}{{ os }}",
    "{% include '/etc/passwd' %}",
    "{% extends 'base.html' %}",
]


@pytest.mark.parametrize("source", ESCAPES)
@pytest.mark.parametrize("html", [False, True])
def test_sandbox_escapes_fail_or_render_nothing_sensitive(source: str, html: bool) -> None:
    try:
        template = compile_template(source, html=html)
        output = template.render(SCOPE)
    except TemplateError as err:
        assert not _LEAKS.search(str(err)), str(err)
        return
    assert not _LEAKS.search(output), output
    assert "root:" not in output and "uid=" not in output


def test_sandbox_leaves_the_scope_untouched() -> None:
    scope: dict[str, Any] = {"event": {"a": 1}, "profile": {"items": [1]}}
    for source in (
        "{{ event.pop('a') }}",
        "{{ profile['items'].append(2) }}",
        "{{ event.update({'b': 2}) }}",
        "{{ event.clear() }}",
    ):
        try:
            compile_template(source).render(scope)
        except TemplateError:
            pass
    assert scope == {"event": {"a": 1}, "profile": {"items": [1]}}


@pytest.mark.parametrize("name", ["cycler", "joiner", "namespace", "lipsum"])
def test_object_globals_are_removed(name: str) -> None:
    assert render("{{ " + name + " }}") == ""
    with pytest.raises(TemplateError):
        render("{{ " + name + "() }}")


def test_ranges_are_capped() -> None:
    with pytest.raises(TemplateError, match="Range too big"):
        render("{% for x in range(100000000) %}{% endfor %}")
    assert render("{% for x in range(3) %}{{ x }}{% endfor %}") == "012"


def test_mapping_keys_win_over_dict_methods() -> None:
    assert render("{{ profile.items | join(',') }}") == "a,b"
    assert render("{{ journey.items() | list | length }}") == "3"  # no key `items`: the method
    assert render("{{ d.keys }}", {"d": {"keys": "k", "values": "v"}}) == "k"


def test_templates_pickle_by_source() -> None:
    template = pickle.loads(pickle.dumps(compile_template("<i>{{ event.note }}</i>", html=True)))
    assert template.html is True
    assert template.render(SCOPE) == "<i>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</i>"
