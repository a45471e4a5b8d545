"""SQL conditions shared by the stores."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection


def one_of(conn: AsyncConnection, column: Any, values: list[str]) -> ColumnElement[bool]:
    """`column` equals one of `values`. On PostgreSQL `= ANY($1)` with one array parameter, so
    the statement text (and its prepared statement) is the same whatever the number of values;
    an IN list elsewhere."""
    if conn.dialect.name == "postgresql":
        array = bindparam("one_of_values", values, type_=ARRAY(column.type), unique=True)
        condition: ColumnElement[bool] = column == any_(array)
        return condition
    return column.in_(values)  # type: ignore[no-any-return]
