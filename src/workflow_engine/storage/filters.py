"""SQL conditions shared by the stores."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY


def one_of(column: Any, param: str, dialect: str) -> ColumnElement[bool]:
    """`column` equals one of the values bound to `param` (a list). On PostgreSQL `= ANY($1)`
    with one array parameter, so the statement text (and its prepared statement) is the same
    whatever the number of values; an expanding IN list elsewhere."""
    if dialect == "postgresql":
        condition: ColumnElement[bool] = column == any_(bindparam(param, type_=ARRAY(column.type)))
        return condition
    return column.in_(bindparam(param, expanding=True))  # type: ignore[no-any-return]
