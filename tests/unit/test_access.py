"""Roles, key material, the session cookie and the audit lines: pure rules, no I/O."""

from __future__ import annotations

import pytest

from workflow_engine.api.session import make_session, read_session, session_valid
from workflow_engine.domain.access import (
    BOOTSTRAP,
    Permission,
    Principal,
    Role,
    key_digest,
    looks_like_key,
    name_problem,
    new_key,
    shown_prefix,
)
from workflow_engine.domain.audit import Action, summary


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.ADMIN, {"read", "execute", "operate", "admin"}),
        (Role.OPERATOR, {"read", "execute", "operate"}),
        (Role.VIEWER, {"read"}),
        (Role.TRIGGER, {"execute"}),
    ],
)
def test_each_role_grants_exactly_its_permissions(role: Role, allowed: set[str]) -> None:
    principal = Principal("k", role)
    granted = {p.value for p in Permission if p is not Permission.PUBLIC and principal.can(p)}
    assert granted == allowed
    assert principal.can(Permission.PUBLIC)


def test_a_trigger_key_executes_only_its_workflows() -> None:
    trigger = Principal("ci", Role.TRIGGER, key_id="k1", workflows=frozenset({"wf-a"}))
    assert trigger.can_execute("wf-a")
    assert not trigger.can_execute("wf-b")
    assert Principal("ops", Role.OPERATOR).can_execute("wf-b")
    assert not Principal("eyes", Role.VIEWER).can_execute("wf-a")
    assert trigger.actor.name == "ci" and trigger.actor.key_id == "k1"
    assert BOOTSTRAP.actor.name == "API_TOKEN" and BOOTSTRAP.actor.key_id is None


def test_keys_are_random_and_only_their_digest_and_prefix_are_kept() -> None:
    first, second = new_key(), new_key()
    assert first != second
    assert first.startswith("wfe_") and len(first) == 4 + 43
    assert looks_like_key(first) and not looks_like_key("test-token")
    digest = key_digest(first)
    assert len(digest) == 64 and first not in digest and digest == key_digest(first)
    assert shown_prefix(first) == first[:12]


@pytest.mark.parametrize(
    "name", ["", "-dash-first", "has space", "x" * 101, "API_TOKEN", "api_token", "system", "cli"]
)
def test_names_a_key_cannot_have(name: str) -> None:
    assert name_problem(name)


def test_a_key_name_may_not_look_like_an_id() -> None:
    assert name_problem("01a22bf8-e83f-7e35-b592-c7a5e7da6f21")
    assert name_problem("ops-key") is None
    assert name_problem("ci@deploy.example:prod") is None


def test_a_session_names_its_key_and_cannot_be_moved_to_another() -> None:
    bootstrap = make_session("server-token", now=1_000_000)
    assert read_session("server-token", bootstrap, now=1_000_010) is not None
    assert read_session("server-token", bootstrap, now=1_000_010).key_id is None  # type: ignore[union-attr]
    named = make_session("server-token", key_id="key-1", now=1_000_000)
    session = read_session("server-token", named, now=1_000_010)
    assert session is not None and session.key_id == "key-1"
    # Changing the key id, or dropping it, breaks the signature.
    assert read_session("server-token", named.replace("key-1", "key-2"), now=1_000_010) is None
    assert read_session("server-token", named.rsplit(".", 1)[0], now=1_000_010) is None
    assert not session_valid("other-token", named, now=1_000_010)
    assert read_session("server-token", "1000000.é.x", now=1_000_010) is None


def test_audit_lines_read_as_sentences() -> None:
    assert summary(Action.EXECUTION_CANCELLED, "ops-key", {"was": "running"}) == (
        "cancelled by ops-key"
    )
    assert summary(Action.WORKFLOW_SAVED, "API_TOKEN", {"version": 3}) == (
        "saved as version 3 by API_TOKEN"
    )
    assert summary(Action.TRIGGER_ADDED, "a", {"type": "schedule"}) == "schedule trigger added by a"
    assert summary(Action.EXECUTION_RERUN, "b", {"newExecutionId": "x"}) == "re-run as x by b"
    assert summary("something.new", "c", None) == "something.new by c"
