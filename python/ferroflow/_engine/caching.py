"""Results from before that stand in for running a task: the earlier attempt's result when a
flow retries, and the task cache (`cache_key_fn`, `cache_expiration`, `refresh_cache`).

Before a task run's first attempt the engine asks `prior_result(task_context)`:

1. Flow retries: a task run with the same identity (task key, dynamic key) that completed with a
   persisted result in an earlier attempt of this flow run gives that result — after reading it
   back if it is no longer in memory, so that a deleted or damaged file means running again
   (with a `CachedResultUnavailableWarning`), not a failed retry.
2. The task cache: the task's cache key function or cache policy gives a key; the key's cache
   record in the result storage (or the policy's cache_storage; `ferroflow.results.
   cache_records`), not expired and not refreshed, gives its result — after reading it back, so
   that a deleted or damaged file is a miss (with a `CachedResultUnavailableWarning`), not a
   failure. With `isolation_level="SERIALIZABLE"` a miss takes the key's lock and computes, or
   waits for the run holding it (`ferroflow.results.cache_locks`). A storage that cannot hold
   records uses the run store's entries instead.

Either way the run ends "Cached" without running the function. After a run completes,
`remember(task_context, result)` creates the key's record (and indexes it in the run store);
`finish(task_context)` releases a SERIALIZABLE lock when the run ends, whatever its outcome.
"""

from __future__ import annotations

import datetime
import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

from ferroflow._engine.parameters import positional_parameter_names
from ferroflow._engine.run_book import RunBook, book_of
from ferroflow._engine.runs import run_identity
from ferroflow.cache_policies import READ_COMMITTED, SERIALIZABLE, CacheKeyFnPolicy, CachePolicy, call_key_fn
from ferroflow.context import TaskRunContext
from ferroflow.exceptions import (
    CachedResultUnavailableWarning,
    RunStoreError,
    SerializationError,
)
from ferroflow.results import BaseResult, ResultRef, reopen_result, result_reference
from ferroflow.results.cache_locks import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_WAIT_SECONDS,
    CacheLockTimeout,
    HeldLock,
    lock_key,
    try_acquire,
)
from ferroflow.results.cache_records import (
    CacheRecord,
    RecordStorage,
    cached_reference,
    forget_reference,
    record_storage_for,
    remembered_reference,
    write_record,
)
from ferroflow.serializers import Serializer

REUSED_FROM_EARLIER_ATTEMPT = "Reused the result of an earlier attempt of this flow run."


def prior_result(task_context: TaskRunContext) -> tuple[BaseResult, str] | None:
    """The result that ends this task run without running it, with the Cached state's message
    saying where it came from; or None to run the task."""
    book = book_of(task_context.flow_run_context)
    earlier = earlier_attempt_result(
        book, run_identity(task_context.task_run), f"task {task_context.task.name!r}"
    )
    if earlier is not None:
        return earlier, REUSED_FROM_EARLIER_ATTEMPT
    task = task_context.task
    policy = getattr(task, "cache_policy", None)
    if policy is None or type(policy) is CacheKeyFnPolicy:
        key_fn = task.cache_key_fn if policy is None else policy.key_fn
        if key_fn is None:
            return None
        key = cache_key(task_context, key_fn)
    else:
        key = policy.compute_key(task_context)
    task_context.cache_key = key
    if key is None or _refreshing(task_context, book):
        return None
    records = _records_of(task_context, policy)
    cached = _cached_result(task_context, book, key, records)
    if cached is None and records is not None and _isolation_level(task, policy) == SERIALIZABLE:
        cached = _compute_once(task_context, book, key, records, policy)
    return None if cached is None else (cached, f"Cache hit for key {key!r}.")


def earlier_attempt_result(book: RunBook, identity: tuple[str, int], what: str) -> BaseResult | None:
    """The result an earlier attempt of this flow run got for the run `identity` names, once it
    is known to be readable: a value no longer in memory is read back now (and kept only if the
    result keeps its value), so that a deleted or damaged file means running again, with a
    `CachedResultUnavailableWarning`, rather than a retry that fails where the value is used."""
    earlier = book.earlier_attempt_result(identity)
    if earlier is None or earlier.has_cached_object():
        return earlier
    try:
        earlier.get()
    except Exception as error:
        book.forget_earlier_attempt_result(identity)
        reference = result_reference(earlier)
        where = "" if reference is None else f" ({reference.describe()})"
        warnings.warn(
            f"The result of {what} from an earlier attempt of this flow run{where} cannot be read: "
            f"{error} It runs again.",
            CachedResultUnavailableWarning,
            stacklevel=2,
        )
        return None
    return earlier


def remember(task_context: TaskRunContext, result: BaseResult) -> datetime.datetime | None:
    """Cache a completed run's result under its cache key (if it has one), replacing any entry.
    Returns when the entry expires (None: never, or nothing was cached)."""
    key = task_context.cache_key
    if key is None:
        return None
    reference = result_reference(result)
    if reference is None:  # only persisted results and literals can be found again
        return None
    task = task_context.task
    expiration = None
    if task.cache_expiration is not None:
        expiration = datetime.datetime.now(datetime.UTC) + task.cache_expiration
    records = _records_of(task_context, getattr(task, "cache_policy", None))
    if records is not None:
        record = CacheRecord(
            key=key,
            result=reference,
            task_name=task.name,
            created=datetime.datetime.now(datetime.UTC),
            expiration=expiration,
            flow_run_id=str(task_context.task_run.flow_run_id),
            task_run_id=task_context.task_run.id_text,
        )
        # After the result is written (create_result returned): no reader finds a record
        # without its result.
        try:
            write_record(records, record, replace_existing=True)
        except OSError as error:  # the run succeeded; only its caching did not
            warnings.warn(
                f"The result of task {task.name!r} could not be cached in {records.describe()}: "
                f"{error}. The task ran; its next call runs again.",
                CachedResultUnavailableWarning,
                stacklevel=2,
            )
    book = book_of(task_context.flow_run_context)
    book.run_store().put_cache_entry(key, task.name, reference, expiration=expiration)
    return expiration


def finish(task_context: TaskRunContext) -> None:
    """Release the SERIALIZABLE lock the run holds, if any: called when the run has ended,
    whatever its outcome (a failed run leaves no record; a waiter then computes)."""
    if _held_locks:
        lock = _held_locks.pop(id(task_context), None)
        if lock is not None:
            lock.release()


def _refreshing(task_context: TaskRunContext, book: RunBook) -> bool:
    refresh = task_context.task.refresh_cache
    if refresh is None:
        return book.refresh_cache_by_default()
    return bool(refresh)


# --- the cache key ---------------------------------------------------------------------------------


def cache_key(task_context: TaskRunContext, key_fn: Callable[..., Any]) -> str | None:
    """The task's cache key function called as `call_key_fn` does, with the number of arguments
    it takes read from the engine's one signature cache."""
    return call_key_fn(key_fn, task_context, arity=_accepted_arguments(key_fn))


def _accepted_arguments(key_fn: Callable[..., Any]) -> int:
    """How many of (context, parameters) `key_fn` takes positionally: 2, 1 or 0."""
    names = positional_parameter_names(key_fn)
    return 2 if names is None else min(2, len(names))


# --- reading a cache entry -------------------------------------------------------------------------

logger = logging.getLogger("ferroflow.runstore")

_stores_warned_about: set[str] = set()


def _warn_once_about(store: Any, error: RunStoreError) -> None:
    """One warning per store and process: a store that cannot be read fails every lookup."""
    if store.url not in _stores_warned_about:
        _stores_warned_about.add(store.url)
        logger.warning("ferroflow cannot look up the task cache: %s Cached tasks run again meanwhile.", error)


# Record storages by result storage object: resolving one reads settings (ids are safe keys:
# the storage object is kept alongside and compared).
_record_storages: dict[int, tuple[Any, RecordStorage | None]] = {}
# The SERIALIZABLE locks held by task runs in progress, by id of their TaskRunContext.
_held_locks: dict[int, HeldLock] = {}


def _records_of(task_context: TaskRunContext, policy: CachePolicy | None) -> RecordStorage | None:
    """Where the cache records of this run live: the policy's cache_storage, else the result
    storage. None for a storage that cannot hold records: the run store's entries serve then."""
    where = policy.cache_storage if policy is not None and policy.cache_storage is not None else None
    if where is None:
        factory = task_context.result_factory
        if factory is None:
            return None
        where = factory.storage
    known = _record_storages.get(id(where))
    if known is not None and known[0] is where:
        return known[1]
    try:
        records: RecordStorage | None = record_storage_for(where)
    except TypeError:
        records = None
    if len(_record_storages) > 256:
        _record_storages.clear()
    _record_storages[id(where)] = (where, records)
    return records


def _isolation_level(task: Any, policy: CachePolicy | None) -> str:
    level = getattr(task, "isolation_level", None)
    if level is None and policy is not None:
        level = policy.isolation_level
    return level or READ_COMMITTED


def _compute_once(
    task_context: TaskRunContext, book: RunBook, key: str, records: RecordStorage, policy: CachePolicy | None
) -> BaseResult | None:
    """SERIALIZABLE: take the key's lock and compute (None), or wait for the run holding it and
    return its result. A holder that dies is taken over after its lease."""
    lease = (policy.lock_lease_seconds if policy is not None else None) or DEFAULT_LEASE_SECONDS
    wait = (policy.lock_wait_seconds if policy is not None else None) or DEFAULT_WAIT_SECONDS
    deadline = time.monotonic() + wait
    delay = 0.001
    while True:
        lock = try_acquire(records, key, lease)
        if lock is not None:
            # Another run may have finished between the miss and the lock.
            cached = _cached_result(task_context, book, key, records, quiet=True)
            if cached is not None:
                lock.release()
                return cached
            _held_locks[id(task_context)] = lock
            return None
        cached = _cached_result(task_context, book, key, records, quiet=True)
        if cached is not None:
            return cached
        if time.monotonic() >= deadline:
            raise CacheLockTimeout(
                f"Task {task_context.task.name!r} waited {wait:g} s for another run of its cache "
                f"key {key[:16]}… (isolation_level='SERIALIZABLE') to finish, in vain. The other "
                f"run is still computing (or holds the lock in {lock_key(key)!r} of "
                f"{records.describe()}). Raise the wait with "
                "policy.configure(lock_wait_seconds=...), or run the task again later."
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)


def _cached_result(
    task_context: TaskRunContext, book: RunBook, key: str, records: RecordStorage | None, quiet: bool = False
) -> BaseResult | None:
    if records is None:
        store = book.run_store()
        try:
            reference = store.get_cached_result(key)
        except RunStoreError as error:  # the cache is an optimization: a store that fails is a miss
            _warn_once_about(store, error)
            return None
    else:
        reference = remembered_reference(records, key)
        if reference is not None:
            try:
                return _reopened(reference, task_context.result_factory)
            except Exception:
                # The record may have been replaced or removed since (with its result, which
                # retention removes first): read it again, as a lookup that found nothing here.
                forget_reference(records, key)
        reference = cached_reference(records, key)
    if reference is None:
        return None
    try:
        return _reopened(reference, task_context.result_factory)
    except Exception as error:
        if quiet:
            return None
        warnings.warn(
            f"The cached result of task {task_context.task.name!r} (cache key {key[:16]}…, "
            f"{reference.describe()}) cannot be read: {error}. The task runs again, and its "
            "new result replaces the cache entry.",
            CachedResultUnavailableWarning,
            stacklevel=2,
        )
        return None


def _reopened(reference: ResultRef, factory: Any) -> BaseResult:
    """The cached result `reference` names, read back now (a missing or damaged file raises)."""
    _check_serializer_type(reference, factory)
    return reopen_result(reference, cache_in_memory=factory is None or factory.cache_result_in_memory)


def _check_serializer_type(reference: ResultRef, factory: Any) -> None:
    """A cache entry is used only if it was written by the serializer type the task is configured
    with now: the reader, not the entry, decides how the result is loaded (an entry written
    with pickle is never loaded for a task that now says JSON)."""
    serializer = getattr(factory, "serializer", None)  # custom factories may have none
    if reference.kind != "persisted" or not isinstance(serializer, Serializer):
        return
    if reference.serializer != serializer.type:
        raise SerializationError(
            f"it was written by the {reference.serializer!r} serializer, and the task's result "
            f"serializer is now {serializer.type!r}"
        )
