"""The result types a state's `data` holds.

- `LiteralResult`: None/True/False, kept inline in the state, never written to storage.
- `UnpersistedResult`: a value kept only in memory (or, with `cache_result_in_memory=False`, not at all).
- `PersistedResult`: a reference to a framed blob in result storage (storage, key, serializer type);
  `get()` loads, verifies and (unless told not to) caches the value.

Each has Prefect 2's `create(...)` constructor and `has_cached_object()`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import ferroflow._core as _core
from ferroflow.exceptions import MissingResult
from ferroflow.filesystems import LocalFileSystem, WritableFileSystem, resolve_storage
from ferroflow.ids import clock_ordered_uuid
from ferroflow.result_trust import read_policy
from ferroflow.results.blobs import PersistedResultBlob, description_json, serializer_from_json
from ferroflow.serializers import Serializer, resolve_serializer
from ferroflow.settings import get_current_settings

if TYPE_CHECKING:
    from ferroflow.results.result_ref import ResultRef

_MISSING: Any = object()


def is_literal(value: Any) -> bool:
    """Values stored inline in the state rather than in result storage (the spec's literal types)."""
    return value is None or value is True or value is False


class BaseResult:
    """What `State.data` holds: `get()` returns the value, loading it from storage if needed."""

    type: ClassVar[str] = "base"

    def get(self) -> Any:
        raise NotImplementedError

    def to_reference(self) -> dict[str, Any]:
        """A JSON-able description a run store can keep and `result_from_reference` can reopen."""
        raise NotImplementedError

    def has_cached_object(self) -> bool:
        """Whether the value is in memory, so `get()` reads no storage."""
        return True


class LiteralResult(BaseResult):
    type = "literal"

    def __init__(self, value: Any) -> None:
        if not is_literal(value):
            raise TypeError(f"LiteralResult holds only None, True or False, not {type(value).__name__}")
        self.value = value

    @classmethod
    def create(cls, obj: Any) -> LiteralResult:
        """Prefect 2's constructor: `LiteralResult.create(None)`."""
        return cls(obj)

    def get(self) -> Any:
        return self.value

    def json(self) -> str:
        """The spec's inline form: `{"type": "result", "value": "null"}`."""
        return json.dumps(self.to_reference())

    def to_reference(self) -> dict[str, Any]:
        return {"type": "result", "value": json.dumps(self.value)}

    def __repr__(self) -> str:
        return f"LiteralResult(value={self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LiteralResult) and other.value is self.value

    __hash__ = None  # type: ignore[assignment]


class UnpersistedResult(BaseResult):
    type = "unpersisted"

    def __init__(self, value: Any, *, keep_in_memory: bool = True) -> None:
        self._value = value if keep_in_memory else _MISSING

    @classmethod
    def create(cls, obj: Any, cache_object: bool = True) -> UnpersistedResult:
        """Prefect 2's constructor: `UnpersistedResult.create(value)`; with `cache_object=False`
        the value is dropped and `get()` raises MissingResult."""
        return cls(obj, keep_in_memory=cache_object)

    def has_cached_object(self) -> bool:
        return self._value is not _MISSING

    def get(self) -> Any:
        if self._value is _MISSING:
            raise MissingResult(
                "This result was neither kept in memory (cache_result_in_memory=False) nor persisted "
                "(persist_result=False), so it is not available downstream. Set persist_result=True "
                "(or drop persist_result=False) to read it from storage, or keep it in memory."
            )
        return self._value

    def to_reference(self) -> dict[str, Any]:
        return {"type": self.type}

    def __reduce__(self) -> tuple[Any, ...]:
        # The "missing" marker is this process's own object: pickle whether the value is there.
        if self._value is _MISSING:
            return (_missing_unpersisted, ())
        return (UnpersistedResult, (self._value,))

    def __repr__(self) -> str:
        state = "missing" if self._value is _MISSING else "in memory"
        return f"UnpersistedResult({state})"


class PersistedResult(BaseResult):
    """A reference to a result blob in storage; `get()` reads it back through the core."""

    type = "reference"

    def __init__(
        self,
        *,
        storage: WritableFileSystem,
        storage_key: str,
        serializer_type: str,
        cache_in_memory: bool = True,
    ) -> None:
        self.storage = storage
        self.storage_key = storage_key
        self.serializer_type = serializer_type
        self.cache_in_memory = cache_in_memory
        self._value: Any = _MISSING
        self._lock = threading.Lock()
        # How the run store refers to this result, once the engine has made it (it records the
        # reference with every state holding this result; see `_engine.recording`).
        self.store_reference: ResultRef | None = None

    @classmethod
    def create(
        cls,
        value: Any,
        *,
        storage: WritableFileSystem | str | None = None,
        serializer: Serializer | str | None = None,
        storage_key: str | None = None,
        cache_in_memory: bool = True,
        storage_block: WritableFileSystem | str | None = None,
        storage_block_id: Any = None,
        storage_key_fn: Callable[[], str] | None = None,
        cache_object: bool | None = None,
    ) -> PersistedResult:
        """Serialize `value` and write it to storage as one framed blob, atomically.

        `storage` is a storage or a saved storage's slug; `serializer` a serializer, a type name
        or None for FERROFLOW_RESULTS_DEFAULT_SERIALIZER. Prefect 2's names are accepted too:
        `storage_block=`, `storage_key_fn=` (called for the key), `cache_object=`;
        `storage_block_id=` is ignored (it named the block on a Prefect server).
        """
        if storage is None:
            storage = storage_block
        if storage is None:
            raise TypeError("PersistedResult.create() needs storage=, e.g. LocalFileSystem(basepath=...).")
        if storage_key is None and storage_key_fn is not None:
            storage_key = storage_key_fn()
        return cls._write(
            value,
            storage=resolve_storage(storage),
            serializer=resolve_serializer(serializer),
            storage_key=storage_key,
            cache_in_memory=cache_in_memory if cache_object is None else cache_object,
        )

    @classmethod
    def _write(
        cls,
        value: Any,
        *,
        storage: WritableFileSystem,
        serializer: Serializer,
        storage_key: str | None,
        cache_in_memory: bool,
    ) -> PersistedResult:
        # Clock-ordered: the run store indexes states and cache entries by result key.
        key = storage_key or clock_ordered_uuid().hex
        settings = get_current_settings()
        # `writer` differs from `serializer` when that one stored its wrapped serializer's bytes
        # (compression that would have grown the payload); the result keeps `serializer`'s type.
        writer, segments = serializer.dump_for_storage(value)
        codec, level = writer.frame_codec
        # lzma and zstd gain from their multi-threaded encoders on large segments (0: one per core).
        threads = 0 if codec in ("lzma", "zstd") else 1
        storage.write_blob(
            key,
            segments,
            serializer_json=description_json(writer),
            codec=codec,
            level=level,
            threads=threads,
            durable=settings.results_fsync,
        )
        if settings.results_max_bytes is not None and type(storage) is LocalFileSystem:
            _keep_under_limit(storage, key, settings.results_max_bytes)
        result = cls(
            storage=storage,
            storage_key=key,
            serializer_type=serializer.type,
            cache_in_memory=cache_in_memory,
        )
        if cache_in_memory:
            result._value = value
        return result

    def has_cached_object(self) -> bool:
        return self._value is not _MISSING

    def get(self) -> Any:
        value = self._value
        if value is not _MISSING:
            return value
        with self._lock:
            if self._value is not _MISSING:
                return self._value
            value = self._load()
            if self.cache_in_memory:
                self._value = value
        return value

    def _load(self) -> Any:
        try:
            header, segments = _read_blob_segments(self.storage, self.storage_key)
        except FileNotFoundError as error:
            removed = _removal_note(self.storage, self.storage_key)
            if removed is not None:
                raise MissingResult(
                    f"The result file {self.storage_key!r} of {self.storage!r} was {removed}. "
                    "Re-run the flow or task to produce it again."
                ) from error
            raise MissingResult(
                f"The result file {self.storage_key!r} is missing from {self.storage!r}; it was "
                "deleted or the storage moved. Re-run the flow or task to produce it again."
            ) from error
        return serializer_from_json(header.serializer, self.serializer_type).load_segments(segments)

    def __reduce__(self) -> tuple[Any, ...]:
        # A persisted result travels to other processes as its reference, never with its value:
        # the receiver reads the value from storage if and when it needs it.
        fields = (self.storage, self.storage_key, self.serializer_type, self.cache_in_memory)
        return (_persisted_result, (*fields, self.store_reference))

    def to_reference(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "storage": self.storage.to_description(),
            "storage_key": self.storage_key,
            "serializer_type": self.serializer_type,
        }

    @classmethod
    def from_reference(cls, reference: dict[str, Any], *, cache_in_memory: bool = True) -> PersistedResult:
        return cls(
            storage=WritableFileSystem.from_description(reference["storage"]),
            storage_key=reference["storage_key"],
            serializer_type=reference["serializer_type"],
            cache_in_memory=cache_in_memory,
        )

    def to_blob(self) -> PersistedResultBlob:
        """This result as the JSON-document export form (the value is loaded and re-serialized
        in-band, since the document holds one data field)."""
        header = self.storage.read_header(self.storage_key)
        serializer = serializer_from_json(header.serializer, self.serializer_type)
        return PersistedResultBlob(serializer=serializer.to_description(), data=serializer.dumps(self.get()))

    def __repr__(self) -> str:
        return (
            f"PersistedResult(storage={self.storage!r}, storage_key={self.storage_key!r}, "
            f"serializer_type={self.serializer_type!r})"
        )


def _missing_unpersisted() -> UnpersistedResult:
    return UnpersistedResult(None, keep_in_memory=False)


def _persisted_result(
    storage: WritableFileSystem,
    storage_key: str,
    serializer_type: str,
    cache_in_memory: bool,
    store_reference: ResultRef | None,
) -> PersistedResult:
    result = PersistedResult(
        storage=storage,
        storage_key=storage_key,
        serializer_type=serializer_type,
        cache_in_memory=cache_in_memory,
    )
    result.store_reference = store_reference
    return result


MAP_FROM_BYTES = 32 * 1024
"""Result files from this size on are memory-mapped; smaller ones are read in one call (measured:
reading wins below ~48 KiB, mapping above)."""


def _read_blob_segments(storage: WritableFileSystem, key: str) -> tuple[Any, list[Any]]:
    """The verified segments of the blob at `key`. A small file in a local folder is read whole,
    holding the GIL: mapping and unmapping it, or handing the GIL to another thread and waiting
    to get it back, costs more than copying a few pages. Large files are mapped, so uncompressed
    segments are not copied. One call into the core decides by the file's size (no stat first)."""
    if type(storage) is LocalFileSystem:
        return _core.load_blob(  # type: ignore[no-any-return]
            storage.path_of(key), MAP_FROM_BYTES, key=key, policy=read_policy()
        )
    return storage.map_blob(key)


def _keep_under_limit(storage: LocalFileSystem, key: str, max_bytes: int) -> None:
    """FERROFLOW_RESULTS_MAX_BYTES: evict least recently used results after a write."""
    from ferroflow.results.retention import after_write  # only with the setting on

    try:
        written = os.stat(storage.path_of(key)).st_size
    except OSError:
        return  # evicted already by another process: nothing to count
    after_write(storage.root, written, max_bytes)


def _removal_note(storage: WritableFileSystem, key: str) -> str | None:
    """Why a result is gone, if ferroflow's retention removed it (its tombstone says)."""
    from ferroflow.results.retention import removal_note

    record_storage = getattr(storage, "record_storage", None)  # a bucket keeps its tombstones
    if isinstance(storage, LocalFileSystem):
        where: Any = storage.root
    elif callable(record_storage):
        where = record_storage()
    else:
        return None
    try:
        return removal_note(where, key)
    except (OSError, ValueError):
        return None
