"""JSON Schema as workflows use it (a workflow's `inputSchema`, an llm step's `responseSchema`
and its tools' arguments): one check that a schema is valid, one first mismatch of a value.
`jsonschema` is imported only when a schema is used."""

from __future__ import annotations

from typing import Any


def check_schema(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """`value` if it is a valid JSON Schema (or None); a ValueError saying why otherwise."""
    if value is not None:
        import jsonschema

        try:
            jsonschema.validators.validator_for(value).check_schema(value)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
    return value


def first_mismatch(value: Any, schema: dict[str, Any]) -> str | None:
    """Where and how `value` first fails `schema` (`at items/0: ...`), None if it matches."""
    import jsonschema

    errors = sorted(
        jsonschema.validators.validator_for(schema)(schema).iter_errors(value),
        key=lambda e: list(e.path),
    )
    if not errors:
        return None
    first = errors[0]
    where = "/".join(str(p) for p in first.path) or "(root)"
    return f"at {where}: {first.message}"
