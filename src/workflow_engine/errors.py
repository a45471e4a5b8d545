"""One exception tree for the whole engine.

Each class's docstring is its default message. Foreign errors (httpx, SQLAlchemy, Jinja2) are
translated into these at the boundary where they are caught.
"""

from __future__ import annotations


class WorkflowEngineError(Exception):
    """Workflow engine error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigurationError(WorkflowEngineError):
    """Invalid engine configuration."""


class NotFound(WorkflowEngineError):
    """Not found."""


class Conflict(WorkflowEngineError):
    """The request conflicts with the current state."""


class InvalidDefinition(WorkflowEngineError):
    """Invalid workflow definition."""


class InvalidInput(WorkflowEngineError):
    """Invalid value in the request."""


class Unauthenticated(WorkflowEngineError):
    """The request's credentials are missing or wrong."""


# --- storage -------------------------------------------------------------------------------------
# What a database or driver error becomes at the storage boundary (storage/db.py), so that
# nothing outside storage/ needs to know SQLAlchemy's or the drivers' exceptions.


class StorageError(WorkflowEngineError):
    """The database could not do what was asked."""


class StorageUnavailable(StorageError):
    """The database is unavailable right now (connection lost, database down or timed out)."""


class DuplicateKey(StorageError):
    """The database already holds a row with this key."""


class RefusedValue(StorageError):
    """The database refused a value (NUL character, number out of range, broken constraint)."""


# --- step outcomes -------------------------------------------------------------------------------


class StepError(WorkflowEngineError):
    """Step failed."""

    retryable: bool = True

    def __init__(self, message: str | None = None, *, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class NonRetryableStepError(StepError):
    """Step failed and retrying cannot help."""

    retryable = False


class TemplateError(NonRetryableStepError):
    """Template could not be rendered."""


class BlockedDestination(NonRetryableStepError):
    """Destination address is not allowed."""


class StepTimeout(StepError):
    """Step timed out."""


# --- execution control flow ----------------------------------------------------------------------


class LeaseLost(WorkflowEngineError):
    """This worker no longer owns the execution: another worker claimed it."""


class Delay(WorkflowEngineError):
    """Put the job back in the queue for later without spending an attempt."""

    def __init__(self, delay_ms: int, reason: str = "delayed") -> None:
        super().__init__(reason)
        self.delay_ms = delay_ms
