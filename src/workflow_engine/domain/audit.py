"""The audit log's vocabulary: what can be recorded, about what, and how a line reads.

Pure: storage/audit.py stores entries, the API returns them with `summary`, the UI shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class Target(StrEnum):
    WORKFLOW = "workflow"
    EXECUTION = "execution"
    KEY = "key"


class Action(StrEnum):
    WORKFLOW_CREATED = "workflow.created"
    WORKFLOW_SAVED = "workflow.saved"
    WORKFLOW_ARCHIVED = "workflow.archived"
    TRIGGER_ADDED = "trigger.added"
    TRIGGER_UPDATED = "trigger.updated"
    TRIGGER_DELETED = "trigger.deleted"
    EXECUTION_CANCELLED = "execution.cancelled"
    EXECUTION_RERUN = "execution.rerun"
    STEP_APPROVED = "step.approved"
    STEP_REJECTED = "step.rejected"
    KEY_CREATED = "key.created"
    KEY_REVOKED = "key.revoked"


def _saved(detail: Mapping[str, Any]) -> str:
    version = detail.get("version")
    if version is not None:
        return f"saved as version {version}"
    return "triggers replaced"


_PHRASES: dict[str, Any] = {
    Action.WORKFLOW_CREATED: "created",
    Action.WORKFLOW_SAVED: _saved,
    Action.WORKFLOW_ARCHIVED: "archived",
    Action.TRIGGER_ADDED: lambda d: f"{d.get('type', '')} trigger added".strip(),
    Action.TRIGGER_UPDATED: lambda d: f"{d.get('type', '')} trigger changed".strip(),
    Action.TRIGGER_DELETED: lambda d: f"{d.get('type', '')} trigger deleted".strip(),
    Action.EXECUTION_CANCELLED: "cancelled",
    Action.EXECUTION_RERUN: lambda d: f"re-run as {d.get('newExecutionId', '?')}",
    Action.STEP_APPROVED: lambda d: f"step {d.get('stepKey', '?')} approved",
    Action.STEP_REJECTED: lambda d: f"step {d.get('stepKey', '?')} rejected",
    Action.KEY_CREATED: lambda d: f"created with role {d.get('role', '?')}",
    Action.KEY_REVOKED: "revoked",
}


def summary(action: str, actor: str, detail: Mapping[str, Any] | None) -> str:
    """`cancelled by ops-key`, `saved as version 3 by API_TOKEN`: one line a person reads."""
    phrase = _PHRASES.get(action, action)
    text = phrase(detail or {}) if callable(phrase) else phrase
    return f"{text} by {actor}"
