"""The `llm` step type: one chat completion on an OpenAI-compatible server (DESIGN.md section 14).

It goes through the official `openai` library on our own HTTP clients, with the library's retries
off (the engine retries: 429 and 5xx honouring `Retry-After`; 400/401/403/404 fail at once):
- without a `baseUrl`, to the operator's server (LLM_BASE_URL, LLM_API_KEY): trusted, so reached
  even on a private address (its host is exempt from the SSRF guard);
- with a `baseUrl`, through the engine's guarded client like any http step, and with the step's
  own `apiKey` only: the operator's key is never sent to a server a workflow names.

The API key never reaches a stored row, log, event or error: `apiKey` is stored masked, and the
key is cut out of any error text the server sends back. With `stream`, the tokens go to
`ctx.delta` as they arrive (compacted into `step_delta` events: engine/deltas.py). With `tools`,
the model may call workflows as tools over several turns (the loop: steps/llm_tools.py); `ask`
below is one model request, whatever the turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import httpx
from pydantic import Field, JsonValue, ValidationError, field_validator

from workflow_engine.domain.json_schema import check_schema, first_mismatch
from workflow_engine.engine.secrets import MASK
from workflow_engine.errors import BlockedDestination, NonRetryableStepError, StepError

from .base import StepConfig, StepContext, StepType
from .http import display_url, exception_chain, parse_retry_after
from .llm_tools import DEFAULT_MAX_TURNS, ToolCall, run_with_tools

if TYPE_CHECKING:
    import openai

# `openai` (about a second to import) and `jsonschema` are imported where they are used, so that
# a process that runs no llm step never pays for them.

__all__ = ["LlmConfig", "LlmServer", "LlmStep"]

_RETRYABLE_STATUSES = frozenset({408, 409, 429})
_ERROR_CHARS = 500
DEFAULT_TIMEOUT_S = 120.0
"""How long a model request may take when neither the step nor LLM_TIMEOUT_MS says."""
MAX_TOOLS = 32


@dataclass(frozen=True)
class LlmServer:
    """The operator's OpenAI-compatible server (LLM_BASE_URL, LLM_API_KEY, LLM_TIMEOUT_MS) and
    the client that reaches it (its host exempt from the SSRF guard: bootstrap.py)."""

    base_url: str
    api_key: str | None
    http: httpx.AsyncClient
    timeout_s: float = DEFAULT_TIMEOUT_S


class Message(StepConfig):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, JsonValue]]
    name: str | None = None


class LlmConfig(StepConfig):
    """Config of an `llm` step."""

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    maxTokens: int | None = Field(default=None, gt=0)
    responseSchema: dict[str, Any] | None = None
    stream: bool = False
    baseUrl: str | None = None
    apiKey: str | None = None
    timeoutMs: int | None = Field(default=None, gt=0)
    tools: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TOOLS,
        description="Workflows (ids or names) the model may call as tools: steps/llm_tools.py",
    )
    maxTurns: int = Field(default=DEFAULT_MAX_TURNS, ge=1, le=100)

    @field_validator("responseSchema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_schema(value)

    @field_validator("baseUrl")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                url = httpx.URL(value)
            except httpx.InvalidURL as exc:
                raise ValueError(f"invalid URL: {exc}") from None
            if url.scheme not in ("http", "https") or not url.host:
                raise ValueError("must be an http or https URL with a host")
        return value


class LlmStep(StepType):
    """Ask a model (any OpenAI-compatible server); output is the answer and its token usage."""

    name: ClassVar[str] = "llm"
    config_model: ClassVar[type[StepConfig]] = LlmConfig
    secret_fields: ClassVar[frozenset[str]] = frozenset({"apiKey"})
    masked_fields: ClassVar[frozenset[str]] = frozenset({"apiKey"})

    async def run(self, config: Any, ctx: StepContext) -> Any:
        import openai

        cfg = config if isinstance(config, LlmConfig) else _validate(config)
        base_url, api_key, http, timeout_s = _server(cfg, ctx)
        client = openai.AsyncOpenAI(
            api_key=api_key or "no-key",  # no key: no Authorization header (below)
            base_url=base_url,
            http_client=http,
            max_retries=0,
            timeout=timeout_s,
        )
        messages = [m.model_dump(exclude_none=True) for m in cfg.messages]
        meter = ctx.llm_meter

        async def ask(
            messages: list[dict[str, Any]], tools: list[dict[str, Any]], turn: int
        ) -> tuple[dict[str, Any], list[ToolCall]]:
            """One model request (turn 0, or a later turn of a tool loop), metered: every
            request of the step, tool turns included, goes through here."""
            key = ctx.idempotency_key if turn == 0 else f"{ctx.idempotency_key}:{turn}"
            request: dict[str, Any] = {
                "model": cfg.model,
                "messages": messages,
                "extra_headers": {
                    "Idempotency-Key": key,
                    **({} if api_key else {"Authorization": openai.omit}),
                },
            }
            if tools:
                request["tools"] = tools
            if cfg.temperature is not None:
                request["temperature"] = cfg.temperature
            if cfg.maxTokens is not None:
                request["max_tokens"] = cfg.maxTokens
            ticket = await meter.before(cfg.model, messages, cfg.maxTokens) if meter else None
            answer: dict[str, Any] | None = None
            try:
                if cfg.stream:
                    answer, calls = await _streamed(client, request, ctx)
                else:
                    completion = await client.chat.completions.create(**request)
                    answer, calls = _answer(completion), _tool_calls(completion)
            except (openai.OpenAIError, httpx.HTTPError) as exc:
                raise _step_error(exc, base_url, api_key) from None
            finally:
                if meter is not None:
                    await meter.after(ticket, None if answer is None else answer["usage"])
            return answer, calls

        if cfg.tools:
            answer = await run_with_tools(cfg.tools, cfg.maxTurns, messages, ctx, ask)
        else:
            answer, _ = await ask(messages, [], 0)
        if cfg.responseSchema is not None:
            answer["json"] = _checked_json(answer["content"], cfg.responseSchema)
        return answer


def _validate(config: Any) -> LlmConfig:
    try:
        return LlmConfig.model_validate(config)
    except ValidationError as exc:
        raise NonRetryableStepError(f"Invalid llm step config: {exc}") from exc


def _server(cfg: LlmConfig, ctx: StepContext) -> tuple[str, str | None, httpx.AsyncClient, float]:
    """(base URL, API key, client, timeout in s): the step's own server through the guarded
    client, else the operator's."""
    timeout_s = cfg.timeoutMs / 1000 if cfg.timeoutMs else None
    if cfg.baseUrl is not None:
        default_s = ctx.llm.timeout_s if ctx.llm is not None else DEFAULT_TIMEOUT_S
        return cfg.baseUrl, cfg.apiKey, ctx.http, timeout_s or default_s
    if ctx.llm is None:
        raise NonRetryableStepError("No LLM server: set LLM_BASE_URL or the step's baseUrl")
    return (
        ctx.llm.base_url,
        cfg.apiKey or ctx.llm.api_key,
        ctx.llm.http,
        timeout_s or ctx.llm.timeout_s,
    )


def _usage(usage: Any) -> dict[str, int | None]:
    return {
        "promptTokens": getattr(usage, "prompt_tokens", None),
        "completionTokens": getattr(usage, "completion_tokens", None),
        "totalTokens": getattr(usage, "total_tokens", None),
    }


def _answer(completion: Any) -> dict[str, Any]:
    choices = completion.choices or []
    if not choices:
        raise StepError("The LLM server answered without a choice")
    choice = choices[0]
    return {
        "content": choice.message.content or "",
        "json": None,
        "model": completion.model,
        "finishReason": choice.finish_reason,
        "usage": _usage(completion.usage),
    }


def _tool_calls(completion: Any) -> list[ToolCall]:
    choices = completion.choices or []
    calls = (choices[0].message.tool_calls or []) if choices else []
    return [
        ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments or "")
        for call in calls
        if getattr(call, "function", None) is not None
    ]


async def _streamed(
    client: openai.AsyncOpenAI, request: dict[str, Any], ctx: StepContext
) -> tuple[dict[str, Any], list[ToolCall]]:
    """The answer of a streamed completion and its tool calls (put together from their
    pieces); each piece of text goes to `ctx.delta` as it arrives."""
    stream = await client.chat.completions.create(
        **request, stream=True, stream_options={"include_usage": True}
    )
    pieces: list[str] = []
    model: str | None = None
    finish: str | None = None
    usage: Any = None
    calls: dict[int, dict[str, str]] = {}
    try:
        async for chunk in stream:
            model = chunk.model or model
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.index != 0:
                    continue
                if choice.finish_reason is not None:
                    finish = choice.finish_reason
                if choice.delta is not None:
                    _add_tool_pieces(calls, choice.delta.tool_calls or ())
                text = choice.delta.content if choice.delta is not None else None
                if text:
                    pieces.append(text)
                    if ctx.delta is not None:
                        await ctx.delta(text)
    finally:
        await stream.close()
    answer = {
        "content": "".join(pieces),
        "json": None,
        "model": model,
        "finishReason": finish,
        "usage": _usage(usage),
    }
    return answer, [
        ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"])
        for _, c in sorted(calls.items())
    ]


def _add_tool_pieces(calls: dict[int, dict[str, str]], pieces: Any) -> None:
    """A streamed tool call comes as its id and name, then its arguments in pieces (some
    servers send it whole in one chunk)."""
    for piece in pieces:
        call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
        if piece.id:
            call["id"] = piece.id
        function = piece.function
        if function is not None:
            if function.name:
                call["name"] = function.name
            if function.arguments:
                call["arguments"] += function.arguments


def _checked_json(content: str, schema: dict[str, Any]) -> Any:
    """The answer parsed as JSON (inside a ``` fence too) and valid against `schema`; a
    retryable error otherwise: the next try may well answer right."""
    text = _unfenced(content)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise StepError(f"The answer is not JSON ({exc}): {content[:200]!r}") from None
    problem = first_mismatch(value, schema)
    if problem is not None:
        raise StepError(f"The answer does not match responseSchema {problem}")
    return value


def _unfenced(content: str) -> str:
    text = content.strip()
    if text.startswith("```") and text.endswith("```") and "\n" in text:
        return text[text.index("\n") + 1 : -3].strip()
    return text


def _step_error(exc: BaseException, base_url: str, api_key: str | None) -> StepError:
    """The library's error as ours: 429, 408, 409 and 5xx retryable (after Retry-After), any
    other status not; connection failures retryable, a blocked destination not."""
    import openai

    blocked = next((e for e in exception_chain(exc) if isinstance(e, BlockedDestination)), None)
    if blocked is not None:
        return blocked
    where = display_url(httpx.URL(base_url))
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = f"LLM server {where} answered {status}: {_hide(_message(exc), api_key)}"
        if status in _RETRYABLE_STATUSES or status >= 500:
            return StepError(message, retry_after_ms=_retry_after(exc.response))
        return NonRetryableStepError(message)
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
        return StepError(f"LLM request to {where} timed out")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return StepError(f"Could not reach the LLM server {where}: {_hide(str(cause), api_key)}")
    return StepError(f"LLM request to {where} failed: {_hide(str(exc), api_key)}")


def _message(exc: openai.APIStatusError) -> str:
    """The server's own message (`{"error": {"message": ...}}`), else the library's text."""
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:_ERROR_CHARS]
    return exc.message[:_ERROR_CHARS]


def _retry_after(response: httpx.Response) -> int | None:
    """Retry-After, or OpenAI's finer `retry-after-ms`, as milliseconds."""
    raw_ms = response.headers.get("retry-after-ms", "")
    try:
        return max(0, round(float(raw_ms)))
    except ValueError:
        return parse_retry_after(response.headers.get("retry-after"))


def _hide(text: str, api_key: str | None) -> str:
    return text.replace(api_key, MASK) if api_key and len(api_key) >= 4 else text
