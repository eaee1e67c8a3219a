"""The PostgreSQL run store: one database shared by every process and machine that records into it.

The SQL, the schema and the batched writer are those of every SQL store
(`ferroflow.runstore.store`); this module holds psycopg's connections: one per reading thread,
one for the writer's thread, each opened on first use and opened again after the server went
away. Every write is a transaction of multi-row upserts, so processes writing at once never lose
nor duplicate a row.

Recording never fails a flow for a server that is down: opening the store does not need the
server (its schema is checked and migrated at the first connection), and the writer holds what
is recorded meanwhile (see `BatchWriter`). Reads say which store cannot be reached. The URL's
password is never shown: `url` and every message carry the URL with `***` for it.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from ferroflow.exceptions import RunStoreError, RunStoreUnavailableError
from ferroflow.runstore import queries
from ferroflow.runstore.queries import POSTGRESQL
from ferroflow.runstore.store import SQLRunStore
from ferroflow.runstore.writer import Batch, BatchWriter, close_at_exit, closed_before_exit
from ferroflow.settings import redact_url

T = TypeVar("T")

_RECONNECT_PAUSE = 1.0
"""Seconds after a failed connection attempt during which others fail at once."""

# Connections a forked child inherited from its parent: kept referenced for the child's life,
# because freeing one would close the parent's session on the socket they share.
_inherited: list[Any] = []


def _import_psycopg(url: str) -> ModuleType:
    try:
        import psycopg
    except ImportError as error:
        raise RunStoreError(
            f"The run store {url} is a PostgreSQL database, which needs psycopg: "
            'install it with pip install "ferroflow[postgres]".'
        ) from error
    return psycopg


class _ThreadConnection:
    """A reading thread's connection, closed when the thread ends and its locals go."""

    __slots__ = ("connection", "__weakref__")

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


class PostgreSQLRunStore(SQLRunStore):
    """The run store in a PostgreSQL database named by a `postgresql://` URL.

    Prefer `ferroflow.runstore.open_store(url)`, which picks the backend from a URL.
    """

    dialect = POSTGRESQL

    def __init__(self, url: str, *, connect_timeout: float = 5.0, batch_interval: float = 0.1) -> None:
        self.url = redact_url(url)
        self._psycopg = _import_psycopg(self.url)
        self.__conninfo = url
        password = urlsplit(url).password
        self.__password = unquote(password) if password else None
        self.connect_timeout = connect_timeout
        # What the URL does not say itself (`?connect_timeout=...&application_name=...` win).
        given = set(parse_qs(urlsplit(url).query))
        self._defaults = {
            name: value
            for name, value in (
                ("connect_timeout", max(1, round(connect_timeout))),
                ("application_name", "ferroflow"),
            )
            if name not in given
        }
        self.batch_interval = batch_interval
        self._closed = False
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._unreachable: tuple[float, str] | None = None  # (until when, why)
        self._reset_process_state()
        try:
            with self._connection():
                pass  # the schema, checked and migrated now if the server can be reached
        except RunStoreUnavailableError:
            pass  # the writer holds what is recorded until the server comes back
        close_at_exit(self)

    # -- connections -------------------------------------------------------------------------------

    def _reset_process_state(self) -> None:
        self._writer = BatchWriter(self)
        self._enqueue = self._writer.put  # type: ignore[method-assign]
        self._local = threading.local()
        # Weak: a reading thread's connection is closed when the thread ends (`_ThreadConnection`).
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._connections_lock = threading.Lock()
        self._writer_connection: Any = None
        # The temporary staging tables (see `_insert`) each connection has; and those created by
        # the transaction under way, which exist once it commits.
        self._staged: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
        self._staging_created: list[str] = []

    def _forget_parent_process(self) -> None:
        _inherited.extend([self._local, self._writer_connection, *self._connections])
        self._reset_process_state()

    def _scrub(self, text: str) -> str:
        """`text` without the password, should a driver's message ever quote it."""
        if self.__password:
            text = text.replace(self.__password, "***")
        return text.replace(self.__conninfo, self.url)

    def _connect(self) -> Any:
        if self._closed:
            raise RunStoreError(f"The run store {self.url} is closed; open it again with open_store().")
        # A server just found unreachable is not tried again at once: every cache lookup of a
        # flow would wait for its own connection attempt (up to connect_timeout each).
        if self._unreachable is not None and time.monotonic() < self._unreachable[0]:
            raise RunStoreUnavailableError(self._unreachable[1])
        try:
            connection = self._psycopg.connect(self.__conninfo, autocommit=True, **self._defaults)
        except self._psycopg.Error as error:
            message = (
                f"The run store {self.url} cannot be reached ({self._scrub(_one_line(error))}). Check that the PostgreSQL server is running and that FERROFLOW_RUNSTORE_URL names "
                "it (host, port, database, user and password)."
            )
            self._unreachable = (time.monotonic() + _RECONNECT_PAUSE, message)
            raise RunStoreUnavailableError(message) from None
        self._unreachable = None
        with self._connections_lock:
            self._connections.add(connection)
        try:
            self._prepare_schema(connection)
        except BaseException:
            self._discard(connection)
            raise
        return connection

    def _prepare_schema(self, connection: Any) -> None:
        with self._schema_lock:
            if self._schema_ready:
                return
            self._transaction(connection, lambda: self._migrate(connection.execute))
            self._schema_ready = True

    def _discard(self, connection: Any) -> None:
        with self._connections_lock:
            self._connections.discard(connection)
        with contextlib.suppress(Exception):
            connection.close()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        held = getattr(self._local, "connection", None)
        if held is None or held.connection.closed:
            held = self._local.connection = _ThreadConnection(self._connect())
        yield held.connection

    def _failure(self, connection: Any, error: Exception) -> RunStoreError:
        """The database's error as ferroflow's: unavailable if the connection is gone (which is
        then dropped, to be opened again on next use)."""
        message = self._scrub(_one_line(error))
        if connection.broken or connection.closed:
            self._discard(connection)
            held = getattr(self._local, "connection", None)
            if held is not None and held.connection is connection:
                self._local.connection = None
            if self._writer_connection is connection:
                self._writer_connection = None
            return RunStoreUnavailableError(
                f"The run store {self.url} went away ({message}). Check that the PostgreSQL server "
                "is running; recording resumes when it is back."
            )
        return RunStoreError(f"The run store {self.url} failed: {message}")

    def _transaction(self, connection: Any, work: Callable[[], T]) -> T:  # type: ignore[override]
        try:
            with connection.transaction():
                return work()
        except self._psycopg.Error as error:
            raise self._failure(connection, error) from None

    def _query(self, connection: Any, sql: str, arguments: Any, one: bool = False) -> Any:
        try:
            cursor = connection.execute(sql, arguments)
            return cursor.fetchone() if one else cursor.fetchall()
        except self._psycopg.Error as error:
            raise self._failure(connection, error) from None

    # -- the writer ------------------------------------------------------------------------------

    def write_batch(self, batch: Batch) -> None:
        """Commit what the writer batched, in one transaction (on the writer's thread)."""
        if self._writer_connection is None or self._writer_connection.closed:
            self._writer_connection = self._connect()
        connection = self._writer_connection
        self._staging_created.clear()
        self._transaction(connection, lambda: self._write_rows(connection, batch))
        self._staged.setdefault(connection, set()).update(self._staging_created)

    def _insert(self, connection: Any, statement: tuple[str, str], rows: list[tuple[Any, ...]]) -> None:
        """INSERT `rows` through COPY, which psycopg feeds from C: a multi-row statement costs
        more to build and parse than the server takes to run it. An upsert copies into a
        temporary table of this connection, then moves the rows on with its ON CONFLICT clause."""
        if not rows:
            return
        table, columns, upsert = queries.parts_of(statement)
        with connection.cursor() as cursor:
            if upsert:
                staging = f"ferroflow_staging_{table}"
                if staging not in self._staged.get(connection, ()):
                    cursor.execute(
                        f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS AS "
                        f"SELECT {columns} FROM {table} WITH NO DATA"
                    )
                    self._staging_created.append(staging)
                with cursor.copy(f"COPY {staging} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {staging}{upsert}")
            else:
                with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)

    def close(self) -> None:
        """Flush, stop the writer and close the connections. Closing twice is harmless."""
        if self._closed:
            return
        try:
            with contextlib.suppress(RunStoreUnavailableError):  # the writer says what it dropped
                self.flush()
        finally:
            self._writer.stop()
            self._closed = True
            with self._connections_lock:
                connections = list(self._connections)
                self._connections = weakref.WeakSet()
            for connection in connections:
                with contextlib.suppress(Exception):
                    connection.close()
            closed_before_exit(self)
