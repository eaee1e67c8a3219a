"""Retention: removing result files from a local storage by age and by total size, least recently
used first, safely while flows write, and with a trace where they went.

- `prune(folder, older_than=..., max_bytes=..., min_age=...)`: what `ferroflow results prune`
  does. Recorded run states do not keep a file (they are history); a live cache record or cache
  entry keeps it from removal by age, not from removal by size (the cache is what a size limit
  is for). Each removed result leaves a *tombstone* (`.ferroflow-cache/removed/<key>.json`: when
  and why), so that reading it later, through a recorded state, says it was pruned rather than
  lost; the cache records that named it are removed with it (their tasks then run again,
  without a warning).
- `after_write(storage_root, max_bytes)`: the `FERROFLOW_RESULTS_MAX_BYTES` setting. Each process
  keeps an estimate of its storage's size (a scan, then the sizes it writes; a new scan at most
  every `RESCAN_SECONDS` or when the estimate passes the limit) and evicts the least recently
  used results down to `EVICT_TO` of the limit when it is passed.

Least recently used is by the later of a file's access and modification times: a cache hit
reads the file, which updates its access time where the filesystem keeps it (`relatime`, Linux's
default, updates it at most once a day; on `noatime` mounts the order is by last write).

Everything here expects files to vanish under it: another prune, an eviction or a cache clear
may remove any file between listing and removal (a missing file is simply skipped), and files
younger than `min_age` (results being written, whose states are not recorded yet; temporary files
of writes in progress) are never removed.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ferroflow.filesystems import S3, RemoteFileSystem, is_unfinished_write
from ferroflow.results.cache_records import LocalRecordStorage, RecordStorage, delete_record, list_records

CACHE_FOLDER = ".ferroflow-cache"
TOMBSTONES_PREFIX = f"{CACHE_FOLDER}/removed/"
DEFAULT_MIN_AGE_SECONDS = 60.0
RESCAN_SECONDS = 60.0
EVICT_TO = 0.9


@dataclass(frozen=True, slots=True)
class StoredFile:
    path: str
    key: str  # relative to the storage folder, with "/"
    size: int
    modified: float
    last_used: float
    unfinished: bool  # a temporary file of a write (in progress, or left by a killed writer)


@dataclass
class PrunePlan:
    by_age: list[StoredFile] = field(default_factory=list)
    by_size: list[StoredFile] = field(default_factory=list)
    kept: int = 0
    kept_cached: int = 0  # old enough, but named by a live cache entry
    total_bytes: int = 0

    @property
    def remove(self) -> list[StoredFile]:
        return self.by_age + self.by_size

    @property
    def freed(self) -> int:
        return sum(item.size for item in self.remove)


def stored_files(folder: str) -> list[StoredFile]:
    """The result files (and temporary files of writes) under `folder`; files that vanish while
    listed are left out. The cache folder (records, locks, tombstones) is not listed."""
    found = []
    for root, folders, names in os.walk(folder):
        if root == folder and CACHE_FOLDER in folders:
            folders.remove(CACHE_FOLDER)
        for name in names:
            path = os.path.join(root, name)
            unfinished = is_unfinished_write(name)
            try:
                stat = os.stat(path)  # before reading: a read may update the access time
                if not unfinished and not is_result_file_untouched(path):
                    continue
            except OSError:  # removed or renamed meanwhile
                continue
            key = os.path.relpath(path, folder).replace(os.sep, "/")
            found.append(
                StoredFile(
                    path, key, stat.st_size, stat.st_mtime, max(stat.st_atime, stat.st_mtime), unfinished
                )
            )
    return found


_MAGIC = b"\x89FFB\r\n\x1a\n"
_NOATIME = getattr(os, "O_NOATIME", 0)


def _open_untouched(path: str) -> int:
    """Open for reading without updating the access time (which is how least recently used is
    told) where the system allows it: O_NOATIME needs the file's owner (or CAP_FOWNER)."""
    if _NOATIME:
        try:
            return os.open(path, os.O_RDONLY | _NOATIME)
        except PermissionError:
            pass
    return os.open(path, os.O_RDONLY)


def is_result_file_untouched(path: str) -> bool:
    """Whether `path` is a ferroflow result — a framed blob (its signature and a JSON header
    naming a serializer; `ferroflow results inspect` verifies checksums) or a JSON result
    document — read without touching its access time."""
    descriptor = _open_untouched(path)
    try:
        start = os.read(descriptor, 16)
        if start[:8] == _MAGIC and len(start) == 16:
            body_length = int.from_bytes(start[12:16], "little")
            if body_length > 1 << 24:
                return False
            body = os.pread(descriptor, body_length, 16)
            fields = json.loads(body)
            # Format 1.x names the serializer "serializer"; the compact 2.0 and 3.0 headers, "s" (docs/format.md).
            return isinstance(fields, dict) and ("serializer" in fields or "s" in fields)
        if start[:1] != b"{":
            return False
        parts = [start]
        while chunk := os.read(descriptor, 1 << 20):
            parts.append(chunk)
        document = json.loads(b"".join(parts))
        return isinstance(document, dict) and "serializer" in document and "data" in document
    except (ValueError, TypeError):
        return False
    finally:
        os.close(descriptor)


def plan_prune(
    files: Iterable[StoredFile],
    *,
    now: float,
    older_than: float | None,
    max_bytes: int | None,
    min_age: float,
    cached_keys: set[str],
) -> PrunePlan:
    """Which files to remove: by age (older than `older_than` seconds, and not named by a live
    cache entry), then, while the rest is over `max_bytes`, the least recently used results
    older than `min_age` seconds, cached or not."""
    plan = PrunePlan()
    kept: list[StoredFile] = []
    for item in files:
        plan.total_bytes += item.size
        age = now - item.modified
        old = older_than is not None and age > max(older_than, min_age)
        if old and (item.unfinished or item.key not in cached_keys):
            plan.by_age.append(item)
            continue
        plan.kept_cached += old
        kept.append(item)
    if max_bytes is not None:
        remaining = plan.total_bytes - plan.freed
        evictable = sorted(
            (item for item in kept if not item.unfinished and now - item.modified > min_age),
            key=lambda item: item.last_used,
        )
        for item in evictable:
            if remaining <= max_bytes:
                break
            plan.by_size.append(item)
            remaining -= item.size
            plan.kept_cached -= (
                item.key in cached_keys
                and older_than is not None
                and (now - item.modified > max(older_than, min_age))
            )
    plan.kept = len(kept) - len(plan.by_size)
    return plan


def remove_files(
    folder: str, files: Iterable[StoredFile], reason: str, on_each: Callable[[], None] | None = None
) -> int:
    """Remove `files` (a file already gone is skipped), leave a tombstone for each result, and
    remove the cache records that named them; `on_each` is called after each file (progress).
    Returns the bytes this call freed."""

    def unlink(item: StoredFile) -> bool:
        try:
            os.unlink(item.path)
        except FileNotFoundError:
            return False  # another prune, an eviction or a clear got there first
        return True

    return _remove(LocalRecordStorage(folder), files, unlink, reason, on_each)


def remove_objects(
    storage: S3 | RemoteFileSystem,
    objects: Iterable[StoredFile],
    reason: str,
    on_each: Callable[[], None] | None = None,
) -> int:
    """`remove_files` for the objects of a bucket storage (`stored_objects`): the tombstones
    and the cache records named by them are in the bucket too. Returns the bytes freed."""

    def delete(item: StoredFile) -> bool:
        storage.delete(item.key)  # an object already gone is no error
        return True

    return _remove(storage.record_storage(), objects, delete, reason, on_each)


def _remove(
    records: RecordStorage,
    files: Iterable[StoredFile],
    remove: Callable[[StoredFile], bool],
    reason: str,
    on_each: Callable[[], None] | None,
) -> int:
    by_result: dict[str, list[str]] = {}
    for record in list_records(records):
        if record.result.kind == "persisted" and record.result.key is not None:
            by_result.setdefault(record.result.key, []).append(record.key)
    freed = 0
    now = datetime.datetime.now(datetime.UTC).isoformat()
    for item in files:
        if on_each is not None:
            on_each()
        if not remove(item):
            continue
        freed += item.size
        if item.unfinished:
            continue
        for cache_key in by_result.get(item.key, ()):
            delete_record(records, cache_key)
        tombstone = json.dumps({"removed": now, "reason": reason, "size": item.size}).encode()
        try:
            records.replace(TOMBSTONES_PREFIX + item.key + ".json", tombstone)
        except (OSError, ValueError):
            pass  # a trace only: the removal itself succeeded
    return freed


def removal_note(where: str | RecordStorage, key: str) -> str | None:
    """Why the result `key` of a folder (or of a bucket, given its record storage) is gone, if
    a prune or eviction removed it."""
    records = LocalRecordStorage(where) if isinstance(where, str) else where
    data = records.read(TOMBSTONES_PREFIX + key + ".json")
    if data is None:
        return None
    try:
        document = json.loads(data)
        return f"removed by {document['reason']} at {document['removed']}"
    except (ValueError, KeyError, TypeError):
        return "removed by ferroflow's result retention"


def live_cached_keys(where: str | RecordStorage, extra: Iterable[str] = ()) -> set[str]:
    """Result keys in a folder (or the record storage of a bucket) that an unexpired cache
    record names (plus `extra`, e.g. the run store's unexpired cache entries)."""
    records = LocalRecordStorage(where) if isinstance(where, str) else where
    now = datetime.datetime.now(datetime.UTC)
    keys = set(extra)
    for record in list_records(records):
        if record.result.kind == "persisted" and record.result.key and not record.is_expired(now):
            keys.add(record.result.key)
    return keys


# --- buckets -------------------------------------------------------------------------------------


def stored_objects(storage: S3 | RemoteFileSystem) -> list[StoredFile]:
    """Every object of a bucket storage but its cache folder, as `stored_files` lists a folder's
    files. An object store keeps no access time: least recently used is by last write. An
    upload leaves no temporary object, so none is `unfinished`. Whether an object is a result is
    not known from a listing; `plan_prune_of_results` asks, for the objects it would remove."""
    return [
        StoredFile(
            storage.url_of(info.key), info.key, info.size, info.last_modified, info.last_modified, False
        )
        for info in storage.list_objects()
        if not info.key.startswith(CACHE_FOLDER + "/")
    ]


def plan_prune_of_results(
    files: Iterable[StoredFile], is_result: Callable[[StoredFile], bool], **options: Any
) -> PrunePlan:
    """`plan_prune` over files not yet known to be results: each one the plan would remove is
    checked with `is_result` (once), those that are not results are left out, as `stored_files`
    leaves them out of a folder, and the plan is made again. Files the plan keeps are counted
    in the total without being checked."""
    candidates = list(files)
    checked: dict[str, bool] = {}
    while True:
        plan = plan_prune(candidates, **options)
        refused = set()
        for item in plan.remove:
            if item.key not in checked:
                checked[item.key] = is_result(item)
            if not checked[item.key]:
                refused.add(item.key)
        if not refused:
            return plan
        candidates = [item for item in candidates if item.key not in refused]


# --- FERROFLOW_RESULTS_MAX_BYTES -------------------------------------------------------------------


@dataclass
class _Estimate:
    size: int
    scanned: float


_estimates: dict[str, _Estimate] = {}
_eviction_lock = threading.Lock()


def after_write(folder: str, written: int, max_bytes: int) -> None:
    """Keep `folder` under `max_bytes` after a write of `written` bytes (see the module docs)."""
    now = time.monotonic()
    estimate = _estimates.get(folder)
    if estimate is not None and now - estimate.scanned < RESCAN_SECONDS:
        estimate.size += written
        if estimate.size <= max_bytes:
            return
    with _eviction_lock:
        files = stored_files(folder)
        total = sum(item.size for item in files)
        _estimates[folder] = _Estimate(total, time.monotonic())
        if total <= max_bytes:
            return
        plan = plan_prune(
            files,
            now=time.time(),
            older_than=None,
            max_bytes=int(max_bytes * EVICT_TO),
            min_age=0.0,
            cached_keys=set(),
        )
        freed = remove_files(folder, plan.remove, "eviction (FERROFLOW_RESULTS_MAX_BYTES)")
        _estimates[folder] = _Estimate(total - freed, time.monotonic())


__all__ = [
    "DEFAULT_MIN_AGE_SECONDS",
    "TOMBSTONES_PREFIX",
    "PrunePlan",
    "StoredFile",
    "after_write",
    "live_cached_keys",
    "plan_prune",
    "plan_prune_of_results",
    "removal_note",
    "remove_files",
    "remove_objects",
    "stored_files",
    "stored_objects",
]
