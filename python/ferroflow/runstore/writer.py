"""The run store's batched writer: callers queue rows, one background thread writes them in batches.

Why a writer thread: the engine records every state of every task, and a commit costs tens to
hundreds of microseconds. Callers only build a row and put it on a queue (a few microseconds); the
writer drains the queue, at most every `batch_interval` seconds unless a backlog waits, and hands
what it found to its backend's `write_batch`, which writes it in one transaction, so a killed
process loses at most the batches not yet written and never leaves half of one behind. `flush()`
waits for everything queued so far.

When the backend says its database cannot be reached (`RunStoreUnavailableError`: a server that
is down or went away), the writer holds the batch's rows and tries again, with the rows recorded
since, after a pause that grows to a few seconds (or at once when someone flushes): they arrive
when the server is back. It holds at most `HELD_RECORDS_LIMIT` records; beyond that it drops what
comes, and says once how many it dropped. Flows never wait for it: recording only queues.

The writer knows nothing of a database: a backend (see `BatchBackend`) builds the rows and writes
a batch with its own SQL. Stores that write through a writer are closed (so flushed) when the
process exits and start afresh in a forked child: see `close_at_exit`.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import multiprocessing
import multiprocessing.util
import os
import queue
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from ferroflow.exceptions import RunStoreError, RunStoreUnavailableError
from ferroflow.runstore.records import CacheEntry
from ferroflow.runstore.rows import encodable_text

logger = logging.getLogger("ferroflow.runstore")

T = TypeVar("T")

_MAX_BATCH = 5000

HELD_RECORDS_LIMIT = 100_000
"""How many records the writer holds while its database cannot be reached, at most."""

_FIRST_RETRY_PAUSE = 0.25
_LONGEST_RETRY_PAUSE = 5.0

# Queue items that record something are `(kind, row)`: the backend builds a row on the caller's
# thread, in the form its `write_batch` binds (SQLite: the column order of its table), so the
# writer, which holds the GIL the engine's thread waits for, only sorts rows by kind. A cache
# entry's row is its `CacheEntry`: the writer keeps it readable until its batch is committed.
FLOW_RUN, TASK_RUN, STATE, CACHE_ENTRY = range(4)


class BatchBackend(Protocol):
    """What the writer needs from a store's backend."""

    url: str
    """Named in errors."""
    batch_interval: float
    """How long the writer waits for more company after an item came to an empty queue, in seconds."""

    def write_batch(self, batch: Batch) -> None:
        """Store the batch's rows, then `batch.run_calls(...)`, in one transaction: all or nothing."""


class _Call:
    """Run `work(transaction)` inside the writer's next transaction; `wait()` returns its result.

    With no work it is a flush marker: `wait()` returns once everything queued before it is committed.
    """

    __slots__ = ("work", "done", "result", "error")

    def __init__(self, work: Callable[[Any], Any] | None = None) -> None:
        self.work = work
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def wait(self, timeout: float | None) -> Any:
        if not self.done.wait(timeout):
            raise RunStoreError(
                f"The run store's writer did not commit within {timeout} s; it may be waiting for a "
                "lock held by another process. Try again, or raise the timeout."
            )
        if self.error is not None:
            raise self.error
        return self.result


_STOP = object()


class Batch:
    """The operations of one transaction, grouped by kind so a backend writes each group at once."""

    def __init__(self) -> None:
        self.rows: tuple[list[Any], ...] = ([], [], [], [])  # by kind: FLOW_RUN ... CACHE_ENTRY
        self.calls: list[_Call] = []
        self.stop = False
        self.ends_with_work = False
        self._length = 0

    def __len__(self) -> int:
        return self._length

    @property
    def record_count(self) -> int:
        return sum(len(rows) for rows in self.rows)

    def hold_rows(self) -> Batch:
        """A batch of this one's rows only: what the writer holds when it cannot write them."""
        held = Batch()
        for kept, rows in zip(held.rows, self.rows, strict=True):
            kept.extend(rows)
        return held

    def with_encodable_text(self) -> Batch:
        """This batch with every string that UTF-8 cannot encode (a lone surrogate, as a name
        decoded with `surrogateescape` holds) written with backslash escapes instead."""
        fixed = Batch()
        for kept, rows in zip(fixed.rows, self.rows, strict=True):
            kept.extend(_encodable(row) for row in rows)
        fixed.calls, fixed.stop, fixed.ends_with_work = self.calls, self.stop, self.ends_with_work
        return fixed

    def after(self, held: Batch, room: int) -> Batch:
        """This batch with the `held` rows first; this batch's own rows only if they fit in `room`
        more records (else they are dropped: the caller counts them)."""
        joined = held.hold_rows()
        if self.record_count <= room:
            for kept, rows in zip(joined.rows, self.rows, strict=True):
                kept.extend(rows)
        joined.calls, joined.stop, joined.ends_with_work = self.calls, self.stop, self.ends_with_work
        return joined

    @property
    def cache_entries(self) -> list[CacheEntry]:
        return self.rows[CACHE_ENTRY]

    def add(self, item: Any) -> None:
        self._length += 1
        if type(item) is tuple:
            self.rows[item[0]].append(item[1])
        elif type(item) is _Call:
            self.calls.append(item)
            self.ends_with_work = item.work is not None
        elif item is _STOP:
            self.stop = True

    def run_calls(self, transaction: Any) -> None:
        """Run the work of the batch's calls, in order, with what the backend gives them (SQLite:
        the connection in its transaction); after the rows, which were queued before them."""
        for call in self.calls:
            if call.work is not None:
                call.result = call.work(transaction)


def _encodable(value: Any) -> Any:
    if type(value) is str:
        return encodable_text(value)
    if type(value) is tuple:
        return tuple(_encodable(item) for item in value)
    if isinstance(value, CacheEntry):
        return dataclasses.replace(value, key=_encodable(value.key), task_name=_encodable(value.task_name))
    if isinstance(value, Mapping):  # parameters, summarized later: their keys, as their values' reprs are
        return {_encodable(key) if type(key) is str else key: item for key, item in value.items()}
    return value


class BatchWriter:
    """A queue and the thread that writes it, in batches, through `backend.write_batch`.

    The thread starts with the first item queued. After `stop()` the writer refuses new items.
    """

    def __init__(self, backend: BatchBackend) -> None:
        self._backend = backend
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self._error: BaseException | None = None
        # Cache entries queued and not committed yet, by key: a reader looks here before the
        # database, so it sees the entries its process put without waiting for a flush.
        self.uncommitted_cache_entries: dict[str, CacheEntry] = {}
        self._uncommitted_cache_lock = threading.Lock()
        # While the database cannot be reached: the rows held, how many records were dropped,
        # and how long to wait before the next try.
        self._held: Batch | None = None
        self.dropped_records = 0
        self._retry_pause = _FIRST_RETRY_PAUSE

    def put(self, item: Any) -> None:
        """Queue `(kind, row)` for the next batch."""
        if self._thread is None or self._stopped:
            self._start()
        self._queue.put(item)

    def put_cache_entry(self, entry: CacheEntry) -> None:
        """Queue a cache entry, readable in `uncommitted_cache_entries` until it is committed."""
        with self._uncommitted_cache_lock:
            self.uncommitted_cache_entries[entry.key] = entry
        self.put((CACHE_ENTRY, entry))

    def call(self, work: Callable[[Any], T], timeout: float | None) -> T:
        """Run `work` in the next transaction, after everything queued before, and return its result."""
        return self._wait_for(_Call(work), timeout)  # type: ignore[no-any-return]

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything queued so far is committed; raise the writer's last error if any."""
        if self._thread is not None:
            self._wait_for(_Call(), timeout)
        error, self._error = self._error, None
        if error is not None:
            raise error

    def stop(self) -> None:
        """Write what is queued, end the thread, and refuse new items. Stopping twice is harmless."""
        with self._lock:
            if self._thread is not None:
                self._queue.put(_STOP)
                self._wake.set()
                self._thread.join()
            self._stopped = True

    def _wait_for(self, call: _Call, timeout: float | None) -> Any:
        self.put(call)
        self._wake.set()  # someone waits: no lingering for company
        return call.wait(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._stopped:
                raise RunStoreError(
                    f"The run store {self._backend.url} is closed; open it again with open_store()."
                )
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._write_batches, name="ferroflow-runstore-writer", daemon=True
                )
                self._thread.start()

    def _next_batch(self) -> Batch:
        batch = Batch()
        try:
            batch.add(self._queue.get_nowait())  # a backlog: write it now, there is company enough
        except queue.Empty:
            if self._held is not None:  # try the held rows again after a pause, or when flushed
                try:
                    batch.add(self._queue.get(timeout=self._retry_pause))
                except queue.Empty:
                    return batch
            else:
                batch.add(self._queue.get())
            # Linger for company unless someone waits on this batch: fewer, larger commits, and
            # fewer times the writer takes the GIL from the engine's thread.
            if not batch.calls and not batch.stop:
                self._wake.wait(self._backend.batch_interval)
        self._wake.clear()
        # A call with work (a delete) ends its batch: the rows are grouped by kind within a
        # batch, and what was queued after the call must not run before it.
        while len(batch) < _MAX_BATCH and not batch.ends_with_work:
            try:
                batch.add(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write_batches(self) -> None:
        while True:
            batch = self._next_batch()
            if self._held is not None:
                room = HELD_RECORDS_LIMIT - self._held.record_count
                if batch.record_count > room:
                    self._drop(batch)
                batch = batch.after(self._held, room)
            error: BaseException | None = None
            try:
                if batch.record_count or any(call.work is not None for call in batch.calls):
                    self._write(batch)
            except RunStoreUnavailableError as exc:  # held, and tried again
                error = exc
                self._hold(batch, exc)
            except BaseException as exc:  # the writer keeps going; the error is reported
                if not isinstance(exc, RunStoreError):
                    exc = RunStoreError(f"The run store {self._backend.url} failed: {exc!r}")
                error = exc
                logger.error("ferroflow could not record a batch of runs and states: %s", exc)
                if not batch.calls:  # no one is waiting on this batch: tell the next flush()
                    self._error = exc
                self._end_outage(written=False)
            else:
                self._end_outage(written=True)
            if self._held is None:
                self._forget_committed_cache_entries(batch.cache_entries)
            for call in batch.calls:
                call.error = error
                call.done.set()
            if batch.stop:
                if self._held is not None:
                    self._drop(self._held)
                    self._held = None
                    self._report_drops("before the process ended")
                return

    def _write(self, batch: Batch) -> None:
        try:
            self._backend.write_batch(batch)
        except UnicodeEncodeError:
            # A name no database can store must not sink the other records of its batch.
            self._backend.write_batch(batch.with_encodable_text())

    def _hold(self, batch: Batch, error: RunStoreUnavailableError) -> None:
        if self._held is None:
            logger.warning(
                "%s ferroflow holds up to %d records until then; the flows run on.",
                error,
                HELD_RECORDS_LIMIT,
            )
        else:
            self._retry_pause = min(self._retry_pause * 2, _LONGEST_RETRY_PAUSE)
        self._held = batch.hold_rows()

    def _drop(self, batch: Batch) -> None:
        self.dropped_records += batch.record_count
        self._forget_committed_cache_entries(batch.cache_entries)

    def _end_outage(self, written: bool) -> None:
        if self._held is None:
            return
        held = self._held.record_count
        self._forget_committed_cache_entries(self._held.cache_entries)
        self._held = None
        self._retry_pause = _FIRST_RETRY_PAUSE
        if written:
            logger.info(
                "ferroflow reached the run store %s again and wrote the %d records it held.",
                self._backend.url,
                held,
            )
        self._report_drops("while it could not be reached")

    def _report_drops(self, when: str) -> None:
        if self.dropped_records:
            logger.warning(
                "ferroflow dropped %d records of runs and states for the run store %s %s (it holds "
                "at most %d). The flows' own outcomes are unchanged; `ferroflow runs` lacks them.",
                self.dropped_records,
                self._backend.url,
                when,
                HELD_RECORDS_LIMIT,
            )
            self.dropped_records = 0

    def _forget_committed_cache_entries(self, entries: list[CacheEntry]) -> None:
        with self._uncommitted_cache_lock:
            for entry in entries:
                if self.uncommitted_cache_entries.get(entry.key) is entry:
                    del self.uncommitted_cache_entries[entry.key]


# ----------------------------------------------------------------------------------------------
# Process lifecycle: what is queued must not be lost when the process ends or forks.


class OpenStore(Protocol):
    """A store the process lifecycle looks after while it is open."""

    url: str

    def close(self) -> None:
        """Flush the writer, stop it and release the store."""

    def _forget_parent_process(self) -> None:
        """In a forked child: drop the parent's writer and connections, to start afresh on first use."""


_open_stores: weakref.WeakSet[OpenStore] = weakref.WeakSet()


def close_at_exit(store: OpenStore) -> None:
    """Close `store` when the process exits if it is still open then; in a forked child, have it
    forget its parent's writer first. `closed_before_exit(store)` undoes this."""
    _open_stores.add(store)
    # A multiprocessing worker ends with os._exit, which skips atexit hooks: close the store at the
    # worker's own exit instead, for stores opened in the worker or inherited by fork.
    if multiprocessing.parent_process() is not None:
        _close_at_worker_exit(store)
    multiprocessing.util.register_after_fork(store, _close_at_worker_exit)


def closed_before_exit(store: OpenStore) -> None:
    """Forget `store`, which its owner closed: nothing is left for the exit to flush."""
    _open_stores.discard(store)


def _close_at_worker_exit(store: OpenStore) -> None:
    multiprocessing.util.Finalize(store, store.close, exitpriority=0)


@atexit.register
def _flush_open_stores_at_exit() -> None:
    for store in list(_open_stores):
        try:
            store.close()
        except Exception as error:  # exiting anyway: say what was lost, do not mask the exit status
            logger.error("ferroflow could not flush the run store %s at exit: %s", store.url, error)


def _forget_parent_state_after_fork() -> None:
    # The parent's writer thread does not exist in the child.
    for store in list(_open_stores):
        store._forget_parent_process()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_state_after_fork)
