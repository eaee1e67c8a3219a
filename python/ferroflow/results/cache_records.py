"""Cache records: the task cache kept with the results, where every process that reaches the
storage finds it.

A cache record is a small JSON object in the result storage (or in the `cache_storage` a cache
policy names), under the cache key: where the result is (its `ResultRef`), the serializer, when
the record expires, when it was made, by which flow run and task run, and by which ferroflow
version. A record is created with a *create-only* put after its result is written, so a reader
never finds a record whose result is not there yet; the run store keeps an index of records for
listing (`ferroflow cache ls`), but the storage is the truth.

Storage side: `RecordStorage` is all the cache needs from a storage — create an object only if
it does not exist yet, read it, replace it, delete it, list keys under a prefix. `LocalRecordStorage`
implements it on a folder (create-only is a hard link of a finished temporary file: atomic, and
refused when the name exists). A bucket implements it with conditional puts (`If-None-Match: *`).
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import ferroflow._core as _core
from ferroflow.filesystems import LocalFileSystem, WritableFileSystem, resolve_storage
from ferroflow.results.result_ref import ResultRef
from ferroflow.version import __version__

_loads: Callable[[bytes], Any]
try:  # a record is parsed on every cache hit: orjson when installed (the `orjson` extra)
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads

RECORD_FORMAT = "ferroflow-cache-record"
RECORD_VERSION = 1
# Where records and locks live inside a storage: a folder no result key can take by accident
# (result keys are clock-ordered hex ids or user templates).
RECORDS_PREFIX = ".ferroflow-cache/records/"
LOCKS_PREFIX = ".ferroflow-cache/locks/"


class RecordStorage(Protocol):
    """What cache records and locks need from a storage."""

    def create_only(self, key: str, data: bytes) -> bool:
        """Create the object `key` holding `data` if no object has that key; True if this call
        created it, False if one existed. Readers see the whole object or nothing."""
        ...

    def replace(self, key: str, data: bytes) -> None:
        """Write the object `key`, whether or not it exists (atomically)."""
        ...

    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        ...

    def delete(self, key: str) -> bool:
        """Remove the object; True if this call removed it, False if there was none."""
        ...

    def list_keys(self, prefix: str) -> Iterator[str]:
        """The keys under `prefix` (a folder-like prefix ending in "/")."""
        ...

    def describe(self) -> str: ...


_names = itertools.count()
_process: tuple[int, str] = (-1, "")


def unique_name() -> str:
    """A name no other call — in this process, another process or another machine — makes: a
    random id drawn once per process (again in a forked child), and a counter. Cheaper than a
    uuid4 per call, whose random bytes cost a system call."""
    global _process
    pid = os.getpid()
    if _process[0] != pid:
        _process = (pid, uuid.uuid4().hex)
    return f"{_process[1]}-{next(_names)}"


_READ_CHUNK = 1 << 16
_PLAIN_CACHE_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
_PLAIN_KEY = re.compile(r"\.ferroflow-cache/(?:records|locks)/[A-Za-z0-9_-][A-Za-z0-9_.-]*")


class LocalRecordStorage:
    """`RecordStorage` on a local folder (the root of a `LocalFileSystem`)."""

    __slots__ = ("root", "_made")

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        self._made: set[str] = set()

    def path_of(self, key: str) -> str:
        if _PLAIN_KEY.fullmatch(key):  # the names this module makes: no need to resolve them
            return self.root + "/" + key
        return str(_core.resolve_key(self.root, key))

    def _temporary(self, path: str, data: bytes) -> str:
        folder = os.path.dirname(path)
        if folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)
        temporary = f"{path}.{unique_name()}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(descriptor, data)
        finally:
            os.close(descriptor)
        return temporary

    def create_only(self, key: str, data: bytes) -> bool:
        path = self.path_of(key)
        temporary = self._temporary(path, data)
        try:
            os.link(temporary, path)  # refused if `path` exists: the create-only put
        except FileExistsError:
            return False
        finally:
            os.unlink(temporary)
        return True

    def replace(self, key: str, data: bytes) -> None:
        path = self.path_of(key)
        os.replace(self._temporary(path, data), path)

    def read(self, key: str) -> bytes | None:
        # os.open/os.read rather than open(): a record is read on every cache hit, and the
        # buffered file object costs more than the read itself.
        try:
            descriptor = os.open(self.path_of(key), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            data = os.read(descriptor, _READ_CHUNK)
            if len(data) < _READ_CHUNK:
                return data
            parts = [data]
            while data:
                data = os.read(descriptor, _READ_CHUNK)
                parts.append(data)
            return b"".join(parts)
        finally:
            os.close(descriptor)

    def delete(self, key: str) -> bool:
        try:
            os.unlink(self.path_of(key))
        except FileNotFoundError:
            return False
        return True

    def list_keys(self, prefix: str) -> Iterator[str]:
        folder = self.path_of(prefix.rstrip("/"))
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return
        for name in sorted(names):
            if not name.endswith(".tmp"):
                yield prefix + name

    def describe(self) -> str:
        return self.root

    def __repr__(self) -> str:
        return f"LocalRecordStorage({self.root!r})"


_record_storages: dict[str, LocalRecordStorage] = {}
_lock = threading.Lock()


def record_storage_for(storage: WritableFileSystem | str | os.PathLike[str] | None) -> RecordStorage:
    """The record storage of a result storage (or a saved storage's slug, or a folder)."""
    if isinstance(storage, (str, os.PathLike)) and not _looks_like_slug(storage):
        root = str(Path(os.fsdecode(storage)).expanduser().absolute())
    else:
        resolved = resolve_storage(storage)  # type: ignore[arg-type]
        records = getattr(resolved, "record_storage", None)
        if callable(records):  # a storage that brings its own (a bucket)
            return records()  # type: ignore[no-any-return]
        if not isinstance(resolved, LocalFileSystem):
            raise TypeError(
                f"{type(resolved).__name__} storage cannot hold cache records yet; give the cache "
                "policy a local cache_storage (policy.configure(cache_storage=...))."
            )
        root = resolved.root
    found = _record_storages.get(root)
    if found is None:
        with _lock:
            found = _record_storages.setdefault(root, LocalRecordStorage(root))
    return found


def _looks_like_slug(value: Any) -> bool:
    return isinstance(value, str) and value.count("/") == 1 and not value.startswith((".", "/", "~"))


@dataclass(frozen=True, slots=True)
class CacheRecord:
    """A cache entry, as kept in the storage."""

    key: str
    result: ResultRef
    task_name: str
    created: datetime.datetime
    expiration: datetime.datetime | None = None
    flow_run_id: str | None = None
    task_run_id: str | None = None
    ferroflow_version: str = __version__

    def is_expired(self, now: datetime.datetime | None = None) -> bool:
        if self.expiration is None:
            return False
        return self.expiration <= (now or datetime.datetime.now(datetime.UTC))

    def to_dict(self) -> dict[str, Any]:
        """As `ferroflow cache ls --json` shows an entry."""
        return {
            "key": self.key,
            "task_name": self.task_name,
            "result": self.result.to_dict(),
            "created": self.created.isoformat(),
            "expiration": None if self.expiration is None else self.expiration.isoformat(),
            "flow_run_id": self.flow_run_id,
            "task_run_id": self.task_run_id,
            "ferroflow_version": self.ferroflow_version,
        }

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "format": RECORD_FORMAT,
                "version": RECORD_VERSION,
                "key": self.key,
                "result": _reference_document(self.result),
                "serializer": self.result.serializer,
                "task_name": self.task_name,
                "created": self.created.isoformat(),
                "expiration": None if self.expiration is None else self.expiration.isoformat(),
                # The same as seconds since the epoch: what a lookup compares, without parsing.
                "expires_at": None if self.expiration is None else self.expiration.timestamp(),
                "flow_run_id": self.flow_run_id,
                "task_run_id": self.task_run_id,
                "ferroflow_version": self.ferroflow_version,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CacheRecord:
        document = _loads(data)
        if not isinstance(document, dict) or document.get("format") != RECORD_FORMAT:
            raise ValueError("not a ferroflow cache record")
        if document.get("version") != RECORD_VERSION:
            raise ValueError(f"cache record version {document.get('version')!r} is not known here")
        expiration = document.get("expiration")
        return cls(
            key=document["key"],
            result=_reference_from_document(document["result"]),
            task_name=document["task_name"],
            created=datetime.datetime.fromisoformat(document["created"]),
            expiration=None if expiration is None else datetime.datetime.fromisoformat(expiration),
            flow_run_id=document.get("flow_run_id"),
            task_run_id=document.get("task_run_id"),
            ferroflow_version=document.get("ferroflow_version", "unknown"),
        )


def _reference_document(reference: ResultRef) -> dict[str, Any]:
    if reference.kind == "literal":
        return {"kind": "literal", "value_json": reference.value_json}
    return {
        "kind": "persisted",
        "storage": reference.storage,
        "key": reference.key,
        "serializer": reference.serializer,
    }


def _reference_from_document(document: dict[str, Any]) -> ResultRef:
    if document["kind"] == "literal":
        return ResultRef(kind="literal", value_json=document["value_json"])
    return ResultRef.persisted(document["storage"], document["key"], document["serializer"])


def record_key(cache_key: str) -> str:
    """Where the record of `cache_key` lives in its storage. Keys that are not plain names
    (a cache_key_fn may return any string) are named by their digest."""
    if _PLAIN_CACHE_KEY.fullmatch(cache_key):
        return RECORDS_PREFIX + cache_key + ".json"
    digest = _core.hash_buffers([cache_key.encode("utf-8", "surrogatepass")], "blake3")
    return RECORDS_PREFIX + "h-" + str(digest) + ".json"


def read_record(storage: RecordStorage, cache_key: str) -> CacheRecord | None:
    """The record of `cache_key`, or None when there is none (or it cannot be read: a damaged
    record is a miss, and a new result replaces it)."""
    data = storage.read(record_key(cache_key))
    if data is None:
        return None
    try:
        record = CacheRecord.from_bytes(data)
    except (ValueError, KeyError, TypeError):
        return None
    return record if record.key == cache_key else None


# The records this process found or created, by (storage, cache key): their result reference and
# expiration (epoch seconds). A record is never changed once created (replacing one removes it and
# creates another), so one found can be used again without reading it, until it expires. Whoever
# uses one still reads the result it names, and forgets it (`forget_reference`) when that fails.
# A key without a record is never remembered: a record another process creates is found by the
# next lookup. A record another process removes (`ferroflow cache clear`) keeps serving this
# process as long as its result can be read.
_found: dict[tuple[str, str], tuple[ResultRef, float | None]] = {}
_FOUND_LIMIT = 1 << 16


def _identity(storage: RecordStorage) -> str:
    """What the records of `storage` are remembered under: its folder, or what a storage that
    `describe()` does not tell apart from others (buckets of different endpoints) gives as its
    `identity()`."""
    if type(storage) is LocalRecordStorage:
        return storage.root
    identity = getattr(storage, "identity", None)
    return str(identity()) if callable(identity) else f"{type(storage).__name__}:{storage.describe()}"


def remembered_reference(storage: RecordStorage, cache_key: str) -> ResultRef | None:
    """The result reference of `cache_key`'s record if this process found or created it before
    and it has not expired; None otherwise (then `cached_reference` reads the storage)."""
    found = _found.get((_identity(storage), cache_key))
    if found is None:
        return None
    reference, expires_at = found
    if expires_at is not None and expires_at <= time.time():
        return None
    return reference


def forget_reference(storage: RecordStorage, cache_key: str) -> None:
    """Forget what this process knows of `cache_key`'s record: the next lookup reads the storage."""
    _found.pop((_identity(storage), cache_key), None)


def _remember(storage: RecordStorage, cache_key: str, reference: ResultRef, expires_at: float | None) -> None:
    if len(_found) >= _FOUND_LIMIT:
        _found.clear()
    _found[(_identity(storage), cache_key)] = (reference, expires_at)


def cached_reference(storage: RecordStorage, cache_key: str) -> ResultRef | None:
    """The result reference of `cache_key`'s record if it has one that has not expired: what a
    cache lookup needs, read from the storage without building the whole record (and
    remembered: see `remembered_reference`)."""
    data = storage.read(record_key(cache_key))
    if data is None:
        return None
    try:
        document = _loads(data)
        if document["key"] != cache_key or document["version"] != RECORD_VERSION:
            return None
        expires_at = document["expires_at"]
        if expires_at is not None and expires_at <= time.time():
            return None
        reference = _reference_from_document(document["result"])
    except (ValueError, KeyError, TypeError):
        return None  # a damaged record is a miss; the next result replaces it
    _remember(storage, cache_key, reference, expires_at)
    return reference


def write_record(storage: RecordStorage, record: CacheRecord, *, replace_existing: bool) -> bool:
    """Create the record (create-only). With `replace_existing`, an existing record (expired,
    refreshed, or whose result is gone) is removed first; another writer may still win the
    create, which is fine: its record names an equally valid result. True if this call wrote it."""
    key = record_key(record.key)
    data = record.to_bytes()
    forget_reference(storage, record.key)
    created = storage.create_only(key, data)
    if not created and replace_existing:
        storage.delete(key)
        created = storage.create_only(key, data)
    if created:
        expires_at = None if record.expiration is None else record.expiration.timestamp()
        _remember(storage, record.key, record.result, expires_at)
    return created


def delete_record(storage: RecordStorage, cache_key: str) -> bool:
    forget_reference(storage, cache_key)
    return storage.delete(record_key(cache_key))


def list_records(storage: RecordStorage) -> Iterator[CacheRecord]:
    for key in storage.list_keys(RECORDS_PREFIX):
        data = storage.read(key)
        if data is None:  # removed since listed
            continue
        try:
            yield CacheRecord.from_bytes(data)
        except (ValueError, KeyError, TypeError):
            continue


def delete_records(
    storage: RecordStorage,
    *,
    key: str | None = None,
    task_name: str | None = None,
    expired_only: bool = False,
    now: datetime.datetime | None = None,
) -> int:
    """Delete the records matching every filter given; how many this call removed (records
    removed meanwhile by another process are not counted, and are no error)."""
    now = now or datetime.datetime.now(datetime.UTC)
    deleted = 0
    for record in list(list_records(storage)):
        if key is not None and record.key != key:
            continue
        if task_name is not None and record.task_name != task_name:
            continue
        if expired_only and not record.is_expired(now):
            continue
        deleted += delete_record(storage, record.key)
    return deleted


__all__ = [
    "LOCKS_PREFIX",
    "RECORDS_PREFIX",
    "CacheRecord",
    "LocalRecordStorage",
    "RecordStorage",
    "delete_record",
    "cached_reference",
    "delete_records",
    "forget_reference",
    "list_records",
    "read_record",
    "record_key",
    "record_storage_for",
    "remembered_reference",
    "unique_name",
    "write_record",
]
