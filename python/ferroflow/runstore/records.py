"""The plain records the run store hands back: runs, states, result references, cache entries.

They carry ids, names, strings and UTC datetimes only, never engine objects, so the store can be
used (and tested) without the engine, and a future backend returns the same types.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from collections.abc import Mapping
from typing import Any, Literal

ResultKind = Literal["literal", "persisted"]


@dataclass(frozen=True, slots=True)
class ResultRef:
    """Where a state's result lives: inline as JSON (a literal) or in result storage.

    Build one with `ResultRef.literal(value)` or `ResultRef.persisted(storage, key, serializer)`.
    """

    kind: ResultKind
    value_json: str | None = None
    """The literal value as JSON text (literal results only)."""
    storage: str | None = None
    """The storage's description or slug, e.g. `local-file-system/dev` (persisted results only)."""
    key: str | None = None
    """Where the result is inside that storage (persisted results only)."""
    serializer: str | None = None
    """The serializer type the result was written with, e.g. `pickle` (persisted results only)."""

    @classmethod
    def literal(cls, value: Any) -> ResultRef:
        """A value stored inline; it must be JSON serializable (ferroflow inlines None/True/False)."""
        try:
            text = json.dumps(value)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"A literal result must be JSON serializable, got {type(value).__name__}: {error}. "
                "Persist the result instead and record ResultRef.persisted(storage, key, serializer)."
            ) from None
        return cls(kind="literal", value_json=text)

    @classmethod
    def persisted(cls, storage: str, key: str, serializer: str) -> ResultRef:
        """A result written to `storage` under `key` by the `serializer` type."""
        return cls(kind="persisted", storage=storage, key=key, serializer=serializer)

    @classmethod
    def from_result_reference(cls, reference: Mapping[str, Any]) -> ResultRef | None:
        """From a result's `to_reference()` (`ferroflow.results`): a literal `{"type": "result",
        "value": json}` or a persisted `{"type": "reference", "storage": description or slug,
        "storage_key": ..., "serializer_type": ...}`. None for an unpersisted result: there is
        nothing to refer to."""
        kind = reference.get("type")
        if kind == "result":
            return cls(kind="literal", value_json=reference["value"])
        if kind == "reference":
            storage = reference["storage"]
            # A storage description (a dict) is kept as canonical JSON text, a slug as it is.
            text = storage if isinstance(storage, str) else json.dumps(storage, sort_keys=True)
            return cls.persisted(text, reference["storage_key"], reference["serializer_type"])
        if kind == "unpersisted":
            return None
        raise ValueError(
            f"Unknown result reference type {kind!r}; expected 'result', 'reference' or 'unpersisted' "
            "(the forms ferroflow.results' to_reference() gives)."
        )

    def to_result_reference(self) -> dict[str, Any]:
        """The reference `ferroflow.results.result_from_reference` reopens (a cache hit's result)."""
        if self.kind == "literal":
            return {"type": "result", "value": self.value_json}
        storage: Any = self.storage
        if storage is not None and storage.startswith("{"):
            storage = json.loads(storage)
        return {"type": "reference", "storage": storage, "storage_key": self.key,
                "serializer_type": self.serializer}

    @property
    def value(self) -> Any:
        """The literal value (literal results only)."""
        if self.kind != "literal" or self.value_json is None:
            raise ValueError(f"A {self.kind} result reference holds no inline value; read it from storage.")
        return json.loads(self.value_json)

    def describe(self) -> str:
        """A one-line human form, as the CLI shows it."""
        if self.kind == "literal":
            return f"literal {self.value_json}"
        return f"{(self.key or '')[:12]} ({self.serializer}) in {_storage_place(self.storage or '')}"

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "literal":
            return {"kind": "literal", "value": self.value}
        return {"kind": "persisted", "storage": self.storage, "key": self.key, "serializer": self.serializer}


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



def _storage_place(storage: str) -> str:
    """Where a persisted result lives, short enough for a table cell: a saved storage's slug, a
    local folder, or the storage description as recorded."""
    if not storage.startswith("{"):
        return storage  # a slug such as "local-file-system/dev"
    try:
        description = json.loads(storage)
    except ValueError:
        return storage
    if description.get("type") == "local-file-system":
        return description.get("basepath") or "the default local storage"
    return str(description.get("type", storage))
