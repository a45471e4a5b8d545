"""Signed webhooks: which calls prove the hook's secret (domain/signatures.py), and which
trigger documents are accepted (domain/definition.py)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from pydantic import ValidationError

from workflow_engine.domain.definition import WorkflowDefinition, secret_name
from workflow_engine.domain.signatures import authentic, signature

SECRET = "s3cret-hook-value"
BODY = b'{"lead": 42}'
GOOD = "sha256=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()


def test_the_signature_is_the_hex_hmac_sha256_of_the_raw_body() -> None:
    assert signature(SECRET, BODY) == GOOD


@pytest.mark.parametrize(
    ("signed", "bearer", "ok"),
    [
        (GOOD, None, True),
        (GOOD.upper().replace("SHA256=", "sha256="), None, True),  # hex in capitals
        (f"  {GOOD} ", None, True),
        (None, SECRET, True),
        ("sha256=" + "0" * 64, SECRET, True),  # a good bearer is enough
        (None, None, False),
        ("sha256=" + "0" * 64, None, False),
        (GOOD.replace("sha256=", "sha1="), None, False),
        (signature(SECRET, BODY + b" "), None, False),  # another body
        (signature("other", BODY), None, False),  # another secret
        ("sha256=é", None, False),  # not ASCII: refused, not an error
        (None, SECRET + "x", False),
        (None, SECRET[:-1], False),
        (None, "", False),
    ],
)
def test_authentic(signed: str | None, bearer: str | None, ok: bool) -> None:
    assert authentic(SECRET, BODY, signed=signed, bearer=bearer) is ok


def _document(*triggers: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "hooked",
        "steps": [{"key": "t", "type": "transform", "config": {"output": 1}}],
        "triggers": list(triggers),
    }


def test_trigger_documents_accepted() -> None:
    definition = WorkflowDefinition.model_validate(
        _document(
            {"type": "webhook"},
            {"type": "webhook", "path": "new-lead_2", "secret": "{{ secrets.HOOK }}"},
            {"type": "webhook", "path": "other", "secret": "{{secrets.OTHER_1}}"},
            {"type": "event", "event": "lead.created"},
        )
    )
    plain, signed, _, event = definition.triggers or []
    assert plain.model_dump(exclude_none=True) == {"type": "webhook", "enabled": True}
    assert secret_name(getattr(signed, "secret", "")) == "HOOK"
    assert secret_name("{{secrets.OTHER_1}}") == "OTHER_1" and secret_name("HOOK") is None
    assert event.model_dump(exclude_none=True) == {
        "type": "event",
        "event": "lead.created",
        "enabled": True,
    }


@pytest.mark.parametrize(
    ("trigger", "says"),
    [
        ({"type": "webhook", "path": "x"}, "needs both 'path' and 'secret'"),
        ({"type": "webhook", "secret": "{{ secrets.HOOK }}"}, "needs both 'path' and 'secret'"),
        ({"type": "webhook", "path": "x", "secret": "plain-text"}, "must be a reference"),
        ({"type": "webhook", "path": "x", "secret": "{{ secrets.A }}x"}, "must be a reference"),
        ({"type": "webhook", "path": "x", "secret": "{{ input.a }}"}, "must be a reference"),
        ({"type": "webhook", "path": "a/b", "secret": "{{ secrets.A }}"}, "pattern"),
        ({"type": "webhook", "path": "-a", "secret": "{{ secrets.A }}"}, "pattern"),
        ({"type": "webhook", "path": "a" * 101, "secret": "{{ secrets.A }}"}, "pattern"),
        ({"type": "webhook", "path": "", "secret": "{{ secrets.A }}"}, "pattern"),
        ({"type": "event"}, "event"),
        ({"type": "event", "event": ""}, "event"),
        ({"type": "event", "event": "x", "key": "k"}, "key"),
    ],
)
def test_trigger_documents_refused(trigger: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        WorkflowDefinition.model_validate(_document(trigger))


def test_a_path_used_twice_in_one_document_is_refused() -> None:
    hook = {"type": "webhook", "path": "same", "secret": "{{ secrets.A }}"}
    with pytest.raises(ValidationError, match="webhook path 'same' is used twice"):
        WorkflowDefinition.model_validate(_document(hook, {**hook, "secret": "{{ secrets.B }}"}))
