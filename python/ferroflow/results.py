"""Result types, and the factory that turns a flow's or task's return value into one.

- `LiteralResult`: None/True/False, kept inline in the state, never written to storage.
- `UnpersistedResult`: a value kept only in memory (or, with `cache_result_in_memory=False`, not at all).
- `PersistedResult`: a reference to a framed blob in result storage (storage, key, serializer type);
  `get()` loads, verifies and (unless told not to) caches the value.
- `PersistedResultBlob`: the persisted document in its JSON export form (serializer description,
  base64 data, version), also the form Prefect 2 wrote; `read_result` reads both that and ferroflow's
  framed binary files.
"""

from __future__ import annotations

import base64
import functools
import json
import threading
from dataclasses import dataclass, field
from os import PathLike
from typing import TYPE_CHECKING, Any, ClassVar

from ferroflow import _core
from ferroflow.exceptions import MissingResult, PersistenceConfigurationError
from ferroflow.filesystems import LocalFileSystem, WritableFileSystem, resolve_storage
from ferroflow.runstore.ids import clock_ordered_uuid
from ferroflow.serializers import Serializer, resolve_serializer
from ferroflow.settings import get_current_settings

if TYPE_CHECKING:
    from ferroflow.runstore.records import ResultRef

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


class LiteralResult(BaseResult):
    type = "literal"

    def __init__(self, value: Any) -> None:
        if not is_literal(value):
            raise TypeError(f"LiteralResult holds only None, True or False, not {type(value).__name__}")
        self.value = value

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
        storage: WritableFileSystem,
        serializer: Serializer,
        storage_key: str | None = None,
        cache_in_memory: bool = True,
    ) -> PersistedResult:
        """Serialize `value` and write it to storage as one framed blob, atomically."""
        # Clock-ordered: the run store indexes states and cache entries by result key.
        key = storage_key or clock_ordered_uuid().hex
        settings = get_current_settings()
        codec, level = serializer.frame_codec
        # lzma and zstd gain from their multi-threaded encoders on large segments (0: one per core).
        threads = 0 if codec in ("lzma", "zstd") else 1
        storage.write_blob(
            key,
            serializer.dump_segments(value),
            serializer_json=_description_json(serializer),
            codec=codec,
            level=level,
            threads=threads,
            durable=settings.results_fsync,
        )
        result = cls(
            storage=storage,
            storage_key=key,
            serializer_type=serializer.type,
            cache_in_memory=cache_in_memory,
        )
        if cache_in_memory:
            result._value = value
        return result

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
            raise MissingResult(
                f"The result file {self.storage_key!r} is missing from {self.storage!r}; it was "
                "deleted or the storage moved. Re-run the flow or task to produce it again."
            ) from error
        return _serializer_from_json(header.serializer).load_segments(segments)

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
        serializer = _serializer_from_json(header.serializer)
        return PersistedResultBlob(serializer=serializer.to_description(), data=serializer.dumps(self.get()))

    def __repr__(self) -> str:
        return (
            f"PersistedResult(storage={self.storage!r}, storage_key={self.storage_key!r}, "
            f"serializer_type={self.serializer_type!r})"
        )


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


@dataclass
class PersistedResultBlob:
    """The spec's persisted document: serializer description, the serialized data, the version.

    ferroflow writes framed binary blobs; this JSON form (data base64-encoded) is for export and
    for reading what Prefect 2 wrote.
    """

    serializer: dict[str, Any]
    data: bytes
    ferroflow_version: str = field(default=_core.__version__)

    def to_json(self) -> str:
        return json.dumps(
            {
                "serializer": self.serializer,
                "data": base64.b64encode(self.data).decode("ascii"),
                "ferroflow_version": self.ferroflow_version,
            }
        )

    @classmethod
    def from_json(cls, document: str | bytes) -> PersistedResultBlob:
        fields = json.loads(document)
        if "prefect_version" in fields:
            raise ValueError("this is a Prefect 2 result document; read it with read_result()")
        return cls(
            serializer=fields["serializer"],
            data=base64.b64decode(fields["data"]),
            ferroflow_version=fields.get("ferroflow_version", "unknown"),
        )

    def load(self) -> Any:
        return Serializer.from_description(self.serializer).loads(self.data)


def read_result(path: str | PathLike[str]) -> Any:
    """The value held in a result file: a ferroflow framed blob, a ferroflow JSON document, or a
    JSON result file written by Prefect 2.x."""
    with open(path, "rb") as file:
        first = file.read(1)
    if first != b"{":
        header, segments = _core.map_blob(path)
        return _serializer_from_json(header.serializer).load_segments(segments)
    fields = json.loads(_core.read_file(path))
    if "prefect_version" in fields:
        # Prefect 2 serializers base64-encoded their own output; loads_prefect2 undoes that.
        return Serializer.from_description(fields["serializer"]).loads_prefect2(fields["data"].encode())
    return PersistedResultBlob.from_json(json.dumps(fields)).load()


MAP_FROM_BYTES = 32 * 1024
"""Result files from this size on are memory-mapped; smaller ones are read in one call (measured:
reading wins below ~48 KiB, mapping above)."""


def _read_blob_segments(storage: WritableFileSystem, key: str) -> tuple[Any, list[Any]]:
    """The verified segments of the blob at `key`. A small file in a local folder is read whole,
    holding the GIL: mapping and unmapping it, or handing the GIL to another thread and waiting
    to get it back, costs more than copying a few pages. Large files are mapped, so uncompressed
    segments are not copied. One call into the core decides by the file's size (no stat first)."""
    if type(storage) is LocalFileSystem:
        return _core.load_blob(storage.path_of(key), MAP_FROM_BYTES)  # type: ignore[no-any-return]
    return storage.map_blob(key)


@functools.lru_cache(maxsize=256)
def _serializer_from_json(description_json: str) -> Serializer:
    # Headers repeat the same few descriptions; building a serializer once per description keeps
    # reads of many small results cheap.
    return Serializer.from_description(json.loads(description_json))


def _description_json(serializer: Serializer) -> str:
    return json.dumps(serializer.to_description(), sort_keys=True)


@functools.lru_cache(maxsize=64)
def _default_local_storage(basepath: str) -> LocalFileSystem:
    return LocalFileSystem(basepath=basepath)


class ResultFactory:
    """Decides how a flow's or task's return value becomes a result.

    The engine calls `from_flow` when a flow run starts (with the enclosing flow run's factory for a
    subflow), `from_task` when a task run starts (with its flow run's factory), and
    `create_result(value)` when the run completes. Storage and serializer are resolved lazily, the
    first time a result is persisted, so runs that persist nothing pay nothing for them.
    """

    def __init__(
        self,
        *,
        persist_result: bool,
        cache_result_in_memory: bool = True,
        storage: Any = None,
        serializer: Any = None,
        children_need_persistence: str | None = None,
        owner: str = "",
    ) -> None:
        self.persist_result = persist_result
        self.cache_result_in_memory = cache_result_in_memory
        self._storage_spec = storage
        self._serializer_spec = serializer
        # Why the tasks and subflows of this run must persist ("flow 'x' has retries"), or None.
        self.children_need_persistence = children_need_persistence
        self.owner = owner
        self._resolved_storage: WritableFileSystem | None = None
        self._resolved_serializer: Serializer | None = None

    @property
    def storage(self) -> WritableFileSystem:
        if self._resolved_storage is None:
            if self._storage_spec is None:
                path = str(get_current_settings().local_storage_path)
                self._resolved_storage = _default_local_storage(path)
            else:
                self._resolved_storage = resolve_storage(self._storage_spec)
        return self._resolved_storage

    @property
    def serializer(self) -> Serializer:
        if self._resolved_serializer is None:
            spec = self._serializer_spec
            if spec is None:
                spec = get_current_settings().results_default_serializer
            self._resolved_serializer = resolve_serializer(spec)
        return self._resolved_serializer

    @classmethod
    def from_flow(cls, flow: Any, parent: ResultFactory | None = None) -> ResultFactory:
        retries = getattr(flow, "retries", 0) or 0
        factory = cls._for_run("flow", flow, parent)
        if retries > 0:
            factory.children_need_persistence = f"{factory.owner} has retries={retries}"
        return factory

    @classmethod
    def from_task(cls, task: Any, flow_factory: ResultFactory | None = None) -> ResultFactory:
        return cls._for_run("task", task, flow_factory)

    @classmethod
    def _for_run(cls, kind: str, definition: Any, parent: ResultFactory | None) -> ResultFactory:
        """A factory for a run of `definition` (a flow or task): its own options, else its parent's
        storage and serializer, and the spec's rules for whether to persist."""
        owner = f"{kind} {getattr(definition, 'name', definition)!r}"
        storage = getattr(definition, "result_storage", None)
        serializer = getattr(definition, "result_serializer", None)
        if parent is not None:
            storage = storage if storage is not None else parent._storage_or_spec()
            serializer = serializer if serializer is not None else parent._serializer_or_spec()
        cache_result_in_memory = getattr(definition, "cache_result_in_memory", True)
        return cls(
            persist_result=_decide_persistence(
                owner=owner,
                persist_result=getattr(definition, "persist_result", None),
                required_by=_features_requiring_persistence(definition, parent),
                cache_result_in_memory=cache_result_in_memory,
            ),
            cache_result_in_memory=cache_result_in_memory,
            storage=storage,
            serializer=serializer,
            owner=owner,
        )

    def _storage_or_spec(self) -> Any:
        return self._resolved_storage if self._resolved_storage is not None else self._storage_spec

    def _serializer_or_spec(self) -> Any:
        return self._resolved_serializer if self._resolved_serializer is not None else self._serializer_spec

    def create_result(self, value: Any, *, storage_key: str | None = None) -> BaseResult:
        if is_literal(value):
            return LiteralResult(value)
        if not self.persist_result:
            return UnpersistedResult(value, keep_in_memory=self.cache_result_in_memory)
        return PersistedResult.create(
            value,
            storage=self.storage,
            serializer=self.serializer,
            storage_key=storage_key,
            cache_in_memory=self.cache_result_in_memory,
        )

    def __repr__(self) -> str:
        return (
            f"ResultFactory({self.owner}, persist_result={self.persist_result}, "
            f"cache_result_in_memory={self.cache_result_in_memory})"
        )


def _features_requiring_persistence(run_definition: Any, parent: ResultFactory | None) -> list[str]:
    """Features that cannot work without the result persisted: `persist_result=False` with them is
    an error (Prefect 2 ignored it silently)."""
    features = []
    if getattr(run_definition, "cache_key_fn", None) is not None:
        features.append("a cache key function (cache_key_fn)")
    if parent is not None and parent.children_need_persistence:
        features.append(f"flow retries ({parent.children_need_persistence})")
    return features


def _decide_persistence(
    *, owner: str, persist_result: bool | None, required_by: list[str], cache_result_in_memory: bool
) -> bool:
    if persist_result is False and required_by:
        raise PersistenceConfigurationError(
            f"{owner} has persist_result=False but uses {' and '.join(required_by)}, which needs "
            "its result persisted. Remove persist_result=False (or set it to True), or stop "
            "using that feature."
        )
    if persist_result is not None:
        return persist_result
    # Dropping the result from memory makes persistence the default: otherwise it would be lost.
    # (With persist_result=False as well, the spec makes the result unavailable, not an error.)
    if required_by or not cache_result_in_memory:
        return True
    return get_current_settings().results_persist_by_default


__all__ = [
    "BaseResult",
    "LiteralResult",
    "PersistedResult",
    "PersistedResultBlob",
    "ResultFactory",
    "UnpersistedResult",
    "is_literal",
    "read_result",
    "result_from_reference",
]
