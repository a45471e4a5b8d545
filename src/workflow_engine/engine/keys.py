"""Named API keys: created, listed and revoked (API and CLI), and checked on every request.

A key is checked by its SHA-256 digest (the only thing stored). Checking is on the hot path
(every `POST .../execute`), so a verified key is kept for `cache_ms` (API_KEY_CACHE_MS): within
it a request costs a hash and a dict lookup, no query. Revocation ends that at once in this
process (the cache entry is dropped before the revoke returns), and in the other processes
through `KeyRevocations` (Redis pub/sub in the distributed mode, chosen by bootstrap). What
remains is documented in the README: a revocation made where no message reaches this process
(`workflow-engine keys revoke` against an embedded engine's SQLite file, or a message lost while
Redis restarts) takes effect here within `cache_ms`; API_KEY_CACHE_MS=0 checks every request.

`last_used_at` is written at most once a minute per key and process, not on every request.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from workflow_engine.domain.access import (
    Actor,
    Principal,
    Role,
    key_digest,
    looks_like_key,
    name_problem,
    new_key,
    shown_prefix,
)
from workflow_engine.domain.audit import Action, Target
from workflow_engine.errors import InvalidInput, NotFound, StorageError
from workflow_engine.storage import audit
from workflow_engine.storage import keys as key_store
from workflow_engine.storage import workflows as wf_store
from workflow_engine.storage.db import Database, Row

log = logging.getLogger(__name__)
TOUCH_EVERY = timedelta(minutes=1)
MAX_WORKFLOWS = 100
PUBLISH_TIMEOUT_S = 3.0
OnRevoked = Callable[[str], Awaitable[None]]


class KeyRevocations(ABC):
    """How a revocation reaches the other processes that may hold the key in their cache."""

    @abstractmethod
    async def publish(self, key_id: str) -> None:
        """Tell the other processes (best effort: their cache expires anyway)."""

    @abstractmethod
    def listen(self, on_revoked: OnRevoked) -> None:
        """Call `on_revoked` with the id of each key revoked elsewhere."""

    def changed(self) -> bool:
        """Whether a key was revoked elsewhere since the last call, as far as can be told
        without a message (the embedded mode's stamp file)."""
        return False

    async def close(self) -> None:
        return None


class LocalKeyRevocations(KeyRevocations):
    """One process (the embedded mode): the revoking process drops its own cache entry."""

    async def publish(self, key_id: str) -> None:
        return None

    def listen(self, on_revoked: OnRevoked) -> None:
        return None


class FileKeyRevocations(LocalKeyRevocations):
    """The embedded mode, where `workflow-engine keys revoke` is a second process on the same
    DATA_DIR: a revocation rewrites a stamp file there, and a key ring that sees the file change
    (one `stat` per request that would use its cache) forgets every key it had checked."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen = self._stamp()

    def _stamp(self) -> int | None:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None

    async def publish(self, key_id: str) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(f"{key_id} {time.time_ns()}\n")
        except OSError as exc:  # the others' caches expire within cache_ms anyway
            log.warning("could not write %s: %s", self.path, exc)
        self._seen = self._stamp()

    def changed(self) -> bool:
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        return True


@dataclass
class _Entry:
    principal: Principal
    checked: float
    """When the database last said the key is live (monotonic seconds)."""
    last_used: datetime | None


@dataclass(frozen=True)
class CreatedKey:
    row: Row
    key: str
    """The clear key: returned once, never stored."""


def _principal(row: Row) -> Principal:
    workflows = row["workflows"]
    return Principal(
        name=row["name"],
        role=Role(row["role"]),
        key_id=row["id"],
        workflows=frozenset(workflows) if workflows is not None else None,
    )


class KeyRing:
    def __init__(
        self,
        db: Database,
        revocations: KeyRevocations | None = None,
        *,
        cache_ms: int = 2000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.revocations = revocations or LocalKeyRevocations()
        self.cache_s = cache_ms / 1000
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._ids: dict[str, str] = {}
        """digest -> key id, for the keys seen live."""
        self._generation = 0
        """Bumped by every revocation: a check that started before one is not cached."""
        self._listeners: list[OnRevoked] = []
        self._listening = False

    # --- management (API and CLI) -------------------------------------------------------------

    async def create(
        self, *, name: str, role: Role, workflows: list[str] | None, actor: Actor
    ) -> CreatedKey:
        """A new key; `workflows` (ids or names) only and always for `trigger` keys."""
        problem = name_problem(name)
        if problem:
            raise InvalidInput(problem)
        if role is Role.TRIGGER and not workflows:
            raise InvalidInput("a trigger key needs the workflows it may execute (workflows)")
        if role is not Role.TRIGGER and workflows:
            raise InvalidInput(f"only trigger keys list workflows; a {role} key reaches them all")
        if workflows and len(workflows) > MAX_WORKFLOWS:
            raise InvalidInput(f"a key lists at most {MAX_WORKFLOWS} workflows")
        key = new_key()
        async with self.db.write() as conn:
            ids = None
            if workflows is not None:
                ids = []
                for ref in workflows:
                    try:
                        row = await wf_store.get_workflow(conn, ref)
                    except NotFound:
                        raise InvalidInput(f"workflows: workflow {ref!r} not found") from None
                    if row["id"] not in ids:
                        ids.append(str(row["id"]))
            created = await key_store.insert_key(
                conn,
                name=name,
                role=role.value,
                key_hash=key_digest(key),
                prefix=shown_prefix(key),
                workflows=ids,
            )
            await audit.record(
                conn,
                actor,
                Action.KEY_CREATED,
                Target.KEY,
                created["id"],
                {"name": name, "role": role.value},
            )
        return CreatedKey(created, key)

    async def list_keys(self) -> list[Row]:
        async with self.db.read() as conn:
            return await key_store.list_keys(conn)

    async def revoke(self, id_or_name: str, *, actor: Actor) -> Row:
        """Revoke a key (again: nothing changes); from the next request on it is refused."""
        async with self.db.write() as conn:
            row = await key_store.get_key(conn, id_or_name)
            if await key_store.revoke_key(conn, row["id"]):
                await audit.record(
                    conn, actor, Action.KEY_REVOKED, Target.KEY, row["id"], {"name": row["name"]}
                )
            row = await key_store.get_key(conn, row["id"])
        await self._revoked(str(row["id"]))
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                await self.revocations.publish(str(row["id"]))
        except TimeoutError:  # the others' caches expire within cache_ms anyway
            log.warning("revocation of key %s not announced to other processes", row["name"])
        return row

    # --- checking ----------------------------------------------------------------------------

    def start(self) -> None:
        """Follow the revocations made by other processes (the API's processes call this)."""
        if not self._listening:
            self._listening = True
            self.revocations.listen(self._revoked)

    def on_revoked(self, listener: OnRevoked) -> None:
        """Also call `listener(key_id)` on each revocation (Socket.io drops the key's sockets)."""
        self._listeners.append(listener)

    async def authenticate(self, key: str) -> Principal | None:
        """The key's principal, or None for anything that is not a live key."""
        if not looks_like_key(key):
            return None
        digest = key_digest(key)
        key_id = self._ids.get(digest)
        entry = self._fresh(key_id)
        if entry is None:
            generation = self._generation
            async with self.db.read() as conn:
                row = await key_store.find_live_by_hash(conn, digest)
            # Found by its digest: this compares the digests once more in constant time.
            if row is None or not hmac.compare_digest(row["key_hash"], digest):
                self._ids.pop(digest, None)
                return None
            entry = self._keep(row, generation)
            self._ids[digest] = str(row["id"])
        await self._touch(entry)
        return entry.principal

    async def principal_for_id(self, key_id: str) -> Principal | None:
        """The principal of a live key by its id (a UI session names its key by id)."""
        entry = self._fresh(key_id)
        if entry is None:
            generation = self._generation
            async with self.db.read() as conn:
                row = await key_store.find_live_by_id(conn, key_id)
            if row is None:
                return None
            entry = self._keep(row, generation)
        await self._touch(entry)
        return entry.principal

    def _fresh(self, key_id: str | None) -> _Entry | None:
        if key_id is None:
            return None
        if self._entries and self.revocations.changed():
            self._generation += 1
            self._entries.clear()
            return None
        entry = self._entries.get(key_id)
        if entry is None or self._clock() - entry.checked >= self.cache_s:
            return None
        return entry

    def _keep(self, row: Row, generation: int) -> _Entry:
        entry = _Entry(_principal(row), self._clock(), row["last_used_at"])
        if generation == self._generation and self.cache_s > 0:
            self._entries[str(row["id"])] = entry
        return entry

    async def _touch(self, entry: _Entry) -> None:
        now = datetime.now(UTC)
        if entry.last_used is not None and now - entry.last_used < TOUCH_EVERY:
            return
        entry.last_used = now  # before the write: concurrent requests do not write it too
        key_id = entry.principal.key_id
        if key_id is None:
            return
        try:
            async with self.db.autocommit() as conn:
                await key_store.touch_key(conn, key_id, now)
        except StorageError as exc:  # the request goes on: the time is only informative
            log.warning("could not record the use of key %s: %s", entry.principal.name, exc)

    async def _revoked(self, key_id: str) -> None:
        self._generation += 1
        self._entries.pop(key_id, None)
        for listener in self._listeners:
            try:
                await listener(key_id)
            except Exception:
                log.exception("a revocation listener failed")

    async def close(self) -> None:
        await self.revocations.close()
