"""The garbage collector's settings for the long-running processes (`serve`, `workers`).

The engine makes many short-lived objects per job and few reference cycles, so the default
thresholds mostly rescan the same survivors and stall the event loop. What exists once a process
has started (modules, the app and its routes, the engine, its pools and caches: about 190,000
objects) lives as long as the process, so it is frozen out of the collector's scans; a full
collection then only looks at what jobs made.
"""

from __future__ import annotations

import gc


def tune() -> None:
    """Before start-up: freeze what is loaded, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def started() -> None:
    """Once the process has started (its engine built, its workers running): freeze that too."""
    gc.collect()
    gc.freeze()
