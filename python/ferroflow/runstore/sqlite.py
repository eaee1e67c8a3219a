"""The SQLite run store: one database file (WAL mode), or a private in-memory database.

Recording goes through a `BatchWriter` (`ferroflow.runstore.writer`): callers queue rows, its
thread hands them back in batches to `SQLiteRunStore.write_batch`, which commits each batch in one
transaction of multi-row INSERTs. Reads run the SQL here on the calling thread's own connection.

Several threads may share one store (readers get a connection per thread); several processes may
share one file (SQLite's WAL lets readers run beside the one writer; writers take turns, waiting up
to `lock_timeout` seconds before `RunStoreLockedError` names the file).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from ferroflow.exceptions import RunStoreError, RunStoreLockedError, RunStoreSchemaError, UnknownRunError
from ferroflow.runstore import parameters, writer
from ferroflow.runstore.parameters import summarize_parameters
from ferroflow.runstore.records import CacheEntry, FlowRunRecord, ResultRef, StateRecord, TaskRunRecord
from ferroflow.runstore.schema import CREATE_VERSION_TABLE, MIGRATIONS, SCHEMA_VERSION, statements
from ferroflow.runstore.writer import (
    FLOW_RUN,
    STATE,
    TASK_RUN,
    Batch,
    BatchWriter,
    close_at_exit,
    closed_before_exit,
)
from ferroflow.state_types import TERMINAL_STATE_TYPES

# This module held the writer and the parameter summaries before they had modules of their own:
# their names stay reachable here for code that reaches them through it.
PARAMETERS_SUMMARY_LIMIT = parameters.PARAMETERS_SUMMARY_LIMIT
_summary_repr = parameters._summary_repr
_MAX_BATCH = writer._MAX_BATCH

T = TypeVar("T")
R = TypeVar("R", FlowRunRecord, TaskRunRecord)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# ----------------------------------------------------------------------------------------------
# Conversions between the records' values and their columns


def _micros(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is local time, as `datetime.timestamp()` has it."""
    if moment.tzinfo is None:
        moment = moment.astimezone()
    # From the difference's fields: dividing by a timedelta costs three times as much, and the
    # engine converts two times per task run.
    since = moment - _EPOCH
    return (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds


def _datetime(micros: int | None) -> datetime | None:
    return None if micros is None else _at(micros)


def _at(micros: int) -> datetime:
    """The time of a column that is never NULL."""
    return _EPOCH + timedelta(microseconds=micros)


def _now_micros() -> int:
    return time.time_ns() // 1000


def _refuse_missing(**values: Any) -> None:
    """Refuse a missing id or name on the caller's thread: in the writer it would sink its whole batch."""
    for name, value in values.items():
        if not value:
            raise ValueError(
                f"{name} is required (got {value!r}); the run store cannot record a run or state without it."
            )


def _moment(value: datetime | None, name: str) -> int:
    """A recorded time as stored (see `_micros`): `value`, or now if None. A bad value is refused
    here, on the caller's thread: in the writer it would sink its whole batch."""
    if value is None:
        return _now_micros()
    _check_moment(name, value)
    return _micros(value)


def _check_moment(name: str, value: Any) -> None:
    """Refuse a bad time on the caller's thread: in the writer it would sink its whole batch."""
    if value is not None and not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime.datetime or None, not {type(value).__name__}: {value!r}.")


_NO_RESULT_COLUMNS = (None, None, None, None, None)


def _result_columns(result: ResultRef | None) -> tuple[str | None, ...]:
    if result is None:
        return _NO_RESULT_COLUMNS
    return (result.kind, result.value_json, result.storage, result.key, result.serializer)


def _result_from_columns(
    kind: str | None, value: str | None, storage: str | None, key: str | None, serializer: str | None
) -> ResultRef | None:
    if kind is None:
        return None
    return ResultRef(kind=kind, value_json=value, storage=storage, key=key, serializer=serializer)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# SQL

# Statements of the writer, as (head, tail) around the VALUES rows: `_insert_rows` puts many rows
# into one statement, because Python's sqlite3 hands the GIL over at every step of a statement,
# and with `executemany` that is every row, which makes the engine's thread wait.
_UPSERT_FLOW_RUNS = (
    "INSERT INTO flow_runs (id, name, flow_name, parent_flow_run_id, created, parameters) VALUES",
    " ON CONFLICT (id) DO UPDATE SET name = excluded.name, flow_name = excluded.flow_name,"
    " parameters = excluded.parameters, parent_flow_run_id = excluded.parent_flow_run_id",
)
_UPSERT_TASK_RUNS = (
    "INSERT INTO task_runs (id, name, task_name, flow_run_id, task_key, dynamic_key, created, parameters) VALUES",
    " ON CONFLICT (id) DO UPDATE SET name = excluded.name, task_name = excluded.task_name,"
    " flow_run_id = excluded.flow_run_id, task_key = excluded.task_key,"
    " dynamic_key = excluded.dynamic_key, parameters = excluded.parameters",
)
_INSERT_STATES = (
    "INSERT INTO states (run_id, type, name, message, timestamp,"
    " result_kind, result_value, result_storage, result_key, result_serializer) VALUES",
    "",
)
_PUT_CACHE_ENTRIES = (
    "INSERT OR REPLACE INTO cache_entries (key, task_name, created, expiration, result_kind,"
    " result_value, result_storage, result_key, result_serializer) VALUES",
    "",
)
# Rows per statement come from this ladder only (the largest that fits, then the next...): a
# statement of each size is compiled once per connection and reused from sqlite3's statement
# cache, where a batch-sized statement would be compiled for every batch (~1.5 us per row).
_ROWS_PER_STATEMENT = (256, 64, 16, 4, 1)


def _insert_rows(
    connection: sqlite3.Connection, statement: tuple[str, str], rows: list[tuple[Any, ...]]
) -> None:
    """Run an INSERT for `rows`, many rows per statement, within SQLite's parameter limit."""
    if not rows:
        return
    width = len(rows[0])
    limit = connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    start = 0
    for size in _ROWS_PER_STATEMENT:
        if size * width > limit and size > 1:
            continue
        sql = _multi_row_statement(statement, width, size)
        while len(rows) - start >= size:
            chunk = rows[start : start + size]
            connection.execute(sql, list(itertools.chain.from_iterable(chunk)))
            start += size


@functools.lru_cache(maxsize=64)
def _multi_row_statement(statement: tuple[str, str], width: int, rows: int) -> str:
    head, tail = statement
    placeholder = "(" + ", ".join("?" * width) + ")"
    return f"{head} {', '.join([placeholder] * rows)}{tail}"


_CACHE_COLUMNS = (
    "key, task_name, created, expiration, result_kind, result_value, result_storage, "
    "result_key, result_serializer"
)
_GET_CACHE_ENTRY = (
    f"SELECT {_CACHE_COLUMNS} FROM cache_entries WHERE key = ? AND (expiration IS NULL OR expiration > ?)"
)
_GET_CACHED_RESULT = (
    "SELECT result_kind, result_value, result_storage, result_key, result_serializer"
    " FROM cache_entries WHERE key = ? AND (expiration IS NULL OR expiration > ?)"
)
_FLOW_RUN_FIELDS = ("id", "name", "flow_name", "parameters", "parent_flow_run_id", "created")
_TASK_RUN_FIELDS = (
    "id",
    "name",
    "task_name",
    "flow_run_id",
    "task_key",
    "dynamic_key",
    "parameters",
    "created",
)
_PROGRESS_FIELDS = ("run_count", "start_time", "end_time", "state_type", "state_name")

# Runs with their progress, computed from their states in the same statement (one snapshot), as
# Prefect's orchestration has it: each RUNNING state is one more run (a retry), the first sets the
# start time, the current state is the last one, and the run has ended if a terminal state came
# after its last RUNNING state. The states are read through their run_id index, for these runs only.
_RUNS_WITH_PROGRESS = """
WITH runs AS (
    SELECT {fields}, ROW_NUMBER() OVER (ORDER BY {order}) AS ordinal
    FROM {table} {where} ORDER BY {order} LIMIT :limit
),
progress AS (
    SELECT run_id,
           SUM(type = 'RUNNING') AS run_count,
           MIN(CASE WHEN type = 'RUNNING' THEN timestamp END) AS start_time,
           MAX(CASE WHEN type = 'RUNNING' THEN rowid END) AS last_running,
           MAX(CASE WHEN type IN ({terminal}) THEN rowid END) AS last_terminal,
           MAX(CASE WHEN type IN ({terminal}) THEN timestamp END) AS last_terminal_time,
           MAX(rowid) AS last_state
    FROM states WHERE run_id IN (SELECT id FROM runs) GROUP BY run_id
)
SELECT {run_fields}, COALESCE(progress.run_count, 0), progress.start_time,
       CASE WHEN progress.last_terminal > COALESCE(progress.last_running, 0)
            THEN progress.last_terminal_time END,
       COALESCE(last.type, 'PENDING'), COALESCE(last.name, 'Pending')
FROM runs
LEFT JOIN progress ON progress.run_id = runs.id
LEFT JOIN states AS last ON last.rowid = progress.last_state
ORDER BY runs.ordinal
"""


# A run's states: the Pending state it was created in (not stored: see `record_task_run`), then
# its recorded states in the order they were recorded.
_STATES_OF_RUN = """
SELECT id, 'PENDING', 'Pending', NULL, created, NULL, NULL, NULL, NULL, NULL, 0 AS position
FROM (SELECT id, created FROM task_runs WHERE id = :run_id
      UNION ALL SELECT id, created FROM flow_runs WHERE id = :run_id)
UNION ALL
SELECT run_id, type, name, message, timestamp, result_kind, result_value, result_storage, result_key,
       result_serializer, rowid AS position
FROM states WHERE run_id = :run_id
ORDER BY position
"""


_TERMINAL_TYPES_LIST = ", ".join(f"'{state_type.value}'" for state_type in sorted(TERMINAL_STATE_TYPES))


def _runs_query(table: str, fields: tuple[str, ...], where: str, order: str) -> str:
    return _RUNS_WITH_PROGRESS.format(
        fields=", ".join(fields),
        run_fields=", ".join(f"runs.{field}" for field in fields),
        table=table,
        where=where,
        order=order,
        terminal=_TERMINAL_TYPES_LIST,
    )


def _run_from_row(record_type: type[R], fields: tuple[str, ...], row: tuple[Any, ...]) -> R:
    values = dict(zip(fields + _PROGRESS_FIELDS, row, strict=True))
    for name in ("created", "start_time", "end_time"):
        values[name] = _datetime(values[name])
    return record_type(**values)


def _cache_entry_from_row(row: tuple[Any, ...]) -> CacheEntry:
    key, task_name, created, expiration, *result = row
    return CacheEntry(
        key=key,
        task_name=task_name,
        result=_result_from_columns(*result),  # type: ignore[arg-type]
        created=_at(created),
        expiration=_datetime(expiration),
    )


def _cache_filter(
    key: str | None, task_name: str | None, expired_only: bool, now: datetime | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    arguments: list[Any] = []
    if key is not None:
        clauses.append("key = ?")
        arguments.append(key)
    if task_name is not None:
        clauses.append("task_name = ?")
        arguments.append(task_name)
    if expired_only:
        clauses.append("expiration IS NOT NULL AND expiration <= ?")
        arguments.append(_micros(now or datetime.now(UTC)))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), arguments


def _is_lock_error(error: sqlite3.OperationalError) -> bool:
    text = str(error)
    return "locked" in text or "busy" in text


_state_type_texts: dict[Any, str] = {}


def _state_type_text(state_type: Any) -> str:
    """A state type's text: a string as it is, an enum's `.value` (kept per member: reading an
    enum's value goes through a descriptor, twice per task run on the engine's thread)."""
    if type(state_type) is str:
        return state_type
    try:
        return _state_type_texts[state_type]
    except KeyError:
        text = _state_type_texts[state_type] = str(getattr(state_type, "value", state_type))
        return text
    except TypeError:  # unhashable: nothing to keep it by
        return str(getattr(state_type, "value", state_type))


def _write_rows(connection: sqlite3.Connection, batch: Batch) -> None:
    """The batch's rows, a few multi-row INSERTs per table, then its calls' work."""
    flow_runs, task_runs, states, cache_entries = batch.rows
    _insert_rows(connection, _UPSERT_FLOW_RUNS, [_summarized(row) for row in flow_runs])
    _insert_rows(connection, _UPSERT_TASK_RUNS, [_summarized(row) for row in task_runs])
    _insert_rows(connection, _INSERT_STATES, states)
    _insert_rows(
        connection,
        _PUT_CACHE_ENTRIES,
        [
            (
                entry.key,
                entry.task_name,
                _micros(entry.created),
                None if entry.expiration is None else _micros(entry.expiration),
                *_result_columns(entry.result),
            )
            for entry in cache_entries
        ],
    )
    batch.run_calls(connection)


def _summarized(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A run's row with its parameters (the last column) replaced by their summary. The writer's
    thread makes it: summarizing on the caller's thread would cost it more than queueing the values."""
    return (*row[:-1], summarize_parameters(row[-1]))


# ----------------------------------------------------------------------------------------------
# The store


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced (sqlite3's own cannot)."""


class SQLiteRunStore:
    """The run store in one SQLite database file, or in memory when `path` is None.

    Prefer `ferroflow.runstore.open_store(url)`, which picks the backend from a URL.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None, *, lock_timeout: float = 10.0, batch_interval: float = 0.1
    ) -> None:
        self.path = None if path is None else Path(path).expanduser().absolute()
        self.url = "memory://" if self.path is None else f"sqlite:///{self.path}"
        self.lock_timeout = lock_timeout
        self.batch_interval = batch_interval
        self._closed = False
        self._reset_process_state()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # A memory database lives in one connection, shared by every thread under a lock.
        self._shared = self._connect() if self.path is None else None
        try:
            with self._connection() as connection:
                self._prepare_schema(connection)
        except BaseException:
            self._close_connections()
            raise
        close_at_exit(self)

    def __repr__(self) -> str:
        return f"SQLiteRunStore({self.url!r})"

    def __enter__(self) -> SQLiteRunStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- connections and transactions ----------------------------------------------------------

    def _reset_process_state(self) -> None:
        """A fresh writer and fresh per-thread connections (at start, and in a forked child)."""
        self._writer = BatchWriter(self)
        # Bound once: the recording methods queue through it several times per task run.
        self._enqueue = self._writer.put
        self._shared_lock = threading.RLock()
        self._local = threading.local()
        # Weak: a reader thread's connection goes (and closes) with its thread.
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()

    def _forget_parent_process(self) -> None:
        # SQLite connections must not be used across fork: a file store's child starts afresh and
        # reconnects on first use. A memory database lives in its one connection, kept as it is.
        if self.path is not None:
            self._reset_process_state()

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
            connection = self._local.connection = self._connect()
            return connection

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
            except sqlite3.OperationalError as error:
                if not _is_lock_error(error):
                    raise RunStoreError(f"The run store {self.url} failed: {error}") from error
                if time.monotonic() >= deadline:
                    raise RunStoreLockedError(
                        f"The run store database {self.path or self.url} stayed locked for more than "
                        f"{self.lock_timeout:g} s. Another process (or a stuck one) holds a write lock "
                        "on it: wait for it to finish or stop it, or point FERROFLOW_RUNSTORE_URL at "
                        "another database file."
                    ) from error
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    def _transaction(self, connection: sqlite3.Connection, work: Callable[[], T]) -> T:
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

    def _prepare_schema(self, connection: sqlite3.Connection) -> None:
        """Create or migrate the schema in one transaction, so concurrent first opens agree."""

        def migrate() -> None:
            connection.execute(CREATE_VERSION_TABLE)
            row = connection.execute("SELECT version FROM schema_version").fetchone()
            version = 0 if row is None else row[0]
            if version > SCHEMA_VERSION:
                raise RunStoreSchemaError(
                    f"The run store {self.path or self.url} has schema version {version}, written by a "
                    f"newer ferroflow; this ferroflow understands up to version {SCHEMA_VERSION}. "
                    "Upgrade ferroflow (pip install --upgrade ferroflow), or point "
                    "FERROFLOW_RUNSTORE_URL at another database file."
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in statements(MIGRATIONS[target]):
                    connection.execute(statement)
            if row is None:
                connection.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif version < SCHEMA_VERSION:
                connection.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

        self._transaction(connection, migrate)

    @property
    def schema_version(self) -> int:
        with self._connection() as connection:
            return connection.execute("SELECT version FROM schema_version").fetchone()[0]

    # -- the writer ------------------------------------------------------------------------------

    def write_batch(self, batch: Batch) -> None:
        """Commit what the writer batched, in one transaction (on the writer's thread)."""
        with self._connection() as connection:
            self._transaction(connection, lambda: _write_rows(connection, batch))

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything recorded so far is committed; raise the writer's last error if any."""
        self._writer.flush(timeout)

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

    # -- recording runs and states (queued) ---------------------------------------------------------

    def record_flow_run(
        self,
        run_id: str,
        name: str,
        flow_name: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        parent_flow_run_id: str | None = None,
        created: datetime | None = None,
    ) -> None:
        if not (run_id and name and flow_name):
            _refuse_missing(run_id=run_id, name=name, flow_name=flow_name)
        self._enqueue(
            (FLOW_RUN, (run_id, name, flow_name, parent_flow_run_id, _moment(created, "created"), parameters))
        )

    def record_task_run(
        self,
        run_id: str,
        name: str,
        task_name: str,
        *,
        flow_run_id: str | None = None,
        task_key: str = "",
        dynamic_key: str = "",
        parameters: Mapping[str, Any] | None = None,
        created: datetime | None = None,
    ) -> None:
        if not (run_id and name and task_name):
            _refuse_missing(run_id=run_id, name=name, task_name=task_name)
        self._enqueue(
            (
                TASK_RUN,
                (
                    run_id,
                    name,
                    task_name,
                    flow_run_id,
                    task_key,
                    dynamic_key,
                    _moment(created, "created"),
                    parameters,
                ),
            )
        )

    def record_state(
        self,
        run_id: str,
        state_type: str,
        state_name: str,
        *,
        timestamp: datetime | None = None,
        message: str | None = None,
        result: ResultRef | None = None,
    ) -> None:
        if not (run_id and state_type and state_name):
            _refuse_missing(run_id=run_id, state_type=state_type, state_name=state_name)
        self._enqueue(
            (
                STATE,
                (
                    run_id,
                    _state_type_text(state_type),
                    state_name,
                    message,
                    _moment(timestamp, "timestamp"),
                    *_result_columns(result),
                ),
            )
        )

    # -- reading runs and states ------------------------------------------------------------------

    def _read(self, query: str, arguments: Any = ()) -> list[tuple[Any, ...]]:
        self.flush()  # read your own writes
        with self._connection() as connection:
            return self._retrying(lambda: connection.execute(query, arguments).fetchall())

    def _runs(self, kind: type[R], where: str, order: str, arguments: dict[str, Any]) -> list[R]:
        table, fields = (
            ("flow_runs", _FLOW_RUN_FIELDS) if kind is FlowRunRecord else ("task_runs", _TASK_RUN_FIELDS)
        )
        rows = self._read(_runs_query(table, fields, where, order), {"limit": -1, **arguments})
        return [_run_from_row(kind, fields, row) for row in rows]

    def list_flow_runs(
        self, limit: int | None = 20, *, parent_flow_run_id: str | None = None
    ) -> list[FlowRunRecord]:
        where = "" if parent_flow_run_id is None else "WHERE parent_flow_run_id = :parent"
        return self._runs(
            FlowRunRecord,
            where,
            "created DESC, rowid DESC",
            {"parent": parent_flow_run_id, "limit": -1 if limit is None else limit},
        )

    def list_task_runs(self, flow_run_id: str) -> list[TaskRunRecord]:
        return self._runs(
            TaskRunRecord, "WHERE flow_run_id = :flow_run_id", "created, rowid", {"flow_run_id": flow_run_id}
        )

    def get_flow_run(self, run_id: str) -> FlowRunRecord:
        return self._find_run(FlowRunRecord, run_id, "flow run")

    def get_task_run(self, run_id: str) -> TaskRunRecord:
        return self._find_run(TaskRunRecord, run_id, "task run")

    def _find_run(self, kind: type[R], run_id: str, description: str) -> R:
        """The run whose id is `run_id` or, failing that, the only one whose id starts with it."""
        runs = self._runs(kind, "WHERE id = :id", "id", {"id": run_id})
        if not runs and run_id:
            # A range rather than LIKE: ids may hold LIKE's wildcards, and the range uses the index.
            runs = self._runs(
                kind,
                "WHERE id >= :id AND id < :end",
                "id",
                {"id": run_id, "end": run_id + "\U0010ffff", "limit": 6},
            )
        if len(runs) == 1:
            return runs[0]
        if not runs:
            raise UnknownRunError(
                f"No {description} with an id starting with {run_id!r} in the run store {self.path or self.url}. "
                "List recent flow runs with `ferroflow runs ls`."
            )
        candidates = ", ".join(run.id for run in runs[:5])
        raise UnknownRunError(
            f"{run_id!r} is the start of several {description} ids ({candidates}{', ...' if len(runs) > 5 else ''}); "
            "give more of the id.",
            candidates=tuple(run.id for run in runs),
        )

    def list_states(self, run_id: str) -> list[StateRecord]:
        """The run's states in order, starting with the Pending state it was created in."""
        rows = self._read(_STATES_OF_RUN, {"run_id": run_id})
        return [
            StateRecord(
                run_id=run_id_,
                type=state_type,
                name=name,
                message=message,
                timestamp=_at(ts),
                result=_result_from_columns(*result),  # type: ignore[arg-type]
            )
            for run_id_, state_type, name, message, ts, *result, _position in rows
        ]

    def referenced_result_keys(
        self, storage: str | None = None, *, now: datetime | None = None
    ) -> set[tuple[str, str]]:
        """The `(storage, key)` of every persisted result a state or cache entry still refers to.

        With `now`, cache entries expired by then do not count. Result pruning deletes only what is
        not in this set.
        """
        cache_clause = "" if now is None else " AND (expiration IS NULL OR expiration > :now)"
        storage_clause = "" if storage is None else " AND result_storage = :storage"
        rows = self._read(
            "SELECT result_storage, result_key FROM states WHERE result_kind = 'persisted'"
            + storage_clause
            + " UNION SELECT result_storage, result_key FROM cache_entries WHERE result_kind = 'persisted'"
            + storage_clause
            + cache_clause,
            {"storage": storage, "now": None if now is None else _micros(now)},
        )
        return {(row[0], row[1]) for row in rows}

    # -- the task cache -----------------------------------------------------------------------------

    def put_cache_entry(
        self,
        key: str,
        task_name: str,
        result: ResultRef,
        *,
        created: datetime | None = None,
        expiration: datetime | None = None,
    ) -> None:
        """Cache `result` under `key`, replacing any entry the key had. Visible to this process at once."""
        _check_moment("created", created)
        _check_moment("expiration", expiration)
        entry = CacheEntry(
            key=key,
            task_name=task_name,
            result=result,
            created=created or datetime.now(UTC),
            expiration=expiration,
        )
        self._writer.put_cache_entry(entry)

    def get_cache_entry(self, key: str, now: datetime | None = None) -> CacheEntry | None:
        """The entry cached under `key` unless it has expired by `now` (default: the current time)."""
        found = self._find_cache_entry(key, now, _GET_CACHE_ENTRY)
        return _cache_entry_from_row(found) if isinstance(found, tuple) else found

    def get_cached_result(self, key: str, now: datetime | None = None) -> ResultRef | None:
        """`get_cache_entry(key, now).result`, for the engine's hot path: every cache hit looks
        its key up, and the entry's times cost more to convert than the lookup's own work."""
        found = self._find_cache_entry(key, now, _GET_CACHED_RESULT)
        if isinstance(found, tuple):
            return _result_from_columns(*found)
        return None if found is None else found.result

    def _find_cache_entry(
        self, key: str, now: datetime | None, query: str
    ) -> CacheEntry | tuple[Any, ...] | None:
        """The unexpired entry under `key`: the one this process put and the writer has not
        committed yet (read your writes), else the database's row that `query` selects; None if
        there is none."""
        pending = self._writer.uncommitted_cache_entries.get(key)
        if pending is not None:
            return None if pending.is_expired(now or datetime.now(UTC)) else pending
        return self._point_query(query, (key, _now_micros() if now is None else _micros(now)))

    def _point_query(self, query: str, arguments: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One row by key. The hot path of every cache hit: this thread's connection, no flush,
        no lock."""
        if self._shared is not None:
            with self._connection() as connection:
                return connection.execute(query, arguments).fetchone()  # type: ignore[no-any-return]
        try:
            return self._reader().execute(query, arguments).fetchone()  # type: ignore[no-any-return]
        except sqlite3.OperationalError as error:
            if not _is_lock_error(error):
                raise RunStoreError(f"The run store {self.url} failed: {error}") from error
            return self._retrying(lambda: self._reader().execute(query, arguments).fetchone())

    def list_cache_entries(
        self,
        *,
        key: str | None = None,
        task_name: str | None = None,
        expired_only: bool = False,
        now: datetime | None = None,
    ) -> list[CacheEntry]:
        """Cache entries, newest first, optionally only those matching every filter given."""
        where, arguments = _cache_filter(key, task_name, expired_only, now)
        rows = self._read(
            f"SELECT {_CACHE_COLUMNS} FROM cache_entries{where} ORDER BY created DESC", arguments
        )
        return [_cache_entry_from_row(row) for row in rows]

    def delete_cache_entries(
        self,
        *,
        key: str | None = None,
        task_name: str | None = None,
        expired_only: bool = False,
        now: datetime | None = None,
    ) -> int:
        """Delete the cache entries matching every filter given (all of them with none); the count."""
        where, arguments = _cache_filter(key, task_name, expired_only, now)
        return self._writer.call(
            lambda connection: connection.execute(f"DELETE FROM cache_entries{where}", arguments).rowcount,
            timeout=None,
        )
