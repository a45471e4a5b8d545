"""Events: `POST /api/events` resumes the `wait` steps waiting for its name and key and starts
the workflows whose `event` triggers listen to its name."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body

from workflow_engine.api.deps import EngineDep
from workflow_engine.api.errors import WRITE
from workflow_engine.api.permissions import OPERATE
from workflow_engine.api.routes import api_router
from workflow_engine.api.schemas import EventPosted, EventRequest

router = api_router("events")

EventBody = Annotated[
    EventRequest,
    Body(
        openapi_examples={
            "paid": {
                "summary": "An order was paid",
                "value": {"name": "order.paid", "key": "42", "data": {"amount": 12.5}},
            }
        }
    ),
]


@router.post(
    "/events",
    status_code=202,
    response_model=EventPosted,
    responses=WRITE,
    dependencies=[OPERATE],
)
async def post_event(engine: EngineDep, body: EventBody) -> Any:
    """Resume every execution whose `wait` step waits for this `name` and `key` (once each,
    however often the event is posted at once); its output is `data`. An event that meets no
    wait is kept EVENT_RETENTION_MS for a wait that starts later (which consumes it). Also
    starts every workflow with an `event` trigger for this `name` (input: `data`), listed in
    `started`."""
    posted = await engine.service.post_event(body.name, body.key, body.data)
    return {
        "eventId": posted.event_id,
        "matched": len(posted.resumed),
        "started": [
            {"executionId": s.execution_id, "workflowId": s.workflow_id, "triggerId": s.trigger_id}
            for s in posted.started
        ],
    }
