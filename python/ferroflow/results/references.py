"""Result references: how a run store, a cache entry or another process names a result without
holding its value, and every conversion between a result and its reference. This is their one
home.

- `ResultRef`: the reference the run store keeps (a literal inline as JSON, or storage + key +
  serializer type), with its dict form (`from_result_reference` / `to_result_reference`).
- `result_reference(result)`: the `ResultRef` of a state's result (None for in-memory results).
- `storage_reference(storage)` / `storage_from_reference(text)`: a storage as JSON text or slug.
- `reopen_result(reference)`: the result a `ResultRef` names, read back and verified.
- `result_from_reference(dict)`: the result a result's `to_reference()` dict names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ferroflow.filesystems import WritableFileSystem, resolve_storage
from ferroflow.results.base import BaseResult, LiteralResult, PersistedResult, UnpersistedResult

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


_LITERAL_REFERENCES = {
    None: ResultRef.literal(None),
    True: ResultRef.literal(True),
    False: ResultRef.literal(False),
}


def result_reference(data: Any) -> ResultRef | None:
    """How the store refers to a state's result: a literal inline, a persisted result by its
    storage, key and serializer. Other results (in memory only, exceptions) have none."""
    kind = type(data)
    if kind is LiteralResult:
        return _LITERAL_REFERENCES[data.value]
    if kind is PersistedResult:
        reference = data.store_reference
        if reference is None:
            reference = data.store_reference = ResultRef.persisted(
                storage_reference(data.storage), data.storage_key, data.serializer_type
            )
        return reference
    return None


# A storage's description, as JSON text: how result references name their storage. Computed
# once per storage object (its pydantic dump is slow for the hot path); storages are few.
_storage_references: dict[int, tuple[WritableFileSystem, str]] = {}


def storage_reference(storage: WritableFileSystem) -> str:
    known = _storage_references.get(id(storage))
    if known is not None and known[0] is storage:
        return known[1]
    text = json.dumps(storage.to_description(), sort_keys=True)
    if len(_storage_references) > 256:
        _storage_references.clear()
    _storage_references[id(storage)] = (storage, text)
    return text


_storages_by_reference: dict[str, WritableFileSystem] = {}


def storage_from_reference(reference: str) -> WritableFileSystem:
    """The storage a result reference names: a description as JSON text (what the engine
    records, see `storage_reference`) or a saved storage's slug (`local-file-system/dev`)."""
    storage = _storages_by_reference.get(reference)
    if storage is None:
        if reference.startswith("{"):
            storage = WritableFileSystem.from_description(json.loads(reference))
        else:
            storage = resolve_storage(reference)
        if len(_storages_by_reference) > 256:
            _storages_by_reference.clear()
        _storages_by_reference[reference] = storage
        _storage_references[id(storage)] = (storage, reference)
    return storage


def reopen_result(reference: ResultRef, *, cache_in_memory: bool = True) -> BaseResult:
    """The result `reference` names, read back and verified now: a missing or damaged file
    raises here, while the caller can still do without it. The value is kept in memory unless
    `cache_in_memory` is False."""
    if reference.kind == "literal":
        return LiteralResult(reference.value)
    result = PersistedResult(
        storage=storage_from_reference(reference.storage),  # type: ignore[arg-type]
        storage_key=reference.key,  # type: ignore[arg-type]
        serializer_type=reference.serializer,  # type: ignore[arg-type]
        cache_in_memory=cache_in_memory,
    )
    result.store_reference = reference  # states holding this result are recorded with the same
    result.get()
    return result


def result_from_reference(reference: dict[str, Any]) -> BaseResult:
    """Reopen a result from the description `to_reference()` gave (as kept by a run store)."""
    kind = reference.get("type")
    if kind == "result":
        return LiteralResult(json.loads(reference["value"]))
    if kind == PersistedResult.type:
        return PersistedResult.from_reference(reference)
    if kind == UnpersistedResult.type:
        return UnpersistedResult(None, keep_in_memory=False)
    raise ValueError(f"unknown result reference type {kind!r}; expected 'result' or 'reference'")


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
