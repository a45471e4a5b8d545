"""Rows to the API's camelCase JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from workflow_engine.domain.audit import summary as audit_summary
from workflow_engine.engine.debounce import Held
from workflow_engine.storage.db import Row
from workflow_engine.storage.stats import ExecutionStats, Tally


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def workflow(
    row: Row, *, version: Row | None = None, triggers: list[Row] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "activeVersionId": row["active_version_id"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
        "archivedAt": iso(row["archived_at"]),
    }
    if version is not None:
        body["version"] = version["version"]
        body["definition"] = version["definition"]
    if triggers is not None:
        body["triggers"] = [trigger(t) for t in triggers]
    return body


def version(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "workflowId": row["workflow_id"],
        "version": row["version"],
        "definition": row["definition"],
        "createdAt": iso(row["created_at"]),
    }


def trigger(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "workflowId": row["workflow_id"],
        "type": row["type"],
        "enabled": row["enabled"],
        **row["config"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def execution(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "workflowId": row["workflow_id"],
        "workflowVersionId": row["workflow_version_id"],
        "triggerId": row["trigger_id"],
        "status": row["status"],
        "input": row["input"],
        "output": row["output"],
        "error": row["error"],
        "startedAt": iso(row["started_at"]),
        "completedAt": iso(row["completed_at"]),
        "durationMs": row["duration_ms"],
        "retryCount": row["retry_count"],
        "createdAt": iso(row["created_at"]),
        "rerunOfId": row["rerun_of_id"],
        "parentExecutionId": row["parent_execution_id"],
        "parentStepKey": row["parent_step_key"],
        "cancelRequestedAt": iso(row["cancel_requested_at"]),
        "triggeredBy": row["triggered_by"],
        "wakeAt": iso(row["wake_at"]) if row["status"] == "waiting" else None,
        "priority": row["priority"],
        "concurrencyKey": row["concurrency_key"],
    }


def debounced(held: Held) -> dict[str, Any]:
    """The answer to a call a debounced trigger kept (no execution yet)."""
    return {
        "debounced": True,
        "triggerId": held.trigger_id,
        "key": held.key,
        "fireAt": iso(held.fire_at),
    }


def wait(row: Row) -> dict[str, Any]:
    event = {"name": row["event_name"], "key": row["event_key"]} if row["kind"] == "event" else None
    return {
        "stepKey": row["step_key"],
        "type": row["kind"],
        "event": event,
        "until": iso(row["until"]),
        "onTimeout": row["on_timeout"],
        "approval": (
            {"message": row["message"], "onReject": row["on_reject"]}
            if row["kind"] == "approval"
            else None
        ),
    }


def step(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "stepId": row["step_id"],
        "stepKey": row["step_key"],
        "position": row["position"],
        "status": row["status"],
        "input": row["input"],
        "output": row["output"],
        "error": row["error"],
        "startedAt": iso(row["started_at"]),
        "completedAt": iso(row["completed_at"]),
        "durationMs": row["duration_ms"],
        "retryCount": row["retry_count"],
    }


def log(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "level": row["level"],
        "message": row["message"],
        "metadata": row["metadata"],
        "timestamp": iso(row["timestamp"]),
    }


def key(row: Row) -> dict[str, Any]:
    """An API key without its secret (only the digest is stored, and it is not shown)."""
    return {
        "id": row["id"],
        "name": row["name"],
        "role": row["role"],
        "prefix": row["prefix"],
        "workflows": row["workflows"],
        "createdAt": iso(row["created_at"]),
        "lastUsedAt": iso(row["last_used_at"]),
        "revokedAt": iso(row["revoked_at"]),
    }


def audit(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "at": iso(row["at"]),
        "actor": row["actor"],
        "actorKeyId": row["actor_key_id"],
        "action": row["action"],
        "targetType": row["target_type"],
        "targetId": row["target_id"],
        "detail": row["detail"],
        "summary": audit_summary(row["action"], row["actor"], row["detail"]),
    }


def counts(tally: Tally) -> dict[str, Any]:
    return {
        "completed": tally.completed,
        "failed": tally.failed,
        "cancelled": tally.cancelled,
        "finished": tally.finished,
        "failureRate": tally.failure_rate,
        "p50Ms": tally.p50_ms,
        "p95Ms": tally.p95_ms,
    }


def stats(
    found: ExecutionStats, *, workflow_id: str | None, names: dict[str, str]
) -> dict[str, Any]:
    by_rate = sorted(
        found.workflows.items(),
        key=lambda item: (-(item[1].failure_rate or 0), -item[1].finished, names.get(item[0], "")),
    )
    return {
        "window": found.window.name,
        "workflowId": workflow_id,
        "start": iso(found.start),
        "end": iso(found.end),
        "bucketSeconds": int(found.window.bucket.total_seconds()),
        "buckets": [{"start": iso(start), **counts(tally)} for start, tally in found.buckets],
        "totals": counts(found.total),
        "workflows": [
            {"workflowId": wf, "name": names.get(wf), **counts(tally)} for wf, tally in by_rate
        ],
    }
