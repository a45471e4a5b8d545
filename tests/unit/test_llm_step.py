"""steps/llm.py without a server: config checks, the JSON answer's checks, and how the openai
library's errors become ours (retryable or not, after how long, with no key in the text)."""

from __future__ import annotations

import httpx
import openai
import pytest
from pydantic import ValidationError

from workflow_engine.errors import BlockedDestination, NonRetryableStepError, StepError
from workflow_engine.settings import Settings
from workflow_engine.steps.llm import LlmConfig, _checked_json, _step_error

BASE = "http://llm.test/v1"
KEY = "sk-unit-Key-0001"
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def status_error(status: int, message: str, headers: dict[str, str] | None = None) -> Exception:
    request = httpx.Request("POST", f"{BASE}/chat/completions")
    response = httpx.Response(status, headers=headers or {}, request=request)
    body = {"message": message, "type": "x", "param": None, "code": None}
    return openai.APIStatusError(f"Error code: {status}", response=response, body=body)


@pytest.mark.parametrize(
    ("status", "headers", "retry_after_ms"),
    [
        (429, {"Retry-After": "3"}, 3000),
        (429, {"retry-after-ms": "1500", "Retry-After": "2"}, 1500),
        (503, {}, None),
        (408, {}, None),
    ],
)
def test_rate_limits_and_server_errors_are_retryable(
    status: int, headers: dict[str, str], retry_after_ms: int | None
) -> None:
    error = _step_error(status_error(status, "busy", headers), BASE, KEY)
    assert type(error) is StepError
    assert error.retry_after_ms == retry_after_ms
    assert str(error) == f"LLM server {BASE} answered {status}: busy"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried_and_hide_the_key(status: int) -> None:
    error = _step_error(status_error(status, f"bad key {KEY}."), BASE, KEY)
    assert isinstance(error, NonRetryableStepError)
    assert str(error) == f"LLM server {BASE} answered {status}: bad key ***."


def test_a_blocked_destination_stays_blocked() -> None:
    request = httpx.Request("POST", f"{BASE}/chat/completions")
    try:
        try:
            raise BlockedDestination("Blocked destination 10.0.0.1 (private)")
        except BlockedDestination as blocked:
            raise openai.APIConnectionError(request=request) from blocked
    except openai.APIConnectionError as exc:
        error = _step_error(exc, BASE, KEY)
    assert isinstance(error, BlockedDestination)


def test_the_answer_is_parsed_and_validated() -> None:
    assert _checked_json('{"n": 2}', SCHEMA) == {"n": 2}
    assert _checked_json('```json\n{"n": 2}\n```', SCHEMA) == {"n": 2}
    with pytest.raises(StepError, match="not JSON") as not_json:
        _checked_json("two", SCHEMA)
    with pytest.raises(StepError, match="at n: 'two' is not of type 'integer'") as mismatch:
        _checked_json('{"n": "two"}', SCHEMA)
    # Retryable: the next try may answer right.
    assert not isinstance(not_json.value, NonRetryableStepError)
    assert not isinstance(mismatch.value, NonRetryableStepError)


def test_config_refuses_a_bad_schema_and_a_bad_base_url() -> None:
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(ValidationError, match="not a valid JSON Schema"):
        LlmConfig.model_validate(
            {"model": "m", "messages": messages, "responseSchema": {"type": 1}}
        )
    with pytest.raises(ValidationError, match="http or https"):
        LlmConfig.model_validate({"model": "m", "messages": messages, "baseUrl": "file:///x"})
    with pytest.raises(ValidationError, match="messages"):
        LlmConfig.model_validate({"model": "m", "messages": []})


def test_llm_base_url_must_be_http() -> None:
    with pytest.raises(ValidationError, match="LLM_BASE_URL"):
        Settings(llm_base_url="127.0.0.1:11434", _env_file=None)  # type: ignore[call-arg]
    settings = Settings(llm_base_url="http://127.0.0.1:11434/v1", _env_file=None)  # type: ignore[call-arg]
    assert settings.llm_base_url == "http://127.0.0.1:11434/v1"
