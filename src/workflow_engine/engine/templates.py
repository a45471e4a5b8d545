"""Sandboxed rendering of `{{ ... }}` templates in step configs.

A string that is exactly one `{{ expression }}` keeps the expression's JSON type; any other string
containing template syntax renders to a string. Rendering runs in Jinja2's immutable sandbox with
StrictUndefined (a missing name is an error, not an empty string), and within bounds whatever the
template does:

- time: every loop iteration, attribute, item and call checks the render's deadline;
- memory: sizes are checked *before* the work that would allocate them (string widths given to
  `center`, `%`, `format` and friends, repetition with `*`, concatenation, joins, replacements,
  big integers), and the output is counted as it is written;
- the event loop: `render_async` renders inline for a short slice (almost every template ends
  within it); a template still running then is rendered again in a worker thread with the full
  budget, so the API and the other executions go on meanwhile.

Compiled templates are cached by their source: a workflow's templates are compiled once.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, meta, nodes
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.filters import FILTERS
from jinja2.sandbox import ImmutableSandboxedEnvironment

from workflow_engine.errors import TemplateError

MAX_OUTPUT_CHARS = 1_000_000
"""The longest string a template may produce or build along the way."""
MAX_RENDER_SECONDS = 1.0
INLINE_SLICE_SECONDS = 0.02
"""How long a render may hold the event loop before it moves to a worker thread."""
MAX_RANGE = 10_000
MAX_INT_BITS = 13_000
"""About 3,900 decimal digits: larger integers cannot be stored as JSON."""
_CHECK_EVERY = 256
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)
_WIDTHS = re.compile(r"\d+")


class _SliceOver(Exception):
    """The inline slice is used up: render again in a thread (internal)."""


@dataclass
class _Budget:
    deadline: float
    slice_only: bool
    ticks: int = 0
    written: int = 0

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            if self.slice_only:
                raise _SliceOver()
            raise TemplateError(f"template took longer than {MAX_RENDER_SECONDS:g} s to render")

    def tick(self) -> None:
        self.ticks += 1
        if self.ticks % _CHECK_EVERY == 0:
            self.check()


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "template_budget", default=None
)


def _current() -> _Budget:
    budget = _budget.get()
    if budget is None:  # a template run outside `render` (tests): the full budget from now
        budget = _Budget(time.monotonic() + MAX_RENDER_SECONDS, slice_only=False)
        _budget.set(budget)
    return budget


def _too_large(what: str = "template result") -> TemplateError:
    return TemplateError(f"{what} too large (over {MAX_OUTPUT_CHARS:,} characters)")


def _size(value: Any, limit: int = MAX_OUTPUT_CHARS) -> int:
    """About how many characters `value` holds, counting no further than just past `limit`
    (so a list of a thousand references to one big string is measured in two steps)."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, Mapping):
        items: Iterable[Any] = (part for pair in value.items() for part in pair)
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        return 8
    total = 2
    for item in items:
        total += _size(item, limit - total) + 1
        if total > limit:
            break
    return total


def _check_width(*numbers: Any) -> None:
    for number in numbers:
        if isinstance(number, int) and number > MAX_OUTPUT_CHARS:
            raise _too_large()


def _check_format(spec: Any) -> None:
    """Widths and precisions in a `%` or `format` string (`%0600000000d`, `{:>9999999}`)."""
    if isinstance(spec, str):
        _check_width(*(int(digits) for digits in _WIDTHS.findall(spec) if len(digits) < 12))
        if any(len(digits) >= 12 for digits in _WIDTHS.findall(spec)):
            raise _too_large()


def _check_int(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _too_big_number()
    return value


class _LimitedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus the time and size checks described in the module docstring."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _current().tick()
        if operator == "**":
            _check_power(left, right)
        elif operator == "*":
            _check_repeat(left, right)
        elif operator == "+" and isinstance(left, str | list | tuple) and type(left) is type(right):
            if _size(left) + _size(right) > MAX_OUTPUT_CHARS:
                raise _too_large()
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _current().tick()
        # Data first: `output.items` is the key "items", not the dict method.
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        if isinstance(obj, str) and attribute in ("format", "format_map"):
            _check_format(obj)  # the sandbox hands out its own wrapper of str.format
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _current().tick()
        return super().getitem(obj, argument)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _current().check()
        _check_method_call(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return _guarded(super()._parse(source, name, filename))


def _check_power(base: Any, exponent: Any) -> None:
    if not isinstance(exponent, int | float):
        return
    if abs(exponent) > 1000:
        raise TemplateError("exponent too large in template")
    big = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    if big and base.bit_length() * exponent > MAX_INT_BITS:
        raise _too_big_number()


def _check_repeat(left: Any, right: Any) -> None:
    """`'a' * n`, `[x] * n`, and the product of two big integers."""
    for seq, times in ((left, right), (right, left)):
        if not (isinstance(seq, str | list | tuple) and isinstance(times, int) and times > 0):
            continue
        if _size(seq, MAX_OUTPUT_CHARS // times + 1) * times > MAX_OUTPUT_CHARS:
            raise _too_large()
    both_ints = isinstance(left, int) and isinstance(right, int)
    if both_ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise _too_big_number()


def _too_big_number() -> TemplateError:
    return TemplateError("number too large in template (over about 3,900 digits)")


_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def _check_method_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Size checks for the string methods a template may call (`'a'.ljust(10**9)`)."""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if not isinstance(owner, str):
        return
    if name in _WIDTH_METHODS:
        _check_width(*args, *kwargs.values())
    elif name == "format":
        _check_format(owner)
        if len(owner) + sum(_size(a) for a in (*args, *kwargs.values())) > MAX_OUTPUT_CHARS:
            raise _too_large()
    elif name == "join" and args:
        _check_join(owner, args[0])
    elif name == "replace" and len(args) >= 2:
        _check_replace(owner, args[0], args[1])


def _check_join(separator: Any, items: Any) -> None:
    if isinstance(items, list | tuple):
        size = _size(items) + len(items) * (len(separator) if isinstance(separator, str) else 0)
        if size > MAX_OUTPUT_CHARS:
            raise _too_large()


def _check_replace(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        hits = text.count(old) if old else len(text) + 1
        if len(text) + hits * len(new) > MAX_OUTPUT_CHARS:
            raise _too_large()


# --- loops and output, guarded in the template's syntax tree ---------------------------------


def _loop_guard(iterable: Any) -> Iterator[Any]:
    """Every iteration of a template's `for` loop counts against the render's deadline."""
    budget = _current()
    for item in iterable:
        budget.tick()
        yield item


def _written(value: Any) -> Any:
    """What a template writes, counted as it is written (a loop cannot build a huge output)."""
    budget = _current()
    budget.written += _size(value) if isinstance(value, str) else 8
    if budget.written > MAX_OUTPUT_CHARS:
        raise _too_large("template output")
    budget.tick()
    return value


def _concat(*parts: Any) -> str:
    """`a ~ b`, with its size checked first."""
    if sum(_size(str(p) if not isinstance(p, str) else p) for p in parts) > MAX_OUTPUT_CHARS:
        raise _too_large()
    return "".join(str(part) for part in parts)


def _safe_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise TemplateError(f"range too big in template (at most {MAX_RANGE:,} numbers)")
    return numbers


def _guarded(template: nodes.Template) -> nodes.Template:
    """Wrap every loop's iterable, every output and every `~` in the checks above."""

    def call(name: str, *args: nodes.Node) -> nodes.Call:
        return nodes.Call(nodes.Name(name, "load"), list(args), [], None, None)

    for loop in template.find_all(nodes.For):
        loop.iter = call("__loop_guard__", loop.iter)
    for output in template.find_all(nodes.Output):
        output.nodes = [
            node if isinstance(node, nodes.TemplateData) else call("__written__", node)
            for node in output.nodes
        ]
    for concat in template.find_all(nodes.Concat):
        concat.nodes = [call("__concat__", *concat.nodes)]
    template.set_environment(_env)
    return template


def _width_filter(name: str, *positions: int) -> Callable[..., Any]:
    original = FILTERS[name]

    def checked(*args: Any, **kwargs: Any) -> Any:
        _check_width(*(args[i] for i in positions if i < len(args)), kwargs.get("width"))
        return original(*args, **kwargs)

    return checked


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> Any:
    _check_format(value)
    return FILTERS["format"](value, *args, **kwargs)


def _join_filter(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
    _check_join(d, list(value) if not isinstance(value, list | tuple | str) else value)
    return FILTERS["join"](eval_ctx, value, d, attribute)


def _replace_filter(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> Any:
    _check_replace(str(s), str(old), str(new))
    return FILTERS["replace"](eval_ctx, s, old, new, count)


# The filters' own flags (pass_eval_context) must survive the wrapping.
_join_filter.jinja_pass_arg = FILTERS["join"].jinja_pass_arg  # type: ignore[attr-defined]
_replace_filter.jinja_pass_arg = FILTERS["replace"].jinja_pass_arg  # type: ignore[attr-defined]

_env = _LimitedEnvironment(undefined=StrictUndefined, autoescape=False)
_env.globals.pop("lipsum", None)
_env.globals.update(
    range=_safe_range, __loop_guard__=_loop_guard, __written__=_written, __concat__=_concat
)
_env.filters.update(
    center=_width_filter("center", 1),
    indent=_width_filter("indent", 1),
    wordwrap=_width_filter("wordwrap", 2),
    format=_format_filter,
    join=_join_filter,
    replace=_replace_filter,
)


@lru_cache(maxsize=2048)
def _compiled_expression(expression: str) -> Any:
    return _env.compile_expression(expression, undefined_to_none=False)


@lru_cache(maxsize=2048)
def _compiled_template(source: str) -> Any:
    return _env.from_string(source)


# --- rendering ----------------------------------------------------------------------------------


def has_template(value: str) -> bool:
    return "{{" in value or "{%" in value


def names_used(source: str) -> set[str]:
    """The context names a template reads (`{{ secrets.KEY|upper }}` -> {"secrets"}); a template
    that does not parse reads nothing (rendering it will say what is wrong)."""
    try:
        return set(meta.find_undeclared_variables(_env.parse(source)))
    except JinjaTemplateError:
        return set()


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string in a JSON-like structure; raises TemplateError on any problem. Holds
    the calling thread up to MAX_RENDER_SECONDS: on the event loop, use `render_async`."""
    return _render_within(value, context, MAX_RENDER_SECONDS, slice_only=False)


async def render_async(value: Any, context: Mapping[str, Any]) -> Any:
    """`render`, holding the event loop for INLINE_SLICE_SECONDS at most."""
    try:
        return _render_within(value, context, INLINE_SLICE_SECONDS, slice_only=True)
    except _SliceOver:
        return await asyncio.to_thread(render, value, context)


def render_condition(value: str | bool | None, context: Mapping[str, Any]) -> bool:
    """Evaluate a step's `if`: None means run; otherwise the rendered value's truthiness.

    The strings "false", "0", "no", "off", "none", "null" and "" count as false, so that a
    condition rendered into text (`"{{ x }} and more"`) still reads naturally.
    """
    if value is None:
        return True
    return _truthy(render(value, context))


async def render_condition_async(value: str | bool | None, context: Mapping[str, Any]) -> bool:
    """`render_condition` on the event loop (see `render_async`)."""
    if value is None or isinstance(value, bool):
        return value is None or value
    return _truthy(await render_async(value, context))


def _truthy(result: Any) -> bool:
    if isinstance(result, str):
        return result.strip().lower() not in {"", "false", "0", "no", "off", "none", "null"}
    return bool(result)


def _render_within(
    value: Any, context: Mapping[str, Any], seconds: float, *, slice_only: bool
) -> Any:
    token = _budget.set(_Budget(time.monotonic() + seconds, slice_only))
    try:
        return _render(value, context)
    finally:
        _budget.reset(token)


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
            expression = _compiled_expression(single.group("expr").strip())
            return _to_json(expression(**context))
        text = _compiled_template(source).render(**context)
    except (TemplateError, _SliceOver):
        raise
    except JinjaTemplateError as exc:
        raise TemplateError(f"template error in {_preview(source)}: {exc}") from exc
    except MemoryError as exc:
        raise TemplateError(f"template error in {_preview(source)}: out of memory") from exc
    except Exception as exc:
        # Whatever a template raises (even Jinja's own NameError on `{{ 'nan' | float }}`, or a
        # RecursionError) is the template's fault: retrying cannot help.
        raise TemplateError(f"template error in {_preview(source)}: {exc}") from exc
    if len(text) > MAX_OUTPUT_CHARS:
        raise _too_large()
    return text


def _to_json(value: Any) -> Any:
    """Make an expression's result JSON-safe (tuples to lists, unknown objects to text)."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return _check_int(value)
    if isinstance(value, str):
        if len(value) > MAX_OUTPUT_CHARS:
            raise _too_large()
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | range):
        return [_to_json(item) for item in value]
    if hasattr(value, "_fail_with_undefined_error"):
        value._fail_with_undefined_error()
    if callable(value):
        raise TemplateError(f"template expression gave a function, not a value: {value!r}")
    return str(value)


def _preview(source: str) -> str:
    return repr(source if len(source) <= 80 else source[:77] + "...")
