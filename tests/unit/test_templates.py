from __future__ import annotations

import pytest

from workflow_engine.engine.templates import render, render_condition
from workflow_engine.errors import TemplateError

CONTEXT = {
    "input": {"name": "Ann", "n": 3, "flag": False, "items": [1, 2]},
    "steps": {"greet": {"output": {"message": "hi"}}},
}


def test_single_expression_keeps_its_json_type() -> None:
    assert render("{{ input }}", CONTEXT) == CONTEXT["input"]
    assert render("{{ input.n + 1 }}", CONTEXT) == 4
    assert render("{{ input.items }}", CONTEXT) == [1, 2]
    assert render("{{ input.flag }}", CONTEXT) is False


def test_mixed_strings_render_to_text() -> None:
    assert render("Hello {{ input.name }}", CONTEXT) == "Hello Ann"
    assert render("{{ input.n }}{{ input.n }}", CONTEXT) == "33"


def test_nested_structures_render_every_string() -> None:
    value = {"a": ["{{ steps.greet.output.message }}", 5], "b": {"c": "x {{ input.n }}"}}
    assert render(value, CONTEXT) == {"a": ["hi", 5], "b": {"c": "x 3"}}


def test_plain_strings_are_left_alone() -> None:
    assert render("no template } here {", CONTEXT) == "no template } here {"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ input.__class__ }}",
        "{{ input.name.__class__.__base__.__subclasses__() }}",
        "{{ missing }}",
        "{{ input.nope.deeper }}",
        "{{ 'a' * 10000000 }}",
        "{{ 2 ** 100000 }}",
        "{% for i in range(10000) %}{% for j in range(10000) %}{{ i.real }}{% endfor %}"
        "{% endfor %}",
        "{{ unclosed",
    ],
)
def test_unsafe_or_broken_templates_raise_template_error(source: str) -> None:
    with pytest.raises(TemplateError):
        render(source, CONTEXT)


def test_mutation_is_refused() -> None:
    with pytest.raises(TemplateError):
        render("{{ input.items.append(3) }}", CONTEXT)
    assert CONTEXT["input"]["items"] == [1, 2]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (None, True),
        (True, True),
        (False, False),
        ("{{ input.flag }}", False),
        ("{{ input.n > 2 }}", True),
        ("{{ input.name }}", True),
        ("false", False),
        ("{{ input.n }} and more", True),
    ],
)
def test_conditions(condition: str | bool | None, expected: bool) -> None:
    assert render_condition(condition, CONTEXT) is expected
