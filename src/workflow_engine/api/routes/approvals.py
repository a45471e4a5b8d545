"""Approvals: a person approves or rejects an `approval` step of a waiting execution."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Path

from workflow_engine.api.deps import EngineDep, ExecutionId
from workflow_engine.api.errors import WRITE, responses
from workflow_engine.api.permissions import OPERATE, Caller
from workflow_engine.api.routes import api_router
from workflow_engine.api.schemas import ApprovalDecision, DecisionRequest
from workflow_engine.domain.access import Principal
from workflow_engine.engine.service import EngineService

router = api_router("executions")

StepKey = Annotated[
    str,
    Path(min_length=1, max_length=80, pattern=r"^[^\x00-\x1f\x7f]+$", description="The step's key"),
]
DecisionBody = Annotated[
    DecisionRequest | None,
    Body(
        openapi_examples={
            "comment": {"summary": "With a comment", "value": {"comment": "refund is fine"}},
        }
    ),
]
DECIDED = {**WRITE, **responses(404, 409)}


async def _decide(
    service: EngineService,
    execution_id: str,
    step_key: str,
    approved: bool,
    body: DecisionRequest | None,
    caller: Principal,
) -> dict[str, Any]:
    comment = body.comment if body is not None else None
    decision = await service.decide(
        execution_id, step_key, approved=approved, comment=comment or None, actor=caller.actor
    )
    return {"executionId": execution_id, "stepKey": step_key, **decision}


@router.post(
    "/executions/{execution_id}/steps/{step_key}/approve",
    response_model=ApprovalDecision,
    responses=DECIDED,
    dependencies=[OPERATE],
)
async def approve_step(
    engine: EngineDep,
    execution_id: ExecutionId,
    step_key: StepKey,
    caller: Caller,
    body: DecisionBody = None,
) -> Any:
    """Approve the approval step `step_key`: the execution goes on, the step's output is
    `{"approved": true, "by", "comment", "at"}`. Once only: a second decision is a 409, as is a
    step that is not an approval waiting for a decision."""
    return await _decide(engine.service, execution_id, step_key, True, body, caller)


@router.post(
    "/executions/{execution_id}/steps/{step_key}/reject",
    response_model=ApprovalDecision,
    responses=DECIDED,
    dependencies=[OPERATE],
)
async def reject_step(
    engine: EngineDep,
    execution_id: ExecutionId,
    step_key: StepKey,
    caller: Caller,
    body: DecisionBody = None,
) -> Any:
    """Reject the approval step `step_key`: the step fails (not retried), which fails the
    execution, unless the step says `"onReject": "continue"` (then its output is
    `{"approved": false, ...}` and the execution goes on). Once only, as approve."""
    return await _decide(engine.service, execution_id, step_key, False, body, caller)
