"""Secrets referenced as `{{ secrets.NAME }}`: read from the environment, never stored.

Step inputs are stored rendered with every secret masked, and errors, logs and outputs have any
secret value replaced before they are written or emitted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

MASK = "***"


class Secrets:
    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        # Longest first, so a secret containing another is masked whole.
        self._ordered = sorted(
            (v for v in self._values.values() if len(v) >= 4), key=len, reverse=True
        )

    @classmethod
    def from_environ(cls, prefix: str, environ: Mapping[str, str] | None = None) -> Secrets:
        env = os.environ if environ is None else environ
        return cls({k[len(prefix) :]: v for k, v in env.items() if k.startswith(prefix) and v})

    def values(self) -> dict[str, str]:
        return dict(self._values)

    def masked(self) -> dict[str, str]:
        return dict.fromkeys(self._values, MASK)

    def redact(self, value: Any) -> Any:
        """Replace secret values anywhere in a JSON-like value."""
        if not self._ordered:
            return value
        if isinstance(value, str):
            for secret in self._ordered:
                value = value.replace(secret, MASK)
            return value
        if isinstance(value, dict):
            return {k: self.redact(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.redact(v) for v in value]
        return value
