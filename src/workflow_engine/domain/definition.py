"""The workflow document (DESIGN.md section 4): pydantic models, unknown fields rejected."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from workflow_engine.domain.json_schema import check_schema
from workflow_engine.ids import looks_like_id

KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
MAX_STEPS = 200
MAX_TIMEZONE_LENGTH = 64
"""IANA names are at most 32 characters ("America/Argentina/ComodRivadavia"); a longer one is
no timezone, and looking it up would ask the file system about a path too long to open."""
MAX_CRON_LENGTH = 200


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StepDefinition(_Strict):
    key: str = Field(pattern=KEY_PATTERN, description="Unique in the workflow; `steps.<key>`")
    name: str | None = Field(default=None, max_length=200)
    type: str = Field(min_length=1, max_length=64)
    if_: str | bool | None = Field(default=None, alias="if")
    config: dict[str, Any] = Field(default_factory=dict)
    retryMaxAttempts: int | None = Field(default=None, ge=1, le=100)
    retryBackoffMs: int | None = Field(default=None, ge=0, le=3_600_000)
    timeoutMs: int | None = Field(default=None, ge=1, le=86_400_000)
    needs: list[str] | None = Field(
        default=None,
        max_length=MAX_STEPS,
        description="Keys of the steps this one waits for; absent: the step before it in the list",
    )

    @property
    def display_name(self) -> str:
        return self.name or self.key


class Concurrency(_Strict):
    """Caps the running executions of the workflow per key (DESIGN.md section 14, flow
    control): `{"key": "{{ input.tenantId }}", "limit": 2}`."""

    key: str = Field(min_length=1, max_length=500, description="Template over `input`")
    limit: int = Field(ge=1, le=100_000, description="Running executions per key at most")


class Debounce(_Strict):
    """A burst of calls of a trigger with the same rendered key starts one execution, with the
    last call's input, `periodMs` after the last call (a trailing debounce)."""

    key: str = Field(default="", max_length=500, description="Template over `input` (the data)")
    periodMs: int = Field(ge=1, le=86_400_000)


class ScheduleTrigger(_Strict):
    type: Literal["schedule"]
    cron: str = Field(max_length=MAX_CRON_LENGTH)
    timezone: str = Field(default="UTC", max_length=MAX_TIMEZONE_LENGTH)
    enabled: bool = True
    input: dict[str, Any] = Field(default_factory=dict)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        validate_cron(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_tz(cls, value: str) -> str:
        validate_timezone(value)
        return value


class ManualTrigger(_Strict):
    type: Literal["manual"]
    enabled: bool = True


HOOK_PATH_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$"
"""A signed webhook's path under `/api/hooks/`: letters, digits, `_` and `-`, 1 to 100."""
SECRET_REFERENCE = re.compile(r"^\{\{\s*secrets\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
"""`{{ secrets.NAME }}`: a webhook's secret is named, never written in the document."""


def secret_name(reference: str) -> str | None:
    """NAME of a `{{ secrets.NAME }}` reference; None for anything else."""
    found = SECRET_REFERENCE.fullmatch(reference)
    return found.group(1) if found else None


class WebhookTrigger(_Strict):
    """Called with `POST /api/triggers/{id}/fire` (an operator's key), or, with a `path` and
    a `secret`, with `POST /api/hooks/{path}` signed by that secret (no key)."""

    type: Literal["webhook"]
    enabled: bool = True
    path: str | None = Field(
        default=None,
        pattern=HOOK_PATH_PATTERN,
        description="Serves POST /api/hooks/{path}; unique among live workflows",
    )
    secret: str | None = Field(
        default=None,
        max_length=200,
        description="`{{ secrets.NAME }}`: the secret that signs or bears each call",
    )
    debounce: Debounce | None = None

    @field_validator("secret")
    @classmethod
    def _secret_is_a_reference(cls, value: str | None) -> str | None:
        if value is not None and not SECRET_REFERENCE.fullmatch(value):
            raise ValueError(
                "a webhook's secret must be a reference '{{ secrets.NAME }}' (set "
                "WORKFLOW_SECRET_NAME where serve runs): a secret written in the document "
                "would be stored and shown"
            )
        return value

    @model_validator(mode="after")
    def _path_and_secret_together(self) -> WebhookTrigger:
        if (self.path is None) != (self.secret is None):
            raise ValueError(
                "a signed webhook needs both 'path' and 'secret' (a path without a secret "
                "would be open to anyone)"
            )
        return self


class EventTrigger(_Strict):
    """Starts the workflow for every `POST /api/events` of that name (input = its `data`)."""

    type: Literal["event"]
    event: str = Field(min_length=1, max_length=200, description="The event's name")
    enabled: bool = True
    debounce: Debounce | None = None


TriggerDefinition = Annotated[
    ScheduleTrigger | ManualTrigger | WebhookTrigger | EventTrigger, Field(discriminator="type")
]


class WorkflowDefinition(_Strict):
    """A whole workflow document; saving one creates a new immutable version."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    retryMaxAttempts: int = Field(default=3, ge=1, le=100)
    retryBackoffMs: int = Field(default=1000, ge=0, le=3_600_000)
    timeoutMs: int | None = Field(default=None, ge=1, le=86_400_000)
    rateLimitMaxConcurrent: int | None = Field(default=None, ge=1)
    rateLimitPerMinute: int | None = Field(default=None, ge=1)
    concurrency: Concurrency | None = None
    tokenBudget: int | None = Field(
        default=None,
        ge=1,
        description="Most tokens an execution's llm steps may use: past it, the execution "
        "fails (not retried)",
    )
    parallelism: int = Field(
        default=10, ge=1, le=1000, description="How many steps may run at the same time"
    )
    output: Any = Field(
        default=None, description="Template of the execution's output; absent: the last step's"
    )
    steps: list[StepDefinition] = Field(min_length=1, max_length=MAX_STEPS)
    triggers: list[TriggerDefinition] | None = None
    onFailure: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Id or name of a workflow started (once) when an execution of this one "
        "fails, with {executionId, workflowId, workflowName, error, failedStep} as input",
    )
    inputSchema: dict[str, Any] | None = Field(
        default=None,
        description="A JSON Schema for the input; an llm step offering this workflow as a tool "
        "tells the model its parameters with it, and checks the model's arguments against it",
    )

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("name must not be blank")
        if looks_like_id(value):
            raise ValueError("name must not look like an id")
        return value

    @field_validator("inputSchema")
    @classmethod
    def _valid_input_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_schema(value)

    @model_validator(mode="after")
    def _unique_keys(self) -> WorkflowDefinition:
        seen: set[str] = set()
        for step in self.steps:
            if step.key in seen:
                raise ValueError(f"step key {step.key!r} is used twice; keys must be unique")
            seen.add(step.key)
        check_graph(self.steps)
        paths = [t.path for t in self.triggers or () if isinstance(t, WebhookTrigger) and t.path]
        for path in paths:
            if paths.count(path) > 1:
                raise ValueError(f"webhook path {path!r} is used twice; paths must be unique")
        return self

    def document(self) -> dict[str, Any]:
        """The definition as stored in `workflow_versions.definition`."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def check_graph(steps: list[StepDefinition]) -> None:
    """Raise ValueError naming the step whose `needs` is wrong: an unknown key, itself, a key
    named twice, or a cycle."""
    keys = {step.key for step in steps}
    for step in steps:
        for need in step.needs or ():
            if need == step.key:
                raise ValueError(f"step {step.key!r} needs itself")
            if need not in keys:
                raise ValueError(f"step {step.key!r} needs {need!r}, which is not a step key")
        if step.needs is not None and len(set(step.needs)) != len(step.needs):
            raise ValueError(f"step {step.key!r} names a step twice in its needs")
    cycle = find_cycle(steps)
    if cycle:
        path = " -> ".join(repr(key) for key in cycle)
        raise ValueError(
            f"step {cycle[0]!r} is part of a cycle of needs: {path} (each needs the next)"
        )


def step_dependencies(steps: list[StepDefinition]) -> dict[str, tuple[str, ...]]:
    """Each step's dependencies: its `needs`, or the step before it in the list."""
    deps: dict[str, tuple[str, ...]] = {}
    for position, step in enumerate(steps):
        if step.needs is not None:
            deps[step.key] = tuple(step.needs)
        else:
            deps[step.key] = (steps[position - 1].key,) if position else ()
    return deps


def find_cycle(steps: list[StepDefinition]) -> list[str] | None:
    """A cycle of dependencies as a path of keys (first == last), or None."""
    deps = step_dependencies(steps)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in deps:
        if state.get(start):
            continue
        path: list[str] = [start]
        stack = [iter(deps[start])]
        state[start] = 1
        while stack:
            need = next(stack[-1], None)
            if need is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            if need not in deps:
                continue
            if state.get(need) == 1:
                return [*path[path.index(need) :], need]
            if not state.get(need):
                state[need] = 1
                path.append(need)
                stack.append(iter(deps[need]))
    return None


def _cron(expression: str, start: datetime) -> croniter:
    # Six fields put the seconds first, as BullMQ (cron-parser) reads them.
    return croniter(expression, start, second_at_beginning=len(expression.split()) == 6)


def validate_cron(expression: str) -> None:
    """Raise ValueError unless `expression` is a cron expression of 5 fields (minute first) or 6
    (second first, as in BullMQ) that fires at some date."""
    fields = len(expression.split())
    if fields not in (5, 6) or not croniter.is_valid(expression, second_at_beginning=fields == 6):
        raise ValueError(
            f"invalid cron expression {expression!r} (expected 5 fields, or 6 with seconds first)"
        )
    try:
        # Valid fields can still name no date at all (`0 0 30 2 *`): such a trigger never fires.
        _cron(expression, datetime(2000, 1, 1)).get_next(datetime)
    except ValueError as exc:
        raise ValueError(f"cron expression {expression!r} never fires") from exc


def validate_timezone(name: str) -> ZoneInfo:
    """Return the zone, or raise ValueError naming the bad timezone."""
    shown = name if len(name) <= 40 else f"{name[:40]}..."
    if len(name) > MAX_TIMEZONE_LENGTH:
        raise ValueError(
            f"unknown timezone {shown!r}: longer than {MAX_TIMEZONE_LENGTH} characters"
        )
    try:
        return ZoneInfo(name)
    # OSError: a name the file system cannot look up (a directory, a component too long).
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown timezone {shown!r}") from exc


def next_fire_time(cron: str, timezone: str, after: datetime) -> datetime:
    """The first slot of `cron` (read in `timezone`) strictly after `after` (aware)."""
    zone = validate_timezone(timezone)
    local = after.astimezone(zone)
    result: datetime = _cron(cron, local).get_next(datetime)
    return result
