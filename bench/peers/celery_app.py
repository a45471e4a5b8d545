"""The Celery app of peer (b): one no-op task; broker and result backend on the bench's Redis
database (WFBENCH_REDIS_URL); queue name wfbench-celery so its keys are the bench's."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

URL = os.environ.get("WFBENCH_REDIS_URL", "redis://127.0.0.1:6379/13")

app = Celery("wfbench", broker=URL, backend=URL)
app.conf.update(
    task_default_queue="wfbench-celery",
    result_expires=3600,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="wfbench.noop")
def noop(*_args: Any) -> bool:
    return True
