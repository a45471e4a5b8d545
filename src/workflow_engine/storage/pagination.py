"""Keyset pagination on (created_at, id), newest first: never OFFSET."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, literal, tuple_

from workflow_engine.ids import looks_like_id


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    id: str

    def encode(self) -> str:
        raw = json.dumps([self.created_at.isoformat(), self.id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Parse a cursor from `nextCursor`; raises ValueError when it is not one.

        Only what `encode` could have made passes: an aware timestamp that has a UTC equivalent
        (`0001-01-01T00:00:00+14:00` has none: it would be in year 0) and a row id.
        """
        try:
            padded = token + "=" * (-len(token) % 4)
            created_at, row_id = json.loads(base64.urlsafe_b64decode(padded))
            parsed = datetime.fromisoformat(created_at)
            if parsed.tzinfo is None:
                raise ValueError("naive timestamp")
            # What the databases compare with; OverflowError past year 1 or 9999.
            parsed = parsed.astimezone(UTC)
        except Exception as exc:
            raise ValueError("invalid cursor") from exc
        if not isinstance(row_id, str) or not looks_like_id(row_id):
            raise ValueError("invalid cursor")
        return cls(parsed, row_id)

    @classmethod
    def after_row(cls, row: Any) -> Cursor:
        return cls(row["created_at"], row["id"])


def keyset_before(created_at: Any, row_id: Any, cursor: Cursor) -> ColumnElement[bool]:
    """Rows strictly after `cursor` in (created_at DESC, id DESC) order.

    A row-value comparison, so PostgreSQL walks the (.., created_at, id) index from the cursor
    instead of filtering most of the table (an OR of two conditions defeats the index).
    """
    return tuple_(created_at, row_id) < tuple_(
        literal(cursor.created_at, type_=created_at.type), literal(cursor.id, type_=row_id.type)
    )
