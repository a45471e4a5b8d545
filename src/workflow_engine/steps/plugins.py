"""Step types from outside the project, so `serve` and `workers` run them without a custom launcher.

Two ways in, one contract:

- **Entry points.** An installed distribution declares, in the group `workflow_engine.steps`, one
  entry point per step type. It names a `StepType` subclass (created with no arguments) or a
  `StepType` instance, and the entry point's name is the step type's `name`::

      [project.entry-points."workflow_engine.steps"]
      shout = "acme_steps:ShoutStep"

  Its source (`GET /api/step-types`) is the distribution's name.
- **`STEP_MODULES`** (comma-separated module names, importable: installed or on `PYTHONPATH`).
  Each module lists what it offers in a module-level `STEP_TYPES` list (or tuple) of `StepType`
  subclasses or instances. A list and not "every subclass the module defines": a module often
  defines bases or imports other step types it does not mean to offer. Its source is the module.

Every step type needs a `name` (a letter, then letters, digits, `_`, `.`, `-`; at most 64) that no
built-in or other plugin uses, and a `config_model` subclassing `StepConfig`. All of this is
checked when `serve` or `workers` starts (`bootstrap.build`): the first problem found is a
`ConfigurationError` of one line saying which module or entry point and why, which the CLI prints
(no traceback) before exiting 2.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from workflow_engine.errors import ConfigurationError
from workflow_engine.steps.base import StepConfig, StepType
from workflow_engine.steps.registry import StepRegistry, default_registry

GROUP = "workflow_engine.steps"
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_BUILTINS = "the built-in step types"


@dataclass(frozen=True)
class _Origin:
    source: str
    """What `GET /api/step-types` shows: a distribution's or a module's name."""
    label: str
    """Where it came from, in an error message."""
    entry_point: str | None = None
    """The entry point's name, which must be the step type's."""


def load_registry(step_modules: Sequence[str] = ()) -> StepRegistry:
    """The built-in step types, then those of the `workflow_engine.steps` entry points, then
    those listed by the `step_modules`; raises ConfigurationError on the first problem."""
    registry = default_registry()
    found: dict[str, str] = dict.fromkeys(registry.names(), _BUILTINS)
    for origin, candidate in _candidates(step_modules):
        step_type = _checked(candidate, origin)
        if step_type.name in found:
            raise ConfigurationError(
                f"step type {step_type.name!r} is defined twice: by {found[step_type.name]} "
                f"and by {origin.label}; rename one of them"
            )
        found[step_type.name] = origin.label
        registry.register(step_type, source=origin.source)
    return registry


def _candidates(step_modules: Sequence[str]) -> Iterator[tuple[_Origin, object]]:
    # Sorted so the same installation always loads (and reports problems) in the same order.
    for ep in sorted(entry_points(group=GROUP), key=lambda ep: (_distribution(ep), ep.name)):
        origin = _Origin(
            source=_distribution(ep),
            label=f"entry point {ep.name!r} ({ep.value}) of distribution {_distribution(ep)!r}",
            entry_point=ep.name,
        )
        try:
            loaded = ep.load()
        except Exception as exc:
            raise ConfigurationError(f"{origin.label}: cannot load it: {_why(exc)}") from exc
        yield origin, loaded
    for name in step_modules:
        yield from _module_step_types(name)


def _module_step_types(name: str) -> Iterator[tuple[_Origin, object]]:
    origin = _Origin(source=name, label=f"module {name!r} (STEP_MODULES)")
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        hint = ""
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        if missing and (name == missing or name.startswith(missing + ".")):  # not a dependency
            hint = " (is it installed, or on PYTHONPATH?)"
        raise ConfigurationError(
            f"STEP_MODULES: cannot import {name!r}: {_why(exc)}{hint}"
        ) from exc
    listed = getattr(module, "STEP_TYPES", None)
    if listed is None:
        raise ConfigurationError(
            f"{origin.label} has no STEP_TYPES: add `STEP_TYPES = [YourStep, ...]` to it"
        )
    if not isinstance(listed, list | tuple):
        raise ConfigurationError(
            f"{origin.label}: STEP_TYPES must be a list of StepType subclasses or instances, "
            f"not {_what(listed)}"
        )
    for candidate in listed:
        yield origin, candidate


def _checked(candidate: object, origin: _Origin) -> StepType:
    """`candidate` as a StepType instance, or a ConfigurationError saying what is wrong."""
    if isinstance(candidate, type) and issubclass(candidate, StepType):
        try:
            candidate = candidate()
        except Exception as exc:
            raise ConfigurationError(
                f"{origin.label}: cannot create {_what(candidate)}: {_why(exc)}"
            ) from exc
    if not isinstance(candidate, StepType):
        raise ConfigurationError(
            f"{origin.label}: {_what(candidate)} is not a StepType subclass or instance "
            "(workflow_engine.steps.base.StepType)"
        )
    where = f"{origin.label}: {_what(type(candidate))}"
    name = getattr(candidate, "name", None)
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        problem = "no `name`" if name is None else f"an invalid `name` {name!r}"
        raise ConfigurationError(
            f"{where} has {problem}: a step type's name is a letter followed by letters, digits, "
            "'_', '.' or '-' (64 at most)"
        )
    if origin.entry_point is not None and origin.entry_point != name:
        raise ConfigurationError(
            f"{where} is named {name!r}: the entry point must have its step type's name"
        )
    model = getattr(candidate, "config_model", None)
    if not (isinstance(model, type) and issubclass(model, StepConfig)):
        raise ConfigurationError(
            f"{where}: `config_model` must be a StepConfig subclass "
            f"(workflow_engine.steps.base.StepConfig), not {_what(model)}"
        )
    try:
        model.model_json_schema()  # GET /api/step-types shows it: a failure here, not a 500 there
    except Exception as exc:
        raise ConfigurationError(
            f"{where}: its config_model has no JSON schema: {_why(exc)}"
        ) from exc
    return candidate


def _distribution(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else "?"


def _what(value: object) -> str:
    """A short description of `value` for an error message (never a long repr)."""
    if isinstance(value, type):
        return f"class {value.__module__}.{value.__qualname__}"
    if value is None:
        return "None"
    qualname = getattr(value, "__qualname__", None)
    if isinstance(qualname, str):
        return f"{type(value).__name__} {getattr(value, '__module__', '?')}.{qualname}"
    return f"a {type(value).__name__}"


def _why(exc: BaseException) -> str:
    """The exception on one line, capped (a module's error must not flood the terminal)."""
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
