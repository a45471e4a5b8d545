"""Who may do what: roles, the permissions routes declare, and who is asking (a `Principal`).

Pure: no I/O. The API declares a `Permission` on every `/api` route (api/permissions.py); a
key's `Role` grants a set of them (`GRANTS`); the `trigger` role's `execute` is limited to the
workflows listed on its key.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from workflow_engine.ids import looks_like_id

KEY_PREFIX = "wfe_"
"""Every named key starts with it: a bearer value without it is never looked up."""
SHOWN_CHARS = 8
"""Characters of the secret kept (after `wfe_`) to tell keys apart in lists; not enough to use."""
BOOTSTRAP_ACTOR = "API_TOKEN"
"""The actor name of the bootstrap admin token (`API_TOKEN` or DATA_DIR/api-token)."""
ANONYMOUS_ACTOR = "anonymous"
"""The actor name when AUTH_DISABLED is set."""
SYSTEM_ACTOR = "system"
"""The actor of changes the engine makes on its own (`serve --apply`)."""
CLI_ACTOR = "cli"
"""The actor of `workflow-engine keys ...` (it works on the database directly)."""


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    TRIGGER = "trigger"


class Permission(StrEnum):
    """What a route needs. `public`: no key at all (health, readiness)."""

    PUBLIC = "public"
    SIGNED = "signed"
    """No key: the route authenticates each call by a secret of its own (a signed webhook's,
    `POST /api/hooks/{path}`); an API key alone gets nothing there. No role grants it."""
    READ = "read"
    """Every GET: workflows, executions, queues, step types, the audit of what is shown."""
    EXECUTE = "execute"
    """Start an execution of a workflow (`trigger` keys: only their workflows)."""
    OPERATE = "operate"
    """Cancel, re-run, fire a trigger, approve or reject an approval step."""
    ADMIN = "admin"
    """Change workflows and triggers, manage keys, read the audit log."""


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission) - {Permission.SIGNED},
    Role.OPERATOR: frozenset(
        {Permission.PUBLIC, Permission.READ, Permission.EXECUTE, Permission.OPERATE}
    ),
    Role.VIEWER: frozenset({Permission.PUBLIC, Permission.READ}),
    # A machine that starts runs: it reads nothing (not even the executions it started).
    Role.TRIGGER: frozenset({Permission.PUBLIC, Permission.EXECUTE}),
}


@dataclass(frozen=True)
class Actor:
    """Who made a change, as the audit log records it."""

    name: str
    key_id: str | None = None


SYSTEM = Actor(SYSTEM_ACTOR)
CLI = Actor(CLI_ACTOR)


@dataclass(frozen=True)
class Principal:
    """Who a request (or a socket, or a page) is: a named key, the bootstrap token, or anyone
    when authentication is disabled."""

    name: str
    role: Role
    key_id: str | None = None
    workflows: frozenset[str] | None = None
    """The workflow ids a `trigger` key may execute; None for every other role."""

    @property
    def actor(self) -> Actor:
        return Actor(self.name, self.key_id)

    def can(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]

    def can_execute(self, workflow_id: str) -> bool:
        """Whether it may start `workflow_id` (an id, not a name)."""
        if not self.can(Permission.EXECUTE):
            return False
        return self.workflows is None or workflow_id in self.workflows


BOOTSTRAP = Principal(BOOTSTRAP_ACTOR, Role.ADMIN)
ANONYMOUS = Principal(ANONYMOUS_ACTOR, Role.ADMIN)


# --- key material --------------------------------------------------------------------------------


def new_key() -> str:
    """A new clear key: `wfe_` and 43 URL-safe characters (256 random bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    """What is stored and looked up: the key's SHA-256, in hex. The keys are random, so no salt
    or slow hash is needed: nobody can guess one from its digest."""
    return hashlib.sha256(key.encode()).hexdigest()


def shown_prefix(key: str) -> str:
    """`wfe_AbCd1234`: enough to recognise a key in a list, too little to use it."""
    return key[: len(KEY_PREFIX) + SHOWN_CHARS]


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX) and 20 <= len(value) <= 200


KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,99}$")
"""A key's name: letters, digits and `_ . @ : -`, at most 100 characters."""


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a key, or None."""
    if not KEY_NAME.fullmatch(name):
        return (
            "a key's name is 1 to 100 letters, digits or '_.@:-', starting with a letter or digit"
        )
    if looks_like_id(name):
        return "a key's name may not look like an id (36 hex digits and dashes)"
    if name.lower() in (BOOTSTRAP_ACTOR.lower(), ANONYMOUS_ACTOR, SYSTEM_ACTOR, CLI_ACTOR):
        return f"{name!r} is reserved for the audit log"
    return None
