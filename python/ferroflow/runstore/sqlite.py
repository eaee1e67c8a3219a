"""The SQLite run store: one database file (WAL mode), or a private in-memory database.

Recording goes through a `BatchWriter` (`ferroflow.runstore.writer`): callers queue rows, its
thread hands them back in batches to `write_batch`, which commits each batch in one transaction of
multi-row INSERTs. Reads run on the calling thread's own connection. The SQL and everything else
the SQL stores share is `ferroflow.runstore.store`; this module holds SQLite's connections,
transactions and locks.

Several threads may share one store (readers get a connection per thread); several processes may
share one file (SQLite's WAL lets readers run beside the one writer; writers take turns, waiting up
to `lock_timeout` seconds before `RunStoreLockedError` names the file).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ferroflow.exceptions import RunStoreError, RunStoreLockedError
from ferroflow.runstore import parameters, writer
from ferroflow.runstore.queries import SQLITE
from ferroflow.runstore.store import SQLRunStore
from ferroflow.runstore.writer import Batch, BatchWriter, close_at_exit, closed_before_exit

# Names this module held before the shared modules had them.
PARAMETERS_SUMMARY_LIMIT = parameters.PARAMETERS_SUMMARY_LIMIT
_MAX_BATCH = writer._MAX_BATCH

T = TypeVar("T")


def _is_lock_error(error: sqlite3.OperationalError) -> bool:
    text = str(error)
    return "locked" in text or "busy" in text


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced (sqlite3's own cannot)."""


class SQLiteRunStore(SQLRunStore):
    """The run store in one SQLite database file, or in memory when `path` is None.

    Prefer `ferroflow.runstore.open_store(url)`, which picks the backend from a URL.
    """

    dialect = SQLITE

    def __init__(
        self, path: str | os.PathLike[str] | None, *, lock_timeout: float = 10.0, batch_interval: float = 0.1
    ) -> None:
        self.path = None if path is None else Path(path).expanduser().absolute()
        self.url = "memory://" if self.path is None else f"sqlite:///{self.path}"
        self.lock_timeout = lock_timeout
        self.batch_interval = batch_interval
        self._closed = False
        self._reset_process_state()
        self._shared = None
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # A memory database lives in one connection, shared by every thread under a lock.
            self._shared = self._connect() if self.path is None else None
            with self._connection() as connection:
                self._transaction(connection, lambda: self._migrate(connection.execute))
        except RunStoreError:  # already ferroflow's (a lock held too long is an OSError too)
            self._close_connections()
            raise
        except (sqlite3.Error, OSError) as error:
            self._close_connections()
            raise self._failure(error) from error
        except BaseException:
            self._close_connections()
            raise
        close_at_exit(self)

    @property
    def location(self) -> str:
        return str(self.path or self.url)

    # -- connections and transactions ----------------------------------------------------------

    def _reset_process_state(self) -> None:
        """A fresh writer and fresh per-thread connections (at start, and in a forked child)."""
        self._writer = BatchWriter(self)
        # Bound once: the recording methods queue through it several times per task run.
        self._enqueue = self._writer.put  # type: ignore[method-assign]
        self._shared_lock = threading.RLock()
        self._local = threading.local()
        # Weak: a reader thread's connection goes (and closes) with its thread.
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()

    def _forget_parent_process(self) -> None:
        # SQLite connections must not be used across fork: a file store's child starts afresh and
        # reconnects on first use. A memory database lives in its one connection, kept as it is.
        if self.path is not None:
            self._reset_process_state()

    def _failure(self, error: sqlite3.Error | OSError) -> RunStoreError:
        """The database's (or the file system's) error as ferroflow's, naming the file and what to do."""
        text = str(error)
        where = self.location
        folder = self.path.parent if self.path is not None else None
        if isinstance(error, OSError) and folder is not None:
            return RunStoreError(
                f"The run store's folder {folder} cannot be created ({error.strerror or text}). Set "
                "FERROFLOW_HOME (or FERROFLOW_RUNSTORE_URL) to a folder this user can write to."
            )
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return RunStoreError(
                f"The run store file {where} is not a ferroflow run store, or it is damaged ({text}). "
                "Move it aside (ferroflow then starts a new store there), or point "
                "FERROFLOW_RUNSTORE_URL at another file."
            )
        if "full" in text or "disk I/O" in text:
            return RunStoreError(
                f"The run store file {where} cannot be written ({text}): the disk may be full. Free "
                "some space, or point FERROFLOW_RUNSTORE_URL at a file on another disk."
            )
        if "unable to open" in text or "readonly" in text or "read-only" in text:
            return RunStoreError(
                f"The run store file {where} cannot be opened for writing ({text}). Check that "
                f"{folder} exists and this user can write to it, or set FERROFLOW_HOME (or "
                "FERROFLOW_RUNSTORE_URL) to a writable place."
            )
        return RunStoreError(f"The run store {where} failed: {text}")

    def _connect(self) -> _Connection:
        target = ":memory:" if self.path is None else str(self.path)
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves, so a write transaction
        # takes the write lock up front instead of failing to upgrade a read lock later.
        connection = sqlite3.connect(
            target,
            timeout=self.lock_timeout,
            isolation_level=None,
            check_same_thread=False,
            factory=_Connection,
        )
        if self.path is not None:
            self._retrying(lambda: connection.execute("PRAGMA journal_mode = WAL"))
            # NORMAL in WAL mode: a power cut may drop the last commits, never corrupt the file.
            connection.execute("PRAGMA synchronous = NORMAL")
        self._connections.add(connection)
        return connection

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise RunStoreError(f"The run store {self.url} is closed; open it again with open_store().")
        if self._shared is not None:
            with self._shared_lock:
                yield self._shared
            return
        yield self._reader()

    def _reader(self) -> sqlite3.Connection:
        """This thread's connection to the database file (not for the memory store), without the
        context manager of `_connection()`: cache lookups take it on every hit."""
        if self._closed:
            raise RunStoreError(f"The run store {self.url} is closed; open it again with open_store().")
        try:
            return self._local.connection  # type: ignore[no-any-return]
        except AttributeError:
            try:
                connection = self._local.connection = self._connect()
            except sqlite3.Error as error:
                raise self._failure(error) from error
            return connection

    def _max_parameters(self, connection: sqlite3.Connection) -> int:
        return connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)

    def _retrying(self, action: Callable[[], T]) -> T:
        """Run `action`, retrying while the database is locked, for up to `lock_timeout` seconds.

        SQLite's own busy timeout covers most waits; this also covers the few cases where it
        reports "database is locked" at once (e.g. while another connection switches to WAL).
        """
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.001
        while True:
            try:
                return action()
            except sqlite3.Error as error:
                if not (isinstance(error, sqlite3.OperationalError) and _is_lock_error(error)):
                    raise self._failure(error) from error
                if time.monotonic() >= deadline:
                    raise RunStoreLockedError(
                        f"The run store database {self.location} stayed locked for more than "
                        f"{self.lock_timeout:g} s. Another process (or a stuck one) holds a write lock "
                        "on it: wait for it to finish or stop it, or point FERROFLOW_RUNSTORE_URL at "
                        "another database file."
                    ) from error
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    def _transaction(self, connection: sqlite3.Connection, work: Callable[[], T]) -> T:  # type: ignore[override]
        def attempt() -> T:
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work()
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return result

        return self._retrying(attempt)

    def _query(self, connection: sqlite3.Connection, sql: str, arguments: Any, one: bool = False) -> Any:
        cursor = self._retrying(lambda: connection.execute(sql, arguments))
        return cursor.fetchone() if one else cursor.fetchall()

    def _point_query(self, query: str, arguments: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One row by key. The hot path of every cache hit: this thread's connection, no flush,
        no lock."""
        if self._shared is not None:
            with self._connection() as connection:
                return self._retrying(lambda: connection.execute(query, arguments).fetchone())  # type: ignore[no-any-return]
        try:
            return self._reader().execute(query, arguments).fetchone()  # type: ignore[no-any-return]
        except sqlite3.Error as error:
            if not (isinstance(error, sqlite3.OperationalError) and _is_lock_error(error)):
                raise self._failure(error) from error
            return self._retrying(lambda: self._reader().execute(query, arguments).fetchone())

    # -- the writer ------------------------------------------------------------------------------

    def write_batch(self, batch: Batch) -> None:
        """Commit what the writer batched, in one transaction (on the writer's thread)."""
        with self._connection() as connection:
            self._transaction(connection, lambda: self._write_rows(connection, batch))

    def close(self) -> None:
        """Flush, stop the writer and close the connections. Closing twice is harmless."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._writer.stop()
            self._closed = True
            self._close_connections()
            closed_before_exit(self)

    def _close_connections(self) -> None:
        for connection in list(self._connections):
            connection.close()
        self._connections.clear()
