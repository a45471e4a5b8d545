"""Sandboxed rendering of `{{ ... }}` templates in step configs.

A string that is exactly one `{{ expression }}` keeps the expression's JSON type; any other string
containing template syntax renders to a string. Rendering runs in Jinja2's immutable sandbox with
StrictUndefined (a missing name is an error, not an empty string) and with limits on output size,
sequence repetition and time, so a template cannot reach Python internals or stall a worker.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from workflow_engine.errors import TemplateError

MAX_OUTPUT_CHARS = 1_000_000
MAX_RENDER_SECONDS = 1.0
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)
_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("template_deadline", default=0.0)


class _LimitedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus a time budget checked on every attribute access and call."""

    intercepted_binops = frozenset({"*", "**"})
    MAX_RANGE = 10_000

    def _check_deadline(self) -> None:
        deadline = _deadline.get()
        if deadline and time.monotonic() > deadline:
            raise TemplateError(f"template took longer than {MAX_RENDER_SECONDS:g} s to render")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 1000:
            raise TemplateError("exponent too large in template")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if sized and len(seq) * times > MAX_OUTPUT_CHARS:
                    raise TemplateError("template result too large")
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        self._check_deadline()
        # Data first: `output.items` is the key "items", not the dict method.
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self._check_deadline()
        return super().getitem(obj, argument)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        self._check_deadline()
        return super().call(__context, __obj, *args, **kwargs)


_env = _LimitedEnvironment(undefined=StrictUndefined, autoescape=False)


def has_template(value: str) -> bool:
    return "{{" in value or "{%" in value


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string in a JSON-like structure; raises TemplateError on any problem."""
    token = _deadline.set(time.monotonic() + MAX_RENDER_SECONDS)
    try:
        return _render(value, context)
    finally:
        _deadline.reset(token)


def render_condition(value: str | bool | None, context: Mapping[str, Any]) -> bool:
    """Evaluate a step's `if`: None means run; otherwise the rendered value's truthiness.

    The strings "false", "0", "no", "off", "none", "null" and "" count as false, so that a
    condition rendered into text (`"{{ x }} and more"`) still reads naturally.
    """
    if value is None:
        return True
    result = render(value, context)
    if isinstance(result, str):
        return result.strip().lower() not in {"", "false", "0", "no", "off", "none", "null"}
    return bool(result)


def _render(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _render_string(value, context) if has_template(value) else value
    if isinstance(value, dict):
        return {key: _render(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, context) for item in value]
    return value


def _render_string(source: str, context: Mapping[str, Any]) -> Any:
    try:
        single = _SINGLE_EXPRESSION.match(source)
        if single:
            expression = _env.compile_expression(
                single.group("expr").strip(), undefined_to_none=False
            )
            return _to_json(expression(**context))
        text = _env.from_string(source).render(**context)
    except TemplateError:
        raise
    except JinjaTemplateError as exc:
        raise TemplateError(f"template error in {_preview(source)}: {exc}") from exc
    except Exception as exc:
        # Whatever a template raises (even Jinja's own NameError on `{{ 'nan' | float }}`, or a
        # RecursionError) is the template's fault: retrying cannot help.
        raise TemplateError(f"template error in {_preview(source)}: {exc}") from exc
    if len(text) > MAX_OUTPUT_CHARS:
        raise TemplateError("template result too large")
    return text


def _to_json(value: Any) -> Any:
    """Make an expression's result JSON-safe (tuples to lists, unknown objects to text)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        if len(value) > MAX_OUTPUT_CHARS:
            raise TemplateError("template result too large")
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(item) for item in value]
    if hasattr(value, "_fail_with_undefined_error"):
        value._fail_with_undefined_error()
    if callable(value):
        raise TemplateError(f"template expression gave a function, not a value: {value!r}")
    return str(value)


def _preview(source: str) -> str:
    return repr(source if len(source) <= 80 else source[:77] + "...")
