"""Checks of a workflow document that need the engine: known step types, a map's inner step, and
where secrets may be used. Each failure is an InvalidDefinition naming the step and the place.

Secrets are usable only in the config fields a step type declares for them (`secret_fields`: an
http step's `headers`). Anywhere else a template could copy a secret, transformed, into what is
stored or shown (`{{ secrets.KEY|upper }}` in an output), where no redaction by value can find it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from workflow_engine.domain.definition import WorkflowDefinition
from workflow_engine.engine import templates
from workflow_engine.engine.attempts import validation_message
from workflow_engine.errors import InvalidDefinition
from workflow_engine.steps.base import StepType
from workflow_engine.steps.map import MapConfig
from workflow_engine.steps.registry import StepRegistry


def check_definition(definition: WorkflowDefinition, registry: StepRegistry) -> None:
    for step in definition.steps:
        step_type = _known(registry, step.type, f"step {step.key!r}")
        _check_secrets(f"step {step.key!r}", step_type, step.config, step.if_)
        if step.type != "map":
            continue
        try:
            inner = MapConfig.model_validate(step.config).step
        except ValidationError as exc:
            raise InvalidDefinition(f"step {step.key!r}: {validation_message('map', exc)}") from exc
        if inner.type == "map":
            raise InvalidDefinition(f"step {step.key!r}: a map step cannot map a map step")
        if inner.type == "wait":
            raise InvalidDefinition(f"step {step.key!r}: a map step cannot map a wait step")
        if inner.type == "approval":
            raise InvalidDefinition(f"step {step.key!r}: a map step cannot map an approval step")
        inner_type = _known(registry, inner.type, f"step {step.key!r}: its inner step")
        _check_secrets(f"step {step.key!r}: its inner step", inner_type, inner.config, inner.if_)
    if definition.output is not None and list(_secret_uses(definition.output, "output")):
        raise InvalidDefinition(
            "the workflow's output uses secrets; secrets may only be used in an http step's headers"
        )


def _known(registry: StepRegistry, name: str, where: str) -> StepType:
    step_type = registry.get(name)
    if step_type is None:
        known = ", ".join(registry.names())
        raise InvalidDefinition(f"{where}: unknown step type {name!r} (known: {known})")
    return step_type


def _check_secrets(where: str, step_type: StepType, config: dict[str, Any], condition: Any) -> None:
    allowed = step_type.secret_fields
    places = [
        path
        for field, value in config.items()
        if field not in allowed
        for path in _secret_uses(value, f"config.{field}")
    ]
    places += list(_secret_uses(condition, "if"))
    if places:
        fields = ", ".join(f"config.{field}" for field in sorted(allowed))
        usable = f"only in its {fields}" if allowed else "nowhere in a step of this type"
        raise InvalidDefinition(
            f"{where} uses secrets in {places[0]}; a {step_type.name} step may use secrets "
            f"{usable} (an http step: in its headers)"
        )


def _secret_uses(value: Any, path: str) -> Iterator[str]:
    """The paths of the strings in `value` whose templates read `secrets`."""
    if isinstance(value, str):
        if templates.has_template(value) and "secrets" in templates.names_used(value):
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _secret_uses(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_uses(item, f"{path}[{index}]")
