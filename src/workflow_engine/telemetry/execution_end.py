"""What the telemetry hooks are told when an execution reaches its final status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ExecutionEnd:
    """An execution's end, as error tracking and tracing see it: names, ids, status and the
    error text (already stored, secrets masked), never the execution's input or output."""

    execution_id: str
    workflow_id: str
    workflow_name: str
    version: int | None
    status: str
    """`completed`, `failed` or `cancelled`."""
    started_at: datetime
    """The execution's first start (across deliveries)."""
    error: str | None = None
    failed_step: str | None = None
    """The key of the step whose failure failed the execution, if one did."""
    retries: int = 0
