"""What the API answers, as pydantic models, so `/openapi.json` documents every response.

The routes build their bodies with `serialize.py` (rows to camelCase dicts); these models
describe those dicts field for field, in the same order, so validating a body through its model
changes no byte of it. The request bodies are `domain/definition.py`'s models (a workflow
document, a trigger) and `ExecuteRequest` and `KeyRequest` here.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from workflow_engine.domain.access import Role
from workflow_engine.domain.priority import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY
from workflow_engine.domain.status import ExecutionStatus, StepStatus
from workflow_engine.steps.approval import MAX_COMMENT

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
"""ISO 8601 in UTC, e.g. `2026-01-02T03:04:05.678000Z`."""

Json = Annotated[Any, Field(description="Any JSON value")]

Document = Annotated[
    dict[str, Any],
    # The document as saved (`WorkflowDefinition.document()`: a valid body for
    # `POST /api/workflows`), returned as stored and never validated again, so that a version
    # saved under older rules can always be read.
    Field(
        title="SavedDocument",
        description="The workflow document as saved: a WorkflowDefinition",
    ),
]

# A key a body has or leaves out, never null: `X | Absent = None` documents it as an optional X.
Absent = SkipJsonSchema[None]


class _Response(BaseModel):
    # Extra keys pass through unchanged: a body is never cut short by its model.
    model_config = ConfigDict(extra="allow")


# --- requests ------------------------------------------------------------------------------------


class ExecuteRequest(BaseModel):
    """Body of `POST /api/workflows/{id}/execute` and `POST /api/triggers/{id}/fire`."""

    model_config = ConfigDict(extra="forbid")

    input: Json = Field(
        default=None, description="What the steps' templates read as `input` (default `{}`)"
    )
    priority: int = Field(
        default=DEFAULT_PRIORITY,
        ge=MIN_PRIORITY,
        le=MAX_PRIORITY,
        description="1..10: of the executions waiting for a worker, the higher start first",
    )

    @model_validator(mode="before")
    @classmethod
    def _null_is_no_body(cls, data: Any) -> Any:
        # A `null` body has always meant what no body means.
        return {} if data is None else data


# Shown in /docs and sent by API fuzzers first: the document of DESIGN.md section 4.
WORKFLOW_EXAMPLE: dict[str, Any] = {
    "name": "enrich-lead",
    "description": "optional",
    "retryMaxAttempts": 3,
    "retryBackoffMs": 1000,
    "timeoutMs": 300000,
    "steps": [
        {
            "key": "greet",
            "name": "Greet",
            "type": "transform",
            "config": {"output": {"message": "Hello {{ input.name }}", "raw": "{{ input }}"}},
        },
        {"key": "pause", "type": "delay", "config": {"ms": 100}},
        {
            "key": "call",
            "type": "http",
            "if": "{{ input.call }}",
            "retryMaxAttempts": 5,
            "timeoutMs": 10000,
            "config": {
                "method": "POST",
                "url": "https://api.example.com/x",
                "json": {"m": "{{ steps.greet.output.message }}"},
            },
        },
    ],
    "triggers": [{"type": "schedule", "cron": "*/5 * * * *", "timezone": "Europe/Paris"}],
}
TRIGGER_EXAMPLE: dict[str, Any] = {
    "type": "schedule",
    "cron": "0 9 * * 1-5",
    "timezone": "Europe/Paris",
    "input": {"name": "Ada"},
}
EXECUTE_EXAMPLE: dict[str, Any] = {"input": {"name": "Ada", "call": False}}


def examples(summary: str, value: dict[str, Any]) -> dict[str, Any]:
    """`openapi_examples` of a request body: one example."""
    return {"example": {"summary": summary, "value": value}}


# --- errors --------------------------------------------------------------------------------------


class EventRequest(BaseModel):
    """Body of `POST /api/events`: resumes the `wait` steps waiting for this name and key."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="The event's name (`order.paid`)")
    key: str = Field(
        default="", max_length=200, description="Which one (`42`): a wait's `key` must equal it"
    )
    data: Json = Field(default=None, description="The waiting step's output")


class DecisionRequest(BaseModel):
    """Body of `POST /api/executions/{id}/steps/{stepKey}/approve` (or `/reject`); optional."""

    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(
        default=None, max_length=MAX_COMMENT, description="Why: kept with the decision and shown"
    )


class FieldError(BaseModel):
    loc: str = Field(description="Where, as a dotted path (`steps.1.type`); empty: the body")
    message: str


class ErrorResponse(BaseModel):
    """Every error the API answers (400, 401, 403, 404, 409, 413, 415, 422, 503)."""

    detail: str = Field(description="What is wrong, in a sentence a person can act on")
    errors: list[FieldError] | Absent = Field(
        default=None, description="For invalid values (422): one entry per field; else absent"
    )


# --- audit ---------------------------------------------------------------------------------------


class AuditEntry(_Response):
    """One change and who made it."""

    id: str
    at: Timestamp
    actor: str = Field(
        description="The key's name, `API_TOKEN` (the bootstrap admin token), `anonymous` "
        "(authentication disabled), `system` (`serve --apply`) or `cli` (`workflow-engine keys`)"
    )
    actorKeyId: str | None = Field(description="The named key's id; null for the others")
    action: str = Field(
        description="`workflow.created`, `workflow.saved`, `workflow.archived`, `trigger.added`, "
        "`trigger.updated`, `trigger.deleted`, `execution.cancelled`, `execution.rerun`, "
        "`key.created` or `key.revoked`"
    )
    targetType: str = Field(description="`workflow`, `execution` or `key`")
    targetId: str
    detail: Json
    summary: str = Field(description="The entry as a person reads it: `cancelled by ops-key`")


class AuditList(_Response):
    entries: list[AuditEntry] = Field(description="Newest first")
    nextCursor: str | None = Field(description="Pass as `cursor` for the next page; null: last")


# --- keys ----------------------------------------------------------------------------------------

WorkflowRefs = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]],
    Field(max_length=100),
]


class KeyRequest(BaseModel):
    """Body of `POST /api/keys`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=100,
        description="Unique among live keys; shown in the audit log as who did what",
    )
    role: Role = Field(
        description="`admin`: everything; `operator`: read, execute, cancel, re-run; "
        "`viewer`: read only; `trigger`: execute the listed workflows only"
    )
    workflows: WorkflowRefs | None = Field(
        default=None, description="`trigger` keys only (and required): workflow ids or names"
    )


class ApiKey(_Response):
    """A key as listed: never its secret."""

    id: str
    name: str
    role: Role
    prefix: str = Field(description="The key's first characters, to tell keys apart")
    workflows: list[str] | None = Field(description="`trigger` keys: the workflow ids")
    createdAt: Timestamp
    lastUsedAt: Timestamp | None = Field(description="Recorded at most once a minute")
    revokedAt: Timestamp | None


class CreatedKey(ApiKey):
    key: str = Field(description="The key itself: shown this once, stored only as a digest")


class KeyList(_Response):
    keys: list[ApiKey] = Field(description="Newest first, revoked ones included")


# --- workflows -----------------------------------------------------------------------------------


class Trigger(_Response):
    """A trigger; its type's settings (`cron`, `timezone`, `input` for a schedule) sit beside
    the common fields."""

    id: str
    workflowId: str
    type: str = Field(description="`schedule`, `manual`, `webhook` or `event`")
    enabled: bool
    event: str | Absent = Field(default=None, description="event: the event's name")
    path: str | Absent = Field(
        default=None, description="webhook: served at POST /api/hooks/{path}"
    )
    secret: str | Absent = Field(
        default=None, description="webhook: `{{ secrets.NAME }}`, never the secret itself"
    )
    cron: str | Absent = Field(default=None, description="schedule: cron, 5 or 6 fields")
    timezone: str | Absent = Field(default=None, description="schedule: IANA timezone")
    input: dict[str, Any] | Absent = Field(default=None, description="schedule: the input")
    debounce: dict[str, Any] | Absent = Field(
        default=None,
        description='event, webhook: `{"key", "periodMs"}`: a burst of calls with one key '
        "starts one execution, with the last call's input, periodMs after the last call",
    )
    createdAt: Timestamp
    updatedAt: Timestamp


class TriggerList(_Response):
    triggers: list[Trigger]


class WorkflowSummary(_Response):
    id: str
    name: str
    description: str | None
    activeVersionId: str | None
    createdAt: Timestamp
    updatedAt: Timestamp
    archivedAt: Timestamp | None


class Workflow(WorkflowSummary):
    """A workflow with its active version's document and its triggers."""

    version: int | Absent = Field(default=None, description="Number of the active version")
    definition: Document | Absent = Field(default=None, description="The active version's document")
    triggers: list[Trigger] | Absent = None
    audit: list[AuditEntry] | Absent = Field(
        default=None, description="GET only: who changed it, oldest first"
    )


class WorkflowList(_Response):
    workflows: list[WorkflowSummary] = Field(description="Newest first")
    nextCursor: str | None = Field(description="Pass as `cursor` for the next page; null: last")


class WorkflowVersion(_Response):
    id: str
    workflowId: str
    version: int
    definition: Document
    createdAt: Timestamp


class VersionList(_Response):
    versions: list[WorkflowVersion]


# --- executions ----------------------------------------------------------------------------------


class ExecutionStarted(_Response):
    """Answer of execute and fire (202): the execution is queued (or, for a repeated
    `Idempotency-Key`, the execution that key started, with its current status)."""

    executionId: str
    status: ExecutionStatus


class RerunStarted(ExecutionStarted):
    rerunOf: str = Field(description="The execution this one re-runs")


class CancelResult(_Response):
    executionId: str
    status: ExecutionStatus = Field(description="`cancelled`, or `running` until its worker stops")


class Execution(_Response):
    id: str
    workflowId: str
    workflowVersionId: str
    triggerId: str | None
    status: ExecutionStatus
    input: Json
    output: Json
    error: str | None
    startedAt: Timestamp | None
    completedAt: Timestamp | None
    durationMs: int | None
    retryCount: int
    createdAt: Timestamp
    rerunOfId: str | None
    parentExecutionId: str | None
    parentStepKey: str | None
    cancelRequestedAt: Timestamp | None
    triggeredBy: str | None = Field(
        description="The key that started it through the API (`API_TOKEN` for the bootstrap "
        "token); null when a schedule, a webhook or a parent execution did"
    )
    wakeAt: Timestamp | None = Field(
        default=None, description="A `waiting` execution: when its timer wakes it (null: none)"
    )
    priority: int = Field(default=DEFAULT_PRIORITY, description="1..10, as started")
    concurrencyKey: str | None = Field(
        default=None,
        description="The workflow's `concurrency.key` rendered from the input (set when it "
        "first starts)",
    )


class ExecutionWait(_Response):
    """What a step of a `waiting` execution waits for."""

    stepKey: str
    type: str = Field(description="`delay` (time), `event` or `approval` (a person)")
    event: dict[str, str] | None = Field(description="`{name, key}` for an event")
    until: Timestamp | None = Field(description="When the delay ends or the wait times out")
    onTimeout: str = Field(description="`fail` or `continue`")
    approval: dict[str, Any] | None = Field(
        default=None,
        description="`{message, onReject}` for an approval step (it waits for a decision)",
    )


class ApprovalDecision(_Response):
    """A decision on an approval step: the step's output, with where it was made."""

    executionId: str
    stepKey: str
    approved: bool
    by: str = Field(description="Who decided: the key's name (`API_TOKEN` for the admin token)")
    comment: str | None
    at: Timestamp


class TriggeredExecution(_Response):
    executionId: str
    workflowId: str
    triggerId: str = Field(description="The `event` trigger that started it")


class EventPosted(_Response):
    eventId: str
    matched: int = Field(description="Waiting executions it resumed (0: kept for a later wait)")
    started: list[TriggeredExecution] = Field(
        description="Executions its `event` triggers started (input: the event's `data`)"
    )


class Debounced(_Response):
    """Answer (202) of a call of a debounced trigger: kept, no execution yet. One execution
    starts `periodMs` after the last call with the same key, with that call's input."""

    debounced: bool
    triggerId: str
    key: str = Field(description="The trigger's `debounce.key`, rendered from this input")
    fireAt: Timestamp = Field(
        description="When the burst starts its execution (if no call follows)"
    )


class HookFinished(_Response):
    """Answer of `POST /api/hooks/{path}?wait=` (200) when the execution ended in time."""

    executionId: str
    status: ExecutionStatus
    output: Json
    error: str | None


class ExecutionStep(_Response):
    id: str
    stepId: str | None
    stepKey: str
    position: int
    status: StepStatus
    input: Json
    output: Json
    error: str | None
    startedAt: Timestamp | None
    completedAt: Timestamp | None
    durationMs: int | None
    retryCount: int


class ExecutionLog(_Response):
    id: str
    level: str = Field(description="`info`, `warn`, `error` or `debug`")
    message: str
    metadata: Json
    timestamp: Timestamp


class TokenUsage(_Response):
    """Tokens the llm steps spent, as their servers reported them, and the model requests that
    spent them (tries that failed afterwards included: those tokens were spent)."""

    promptTokens: int
    completionTokens: int
    totalTokens: int
    requests: int = Field(description="Model requests answered")


class WorkflowUsage(TokenUsage):
    """Over the workflow's executions still stored (retention removes usage with them)."""

    workflowId: str


class ExecutionDetail(Execution):
    """An execution with its steps (a map's items after it), logs and child executions."""

    usage: TokenUsage = Field(description="Token usage of its llm steps")
    steps: list[ExecutionStep]
    waits: list[ExecutionWait] = Field(
        default_factory=list, description="While `waiting`: what it waits for"
    )
    logs: list[ExecutionLog]
    children: list[Execution]
    audit: list[AuditEntry] = Field(description="Who cancelled or re-ran it, oldest first")


class ExecutionList(_Response):
    executions: list[Execution] = Field(description="Newest first")
    nextCursor: str | None = Field(description="Pass as `cursor` for the next page; null: last")


# --- stats ---------------------------------------------------------------------------------------


class StatsCounts(_Response):
    """Executions that reached a final status, by status. The percentiles of `totals` come from
    histograms once part of the window is rolled up (its buckets that ended 10 minutes ago):
    within 1%."""

    completed: int
    failed: int
    cancelled: int
    finished: int = Field(description="completed + failed + cancelled")
    failureRate: float | None = Field(
        description="failed / finished, from 0 to 1; null when none finished"
    )
    p50Ms: float | None = Field(
        description="Median duration (ms) of those with a duration (linear interpolation, as "
        "PostgreSQL's percentile_cont); null when none"
    )
    p95Ms: float | None = Field(description="95th percentile of the durations (ms), likewise")


class StatsBucket(StatsCounts):
    start: Timestamp = Field(description="The bucket holds the executions finished from here on")


class WorkflowStats(StatsCounts):
    workflowId: str
    name: str | None = Field(description="The workflow's name (null if it was deleted)")


class ExecutionStats(_Response):
    """Executions finished in the window, counted by the time they finished."""

    window: str = Field(description="`1h` or `24h`")
    workflowId: str | None = Field(description="The workflow asked for; null: every workflow")
    start: Timestamp
    end: Timestamp = Field(description="The end of the current bucket (just after now)")
    bucketSeconds: int = Field(description="60 for `1h`, 900 for `24h`")
    buckets: list[StatsBucket] = Field(description="Oldest first, every bucket of the window")
    totals: StatsCounts = Field(description="The whole window")
    workflows: list[WorkflowStats] = Field(
        description="Per workflow with executions finished in the window: highest failure rate "
        "first, then most finished"
    )


# --- system --------------------------------------------------------------------------------------


class Health(_Response):
    """The process answers (liveness); `/api/ready` says whether its dependencies do."""

    status: str = Field(description="`ok`")
    mode: str = Field(description="`embedded` or `distributed`")


class Ready(_Response):
    """The database (and Redis, in the distributed mode) answer."""

    status: str = Field(description="`ready`")
    mode: str = Field(description="`embedded` or `distributed`")
    checks: dict[str, str] = Field(description="Each dependency: `ok`")


class QueueCounts(_Response):
    queues: dict[str, dict[str, int]] = Field(
        description="Per queue (`workflow-dispatch`, `workflow-execution`): jobs per state"
    )
