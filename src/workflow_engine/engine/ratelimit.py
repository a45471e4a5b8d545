"""Per-workflow rate limits (`rateLimitMaxConcurrent`, `rateLimitPerMinute`) and the per-key
cap (`concurrency`: `{"key": "{{ input.tenantId }}", "limit": 2}`), checked in the database
inside the claim's transaction, so they hold across every worker of every process.

The execution is claimed first; then the workflow's row is locked (FOR UPDATE on PostgreSQL;
SQLite write transactions are already exclusive), which serialises the claim-then-count of
executions of one workflow. Over a limit, the transaction is rolled back (claim undone): the
execution stays `pending` and its job comes back later, while the jobs behind it (another
tenant's) are claimed meanwhile, so a key at its limit holds up no other key.

The concurrency key is rendered from the input at the execution's first claim and stored on
its row (`concurrencyKey`) in that transaction: the input never changes, so it is the key it had
when it was created.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from workflow_engine.domain.definition import WorkflowDefinition
from workflow_engine.engine.flow_keys import render_key
from workflow_engine.storage import executions as ex_store
from workflow_engine.storage import flow as flow_store
from workflow_engine.storage import ratelimits as store
from workflow_engine.storage.db import Connection

CONCURRENCY_RETRY_MS = 500
WINDOW = timedelta(minutes=1)


def has_limits(definition: WorkflowDefinition) -> bool:
    return bool(
        definition.rateLimitMaxConcurrent or definition.rateLimitPerMinute or definition.concurrency
    )


async def wait_needed_ms(
    conn: Connection,
    workflow_id: str,
    definition: WorkflowDefinition,
    *,
    execution_id: str,
    input: Any,
) -> int:
    """0 if the execution just claimed (and counted) in this transaction may start, else how long
    to wait before asking again."""
    await store.lock_workflow(conn, workflow_id)
    if definition.concurrency is not None:
        key = await render_key(definition.concurrency.key, input)
        await flow_store.set_concurrency_key(conn, execution_id, key)
        # The execution being claimed is among them.
        if await flow_store.running_with_key(conn, workflow_id, key) > definition.concurrency.limit:
            return CONCURRENCY_RETRY_MS
    limit = definition.rateLimitMaxConcurrent
    if limit and await store.running_count(conn, workflow_id) > limit:
        return CONCURRENCY_RETRY_MS
    if definition.rateLimitPerMinute:
        recent = await store.recent_starts(
            conn,
            workflow_id,
            since=ex_store.now() - WINDOW,
            limit=definition.rateLimitPerMinute + 1,
        )
        # The execution being claimed is among them: over the limit if there are N others.
        if len(recent) > definition.rateLimitPerMinute:
            oldest = recent[-1]  # the Nth other start: when it leaves the window, room
            wait = (oldest + WINDOW - ex_store.now()).total_seconds() * 1000
            return max(int(wait) + 1, 1)
    return 0
