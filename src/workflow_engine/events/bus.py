"""Execution events (DESIGN.md section 7): the publisher interface and the in-process bus."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import field
from datetime import UTC, datetime
from typing import Any

from workflow_engine.records import record

log = logging.getLogger(__name__)


@record
class Event:
    type: str
    execution_id: str
    workflow_id: str
    seq: int
    data: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    def row(self) -> dict[str, Any]:
        """The `execution_events` row."""
        return {
            "execution_id": self.execution_id,
            "seq": self.seq,
            "type": self.type,
            "data": self.data,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_row(cls, row: Any, workflow_id: str) -> Event:
        return cls(
            type=row["type"],
            execution_id=row["execution_id"],
            workflow_id=workflow_id,
            seq=row["seq"],
            data=row["data"],
            timestamp=row["timestamp"],
        )

    def payload(self) -> dict[str, Any]:
        """The JSON sent to clients: the event's fields plus the common ones."""
        return {
            **self.data,
            "executionId": self.execution_id,
            "workflowId": self.workflow_id,
            "timestamp": self.timestamp.isoformat().replace("+00:00", "Z"),
            "seq": self.seq,
        }


def log_event_data(row: Any) -> dict[str, Any]:
    """The data of the `log` event of an `execution_logs` row (a line is stored once, as that row;
    its event is sent live and replayed from it)."""
    return {
        "level": row["level"],
        "message": row["message"],
        "metadata": row["metadata"],
        "logId": row["id"],
    }


Subscriber = Callable[[Event], Awaitable[None]]


class EventBus(ABC):
    @abstractmethod
    async def publish(self, event: Event) -> None:
        """Deliver to every subscriber; never raises (best effort: the DB is the truth)."""

    @abstractmethod
    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` with every event published from now on; returns the unsubscribe."""


class LocalEventBus(EventBus):
    """In-process fan-out to async subscribers."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    async def publish(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                await subscriber(event)
            except Exception:
                log.exception("event subscriber failed on %s", event.type)
