"""Execution priorities (DESIGN.md section 14, flow control): `"priority": 1..10` on execute.
Of the executions waiting for a worker, the higher start first; 5 unless said."""

from __future__ import annotations

DEFAULT_PRIORITY = 5
MIN_PRIORITY = 1
MAX_PRIORITY = 10
