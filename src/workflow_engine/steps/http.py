"""The `http` step type: one HTTP request (plus redirects) through the SSRF-guarded client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, JsonValue, ValidationError, field_validator, model_validator

from workflow_engine import metrics
from workflow_engine.errors import BlockedDestination, NonRetryableStepError, StepError

from .base import StepConfig, StepContext, StepType

__all__ = ["MAX_BODY_BYTES", "HttpConfig", "HttpStep", "parse_retry_after"]

MAX_BODY_BYTES = 10 * 1024 * 1024
_ERROR_BODY_CHARS = 200
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_RETRYABLE_STATUSES = frozenset({408, 429})
# Credentials meant for one origin must not leak to another one a redirect points at.
_CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")
_BODY_HEADERS = ("content-type", "content-length", "content-encoding", "transfer-encoding")

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class HttpConfig(StepConfig):
    """Config of an `http` step.

    The URL scheme is checked when the step runs, not here, so a templated URL can be validated
    before it is rendered.
    """

    url: str
    method: Method = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str | int | float | bool] = Field(default_factory=dict)
    # Aliased because `json` would shadow a BaseModel method.
    json_body: JsonValue = Field(default=None, alias="json")
    body: str | None = None
    timeoutMs: int | None = Field(default=None, gt=0)
    maxRedirects: int = Field(default=5, ge=0)
    expectStatus: list[int] | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _upper_method(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_body(self) -> HttpConfig:
        if self.has_json and self.body is not None:
            raise ValueError("`json` and `body` are mutually exclusive")
        return self

    @property
    def has_json(self) -> bool:
        """True if `json` was given (even as null), so null can be sent as a JSON body."""
        return "json_body" in self.model_fields_set


def parse_retry_after(value: str | None, *, now: float | None = None) -> int | None:
    """A Retry-After header (delay in seconds, or an HTTP date) as milliseconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse means it lacked the zone
        return None
    current = time.time() if now is None else now
    return max(0, round((when.timestamp() - current) * 1000))


class HttpStep(StepType):
    """Send an HTTP request; output is `{status, headers, body}`."""

    name: ClassVar[str] = "http"
    config_model: ClassVar[type[StepConfig]] = HttpConfig
    secret_fields: ClassVar[frozenset[str]] = frozenset({"headers"})

    async def run(self, config: Any, ctx: StepContext) -> Any:
        """Send the request, following redirects, and classify the final response."""
        cfg = config if isinstance(config, HttpConfig) else _validate(config)
        url = _checked_url(cfg.url)
        method: str = cfg.method
        headers = httpx.Headers(cfg.headers)
        if "idempotency-key" not in headers:
            headers["Idempotency-Key"] = ctx.idempotency_key
        if ctx.traceparent is not None and "traceparent" not in headers:
            headers["traceparent"] = ctx.traceparent  # the called service joins the trace
        content = cfg.body
        if cfg.has_json:
            # Encoded here rather than via httpx's json= so that a JSON null is still sent.
            content = json.dumps(cfg.json_body, ensure_ascii=False, separators=(",", ":"))
            headers.setdefault("Content-Type", "application/json")
        params: dict[str, Any] | None = cfg.query or None
        timeout = httpx.Timeout(cfg.timeoutMs / 1000) if cfg.timeoutMs else ctx.http.timeout
        timeout_ms = None if timeout.read is None else round(timeout.read * 1000)

        for hop in range(cfg.maxRedirects + 1):
            request = ctx.http.build_request(
                method, url, headers=headers, params=params, content=content, timeout=timeout
            )
            async with _sending(ctx.http, request, timeout_ms, cfg.timeoutMs) as response:
                location = response.headers.get("location")
                follow = (
                    response.status_code in _REDIRECT_STATUSES
                    and location is not None
                    and not _expected(response.status_code, cfg.expectStatus)
                )
                if not follow:
                    raw = await _read_capped(response, request.url)
                    return _finish(response, raw, request.url, cfg.expectStatus)

            if hop == cfg.maxRedirects:
                raise NonRetryableStepError(
                    f"Too many redirects from {display_url(url)} (maxRedirects={cfg.maxRedirects})"
                )
            assert location is not None
            next_url = _checked_url(str(request.url.join(location)))
            if response.status_code == 303 or (
                response.status_code in (301, 302) and method == "POST"
            ):
                # Browsers turn these into a bodiless GET (HEAD stays HEAD); servers rely on it.
                if method != "HEAD":
                    method = "GET"
                content = None
                for name in _BODY_HEADERS:
                    headers.pop(name, None)
            if _origin(next_url) != _origin(request.url):
                for name in _CREDENTIAL_HEADERS:
                    headers.pop(name, None)
            await ctx.log(
                "info",
                f"Following HTTP {response.status_code} redirect to {display_url(next_url)}",
                {"status": response.status_code, "location": display_url(next_url)},
            )
            url, params = next_url, None  # the Location URL already carries its own query

        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _validate(config: Any) -> HttpConfig:
    try:
        return HttpConfig.model_validate(config)
    except ValidationError as exc:
        raise NonRetryableStepError(f"Invalid http step config: {exc}") from exc


def _checked_url(raw: str) -> httpx.URL:
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL as exc:
        raise NonRetryableStepError(f"Invalid URL {raw!r}: {exc}") from exc
    if url.scheme not in ("http", "https"):
        raise NonRetryableStepError(
            f"Unsupported URL scheme {url.scheme!r} in {raw!r}: only http and https are allowed"
        )
    if not url.host:
        raise NonRetryableStepError(f"URL {raw!r} has no host")
    return url


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def display_url(url: httpx.URL) -> str:
    """The URL without credentials, query or fragment: those may hold secrets bound for logs."""
    return str(url.copy_with(userinfo=b"", query=None, fragment=None))


@asynccontextmanager
async def _sending(
    client: httpx.AsyncClient, request: httpx.Request, timeout_ms: int | None, total_ms: int | None
) -> AsyncIterator[httpx.Response]:
    """Send `request` (streamed) and translate transport failures into step errors.

    httpx timeouts apply per read, so a server trickling bytes could outlast them; `total_ms`
    bounds the whole exchange as well.
    """
    where = display_url(request.url)
    try:
        async with asyncio.timeout(None if total_ms is None else total_ms / 1000):
            sent = client.send(request, stream=True, follow_redirects=False)
            response = await metrics.http_response(sent)
            try:
                yield response
            finally:
                await response.aclose()
    except BlockedDestination:
        raise
    except (TimeoutError, httpx.TimeoutException) as exc:
        after = "" if timeout_ms is None else f" after {timeout_ms} ms"
        raise StepError(f"HTTP request timed out{after} ({where})") from exc
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as exc:
        raise NonRetryableStepError(f"Invalid HTTP request to {where}: {exc}") from exc
    except httpx.ConnectError as exc:
        _raise_if_blocked(exc)
        host = f"{request.url.host}:{request.url.port or _default_port(request.url)}"
        if _caused_by(exc, ConnectionRefusedError):
            raise StepError(f"Connection refused to {host} ({where})") from exc
        raise StepError(f"Could not connect to {host} ({where}): {exc}") from exc
    except httpx.HTTPError as exc:
        _raise_if_blocked(exc)
        raise StepError(f"HTTP request to {where} failed: {type(exc).__name__}: {exc}") from exc


async def _read_capped(response: httpx.Response, url: httpx.URL) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large(url)
    chunks: list[bytes] = []
    size = 0
    # Counted after decompression, so a small compressed bomb is caught too.
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large(url)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(url: httpx.URL) -> NonRetryableStepError:
    return NonRetryableStepError(
        f"Response body from {display_url(url)} exceeds {MAX_BODY_BYTES // (1024 * 1024)} MiB"
    )


def _finish(
    response: httpx.Response, raw: bytes, url: httpx.URL, expect: list[int] | None
) -> dict[str, Any]:
    status = response.status_code
    text = _decode(raw, response.charset_encoding)
    if not _expected(status, expect):
        message = f"HTTP {status} from {display_url(url)}: {text[:_ERROR_BODY_CHARS]}"
        if status in _RETRYABLE_STATUSES or 500 <= status <= 599:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise StepError(message, retry_after_ms=retry_after)
        raise NonRetryableStepError(message)
    return {
        "status": status,
        "headers": {name.lower(): value for name, value in response.headers.items()},
        "body": _parse_body(text, response.headers.get("content-type", "")),
    }


def _expected(status: int, expect: list[int] | None) -> bool:
    return status in expect if expect is not None else 200 <= status <= 299


def _decode(raw: bytes, charset: str | None) -> str:
    try:
        return raw.decode(charset or "utf-8", errors="replace")
    except LookupError:  # unknown charset name from the server
        return raw.decode("utf-8", errors="replace")


def _parse_body(text: str, content_type: str) -> Any:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it was raised from, oldest last (cycle-safe)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    return any(isinstance(e, kind) for e in exception_chain(exc))


def _raise_if_blocked(exc: BaseException) -> None:
    """Re-raise a BlockedDestination that some layer wrapped, so it stays non-retryable."""
    for cause in exception_chain(exc):
        if isinstance(cause, BlockedDestination):
            raise cause
