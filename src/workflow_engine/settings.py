"""Engine settings, read once from the environment and `.env` at the edge and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from workflow_engine.domain.llm_limits import LlmLimits, parse_limits

DEFAULT_PORT = 3000


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every setting, with its default. `.env.example` documents each one."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="sqlite:///path or postgresql://user:pass@host/db (default: DATA_DIR's SQLite)",
    )
    redis_url: str | None = Field(default=None, description="Set to run distributed (BullMQ)")
    data_dir: Path = Field(default=Path("data"), description="SQLite file and generated token")
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    api_token: str | None = None
    auth_disabled: bool = Field(default=False, description="Only honoured on a loopback bind")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_key_cache_ms: int = Field(
        default=2000,
        ge=0,
        le=60_000,
        description="How long a process trusts a checked API key before asking the database "
        "again; a revocation made in this process (or announced over Redis) applies at once",
    )

    db_pool_size: int = Field(
        default=10, ge=2, le=500, description="PostgreSQL connections per process"
    )
    execution_concurrency: int = Field(default=5, ge=1, le=1000)
    execution_timeout_ms: int = Field(default=300_000, ge=1)
    lease_ms: int = Field(default=30_000, ge=500)
    reconcile_interval_ms: int = Field(default=5_000, ge=100)
    max_deliveries: int = Field(default=5, ge=1, description="Claims before an execution is failed")
    shutdown_grace_ms: int = Field(default=30_000, ge=0)
    durable_delay_min_ms: int = Field(
        default=5_000,
        ge=0,
        description="A delay step this long or longer parks the execution (`waiting`, no worker "
        "slot held) instead of sleeping in a worker",
    )
    event_retention_ms: int = Field(
        default=600_000,
        ge=0,
        description="How long an event that met no wait is kept for a wait registered later",
    )
    retry_jitter: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Random share added to each retry delay (0.1: up to +10%), so executions "
        "failing together do not retry in lockstep",
    )

    execution_retention_days: float = Field(
        default=0,
        ge=0,
        le=36_500,
        description="Finished executions older than this many days are removed with their "
        "steps, logs and events (engine/retention.py); 0: kept forever",
    )
    retention_interval_ms: int = Field(
        default=300_000, ge=100, description="How often the retention pass runs"
    )
    retention_batch_size: int = Field(
        default=500, ge=1, le=10_000, description="Executions removed per transaction"
    )

    http_allowlist: Annotated[list[str], NoDecode] = Field(default_factory=list)
    http_allowlist_only: bool = Field(
        default=False,
        description="Outgoing requests (http steps, and every client made by make_http_client) "
        "may reach the HTTP_ALLOWLIST alone: everything else is blocked, public hosts included",
    )
    http_timeout_ms: int = Field(default=30_000, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    secrets_prefix: str = "WORKFLOW_SECRET_"

    # The `llm` step (steps/llm.py). The operator's server is trusted: it is reached even on a
    # private address, unlike a step's own `baseUrl`, which goes through the SSRF guard.
    llm_base_url: str = Field(
        default="https://api.openai.com/v1",
        description="OpenAI-compatible API of llm steps without a `baseUrl` (Ollama: "
        "http://127.0.0.1:11434/v1)",
    )
    llm_api_key: str | None = Field(
        default=None,
        description="API key of llm steps without an `apiKey`; never stored or logged",
    )
    llm_timeout_ms: int = Field(
        default=120_000, ge=1, description="Default timeout of one llm step's request"
    )
    llm_limits: Annotated[LlmLimits, NoDecode] = Field(
        default_factory=lambda: LlmLimits({}),
        description="Tokens and requests per minute per model, across every worker, as JSON: "
        '{"gpt-4o-mini": {"tokensPerMinute": 100000, "requestsPerMinute": 500}, "*": {...}} '
        '("*": any model not named). A request over a limit waits for room, never fails',
    )
    llm_limit_window_ms: int = Field(
        default=60_000,
        ge=100,
        le=3_600_000,
        description="The window of LLM_LIMITS (the caps are per this window): only for tests",
    )

    # The port each `workflow-engine workers` process serves `GET /metrics` on (Prometheus), bound
    # on HOST; docker-compose.yml and deploy/kubernetes/ publish it. `serve` answers /metrics on
    # its own port.
    metrics_port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description="Port of a workers process's metrics endpoint (0: none)",
    )

    log_format: Literal["text", "json"] = Field(
        default="text",
        description="json: `serve` and `workers` print one JSON object per line (logs.py)",
    )

    # Error tracking and tracing (telemetry/): each is off, and its library not even imported,
    # while its setting is empty.
    sentry_dsn: str | None = Field(
        default=None,
        description="Send unhandled errors and failed executions to this Sentry project",
    )
    sentry_environment: str | None = Field(
        default=None, description="The `environment` of the Sentry events (production, ...)"
    )
    sentry_traces_sample_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of API requests Sentry also traces as transactions (0: none)",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector base URL: a trace per execution, a span per step try",
    )
    otel_service_name: str = Field(
        default="workflow-engine", description="`service.name` of the exported spans"
    )

    step_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Modules whose STEP_TYPES list adds step types (steps/plugins.py)",
    )

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("cors_origins", "http_allowlist", "step_modules", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("llm_base_url")
    @classmethod
    def _llm_url(cls, value: str) -> str:
        scheme, _, rest = value.partition("://")
        if scheme not in ("http", "https") or not rest.strip("/"):
            raise ValueError("LLM_BASE_URL must be an http(s) URL, e.g. http://127.0.0.1:11434/v1")
        return value

    @field_validator("llm_limits", mode="before")
    @classmethod
    def _llm_limits(cls, value: object) -> LlmLimits:
        return parse_limits(value)

    @property
    def resolved_database_url(self) -> str:
        """The configured database URL, or the embedded SQLite file under DATA_DIR."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'workflow-engine.db'}"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "api-token"
