"""The examples /openapi.json shows (and fuzzers send first) are valid requests."""

from __future__ import annotations

from pydantic import TypeAdapter

from workflow_engine.api.schemas import (
    EXECUTE_EXAMPLE,
    TRIGGER_EXAMPLE,
    WORKFLOW_EXAMPLE,
    ErrorResponse,
    ExecuteRequest,
)
from workflow_engine.domain.definition import TriggerDefinition, WorkflowDefinition


def test_the_examples_are_valid_requests() -> None:
    document = WorkflowDefinition.model_validate(WORKFLOW_EXAMPLE)
    assert document.document()["steps"][2]["if"] == "{{ input.call }}"
    TypeAdapter(TriggerDefinition).validate_python(TRIGGER_EXAMPLE)
    assert ExecuteRequest.model_validate(EXECUTE_EXAMPLE).input["name"] == "Ada"


def test_no_body_and_a_null_body_mean_an_empty_input() -> None:
    assert ExecuteRequest.model_validate(None).input is None
    assert ExecuteRequest().input is None


def test_the_error_shape_leaves_errors_out_unless_there_are_some() -> None:
    assert ErrorResponse(detail="x").model_dump(exclude_unset=True) == {"detail": "x"}
