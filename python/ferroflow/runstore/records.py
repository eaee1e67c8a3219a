"""The plain records the run store hands back: runs, states and cache entries, with the result
references they hold (`ResultRef`, whose home is `ferroflow.results.references`).

They carry ids, names, strings and UTC datetimes only, never engine objects, so the store can be
used (and tested) without the engine, and a future backend returns the same types.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ferroflow.results.result_ref import ResultRef


@dataclass(frozen=True, slots=True)
class StateRecord:
    """One state transition of a flow or task run, in the order the runs went through them."""

    run_id: str
    type: str
    """The state type, e.g. `RUNNING`, `COMPLETED`, `FAILED`."""
    name: str
    """The state's name, e.g. `Running`, `Cached`, `Retrying`."""
    timestamp: datetime
    message: str | None = None
    result: ResultRef | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "type": self.type,
            "name": self.name,
            "timestamp": self.timestamp.isoformat(),
            "message": self.message,
            "result": self.result.to_dict() if self.result else None,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """What flow and task runs share; `run_count`, the times and the current state follow the states."""

    id: str
    name: str
    parameters: str
    """A bounded-length summary of the parameters (not the values themselves)."""
    run_count: int
    start_time: datetime | None
    end_time: datetime | None
    state_type: str | None
    state_name: str | None
    created: datetime

    @property
    def duration_seconds(self) -> float | None:
        if self.start_time is None or self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            fields[field.name] = value.isoformat() if isinstance(value, datetime) else value
        fields["duration_seconds"] = self.duration_seconds
        return fields


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowRunRecord(RunRecord):
    """A flow run as recorded."""

    flow_name: str
    parent_flow_run_id: str | None
    """The enclosing flow run, for a subflow."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRunRecord(RunRecord):
    """A task run as recorded."""

    task_name: str
    flow_run_id: str | None
    task_key: str
    dynamic_key: str


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A cached task result: the result to reuse for a cache key, until `expiration` (None: never)."""

    key: str
    task_name: str
    result: ResultRef
    created: datetime
    expiration: datetime | None

    def is_expired(self, now: datetime) -> bool:
        return self.expiration is not None and self.expiration <= now

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "task_name": self.task_name,
            "result": self.result.to_dict(),
            "created": self.created.isoformat(),
            "expiration": self.expiration.isoformat() if self.expiration else None,
        }
