"""Time-sortable unique ids (UUIDv7 layout), so ids sort in creation order."""

from __future__ import annotations

import os
import re
import socket
import time
import uuid

_ID_SHAPE = re.compile(r"[0-9a-fA-F-]{36}")


def new_id() -> str:
    """A UUIDv7 string: 48-bit millisecond timestamp, then random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | rand & ((1 << 80) - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def looks_like_id(value: str) -> bool:
    """The shape of an id: workflow names may not have it, so `id or name` is never ambiguous."""
    return _ID_SHAPE.fullmatch(value) is not None


def worker_id() -> str:
    """Who holds a lease: this host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"
