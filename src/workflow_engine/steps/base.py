"""The interface every step type implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import httpx
from pydantic import BaseModel, ConfigDict

from workflow_engine.records import record

if TYPE_CHECKING:
    from workflow_engine.steps.llm import LlmServer

LogFn = Callable[[str, str, dict[str, Any] | None], Awaitable[None]]
"""log(level, message, metadata): writes an execution_logs row and emits a `log` event."""

RunChild = Callable[[str, Any], Awaitable[Any]]
"""run_child(workflow id or name, input): runs a child execution of that workflow (linked to this
step, started once per try however often the parent is delivered) and returns its output; raises
`StepError` if the child fails or is cancelled."""

ProgressFn = Callable[[Any, str | None], Awaitable[None]]
"""save_progress(progress, log message): stores what the step has done so far on its row
(durably, before it returns) and logs the message if one is given; the next try or delivery of
the step finds it in `StepContext.progress`."""


@dataclass(frozen=True)
class ToolWorkflow:
    """A workflow offered to a model as a tool (steps/llm_tools.py)."""

    name: str
    description: str | None
    input_schema: dict[str, Any] | None


@dataclass(frozen=True)
class ChildResult:
    """How a child execution ended."""

    execution_id: str
    status: str
    """completed, failed or cancelled."""
    output: Any = None
    error: str | None = None


class ToolRunner(Protocol):
    """Child executions for a step that calls workflows as tools (engine/children.py)."""

    async def describe(self, workflow: str) -> ToolWorkflow:
        """The live workflow of that id or name; NonRetryableStepError if there is none."""
        ...

    async def run(self, workflow: str, input: Any, call_key: str) -> ChildResult:
        """Run a child execution of `workflow` (linked to this step) and wait for its end. One
        child per `call_key` and step, whatever the tries and deliveries: a second call with
        the same key joins the child the first one started."""
        ...


DeltaFn = Callable[[str], Awaitable[None]]
"""delta(text): a piece of the step's output as it is made (an llm step's tokens): sent to the
execution's subscribers as `step_delta` events, compacted (engine/deltas.py)."""


class LlmMeter(Protocol):
    """What an llm step calls around each model request (engine/llm_limits.py): the token
    budget, LLM_LIMITS (waiting for room) and the usage stored."""

    async def before(self, model: str, messages: Any, max_tokens: int | None) -> Any:
        """Before sending: returns a ticket for `after`. Raises when over the token budget."""

    async def after(self, ticket: Any, usage: dict[str, Any] | None) -> None:
        """Once answered (`usage` as the output reports it) or failed (None)."""


class StepConfig(BaseModel):
    """Base for a step type's config model: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")


@record
class StepContext:
    """What a step sees of the engine while it runs one attempt."""

    execution_id: str
    workflow_id: str
    step_key: str
    attempt: int
    http: httpx.AsyncClient
    log: LogFn
    run_child: RunChild | None = None
    traceparent: str | None = None
    """The W3C `traceparent` of this try's span while tracing is on (OTEL_EXPORTER_OTLP_ENDPOINT),
    for a step that calls other services to send along (the http step does); None otherwise."""
    delta: DeltaFn | None = None
    llm: LlmServer | None = None
    """The operator's OpenAI-compatible server (LLM_BASE_URL, LLM_API_KEY), for the llm step."""
    llm_meter: LlmMeter | None = None
    progress: Any = None
    """What earlier tries and deliveries of this step saved with `save_progress` (None: nothing)."""
    save_progress: ProgressFn | None = None
    tools: ToolRunner | None = None

    @property
    def idempotency_key(self) -> str:
        """Stable across attempts and redeliveries: `{executionId}:{stepKey}`."""
        return f"{self.execution_id}:{self.step_key}"


class StepType(ABC):
    """A kind of step (`transform`, `http`, ...). Instances are stateless and shared."""

    name: ClassVar[str]
    config_model: ClassVar[type[StepConfig]]
    secret_fields: ClassVar[frozenset[str]] = frozenset()
    """Top-level config fields whose templates may read `secrets` (an http step's `headers`).
    Everywhere else `secrets` is refused when the workflow is saved, and renders masked."""
    masked_fields: ClassVar[frozenset[str]] = frozenset()
    """Top-level config fields stored masked whatever they hold (an llm step's `apiKey`, even
    written out in the workflow rather than read from a secret)."""
    pure: ClassVar[bool] = False
    """Its run has no effect outside this process and gives the same output from the same
    config: run again after a crash, nothing is done twice. Its start need not be durable
    before it runs (engine/journal.py `start_step`)."""

    def validate_config(self, config: dict[str, Any]) -> StepConfig:
        """Validate a rendered config; raises pydantic.ValidationError."""
        return self.config_model.model_validate(config)

    @abstractmethod
    async def run(self, config: Any, ctx: StepContext) -> Any:
        """Run one attempt and return the step's output (JSON-serialisable).

        Raise `StepError` (retryable) or `NonRetryableStepError`; any other exception counts as a
        retryable failure with its message.
        """
