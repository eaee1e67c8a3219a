"""Result references: how a run store, a cache entry or another process names a result without
holding its value, and every conversion between a result and its reference. This is their one
home.

- `ResultRef` (defined in `result_ref`, below the result types that carry one): the reference
  the run store keeps (a literal inline as JSON, or storage + key + serializer type), with its
  dict form (`from_result_reference` / `to_result_reference`).
- `result_reference(result)`: the `ResultRef` of a state's result (None for in-memory results).
- `storage_reference(storage)` / `storage_from_reference(text)`: a storage as JSON text or slug.
- `reopen_result(reference)`: the result a `ResultRef` names, read back and verified.
- `result_from_reference(dict)`: the result a result's `to_reference()` dict names.
"""

from __future__ import annotations

import json
from typing import Any

from ferroflow.filesystems import WritableFileSystem, resolve_storage
from ferroflow.results.base import BaseResult, LiteralResult, PersistedResult, UnpersistedResult
from ferroflow.results.result_ref import ResultRef

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
