"""What every SQL run store shares: recording through the batched writer, the rows of a batch,
the reads, the task cache and deleting history, over one schema and one SQL text
(`ferroflow.runstore.queries`).

A backend (`sqlite`, `postgresql`) subclasses `SQLRunStore` with its connections and
transactions: the hooks at the top of the class.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

from ferroflow.exceptions import RunStoreSchemaError, RunStoreUnavailableError, UnknownRunError
from ferroflow.runstore import queries, schema
from ferroflow.runstore.queries import Dialect
from ferroflow.runstore.records import CacheEntry, FlowRunRecord, ResultRef, StateRecord, TaskRunRecord
from ferroflow.runstore.rows import (
    at,
    cache_entry_from_row,
    cache_entry_rows,
    check_moment,
    encodable_text,
    micros,
    moment,
    now_micros,
    refuse_missing,
    result_columns,
    result_from_columns,
    run_from_row,
    run_rows,
    state_type_text,
)
from ferroflow.runstore.writer import FLOW_RUN, STATE, TASK_RUN, Batch, BatchWriter

T = TypeVar("T")
R = TypeVar("R", FlowRunRecord, TaskRunRecord)

Execute = Callable[[str, Any], Any]
"""`execute(sql, arguments)` on a connection: returns a cursor (`fetchall`, `fetchone`, `rowcount`)."""

_DELETE_CHUNK = 500


class SQLRunStore:
    """A run store in a SQL database. Prefer `ferroflow.runstore.open_store(url)`."""

    dialect: Dialect
    url: str
    """The store's URL, without any password: safe to show."""
    batch_interval: float
    _writer: BatchWriter

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the backend's hooks -------------------------------------------------------------------------

    @property
    def location(self) -> str:
        """What errors name: the database file, or the URL without its password."""
        return self.url

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        """A connection for this thread's reads."""
        raise NotImplementedError
        yield

    def _transaction(self, connection: Any, work: Callable[[], T]) -> T:
        """Run `work` in one transaction on `connection`; the database's errors become `RunStoreError`."""
        raise NotImplementedError

    def _query(self, connection: Any, sql: str, arguments: Any, one: bool = False) -> Any:
        """Rows of a read (`fetchall`, or `fetchone` with `one`); errors become `RunStoreError`."""
        raise NotImplementedError

    def _max_parameters(self, connection: Any) -> int:
        return self.dialect.max_parameters

    def write_batch(self, batch: Batch) -> None:
        """Commit what the writer batched, in one transaction (on the writer's thread)."""
        raise NotImplementedError

    def close(self) -> None:
        """Commit what is queued, then close the connections."""
        raise NotImplementedError

    # -- schema -------------------------------------------------------------------------------------

    def _migrate(self, execute: Execute) -> None:
        """Create the schema or bring it to `SCHEMA_VERSION`, inside the caller's transaction."""
        if self.dialect.migration_lock:
            execute(self.dialect.migration_lock, ())
        execute(schema.CREATE_VERSION_TABLE, ())
        row = execute("SELECT version FROM schema_version", ()).fetchone()
        version = 0 if row is None else row[0]
        target = schema.SCHEMA_VERSION
        if version > target:
            raise RunStoreSchemaError(
                f"The run store {self.location} has schema version {version}, written by a "
                f"newer ferroflow; this ferroflow understands up to version {target}. "
                "Upgrade ferroflow (pip install --upgrade ferroflow), or point "
                "FERROFLOW_RUNSTORE_URL at another database."
            )
        if version == 0:
            scripts = [schema.create_script(self.dialect.identity)]
        else:
            upgrades = range(version + 1, target + 1)
            if self.dialect.name != "sqlite" and any(n in schema.SQLITE_ONLY_UPGRADES for n in upgrades):
                raise RunStoreSchemaError(
                    f"The run store {self.location} has schema version {version}, which only SQLite "
                    "stores had; create this store afresh."
                )
            scripts = [schema.UPGRADES[n].replace("{identity}", self.dialect.identity) for n in upgrades]
        for script in scripts:
            for statement in schema.statements(script):
                execute(statement, ())
        if row is None:
            execute(self.dialect.sql("INSERT INTO schema_version (version) VALUES (?)"), (target,))
        elif version < target:
            execute(self.dialect.sql("UPDATE schema_version SET version = ?"), (target,))

    @property
    def schema_version(self) -> int:
        with self._connection() as connection:
            return int(self._query(connection, "SELECT version FROM schema_version", (), one=True)[0])

    # -- the writer ---------------------------------------------------------------------------------

    def _write_rows(self, connection: Any, batch: Batch) -> None:
        """The batch's rows, a few multi-row INSERTs per table, then its calls' work."""
        flow_runs, task_runs, states, cache_entries = batch.rows
        self._insert(connection, queries.UPSERT_FLOW_RUNS, run_rows(flow_runs))
        self._insert(connection, queries.UPSERT_TASK_RUNS, run_rows(task_runs))
        self._insert(connection, queries.INSERT_STATES, states)
        self._insert(connection, queries.PUT_CACHE_ENTRIES, cache_entry_rows(cache_entries))
        batch.run_calls(connection)

    def _insert(self, connection: Any, statement: tuple[str, str], rows: list[tuple[Any, ...]]) -> None:
        """INSERT `rows` by `statement`: multi-row statements (see `queries.insert_rows`)."""
        queries.insert_rows(
            connection.execute, self.dialect, statement, rows, self._max_parameters(connection)
        )

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything recorded so far is committed; raise the writer's last error if any."""
        self._writer.flush(timeout)

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
            refuse_missing(run_id=run_id, name=name, flow_name=flow_name)
        self._enqueue(
            (FLOW_RUN, (run_id, name, flow_name, parent_flow_run_id, moment(created, "created"), parameters))
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
            refuse_missing(run_id=run_id, name=name, task_name=task_name)
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
                    moment(created, "created"),
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
            refuse_missing(run_id=run_id, state_type=state_type, state_name=state_name)
        self._enqueue(
            (
                STATE,
                (
                    run_id,
                    state_type_text(state_type),
                    state_name,
                    message,
                    moment(timestamp, "timestamp"),
                    *result_columns(result),
                ),
            )
        )

    def _enqueue(self, item: Any) -> None:
        self._writer.put(item)

    # -- reading runs and states --------------------------------------------------------------------

    def _read(self, query: str, arguments: Any = ()) -> list[tuple[Any, ...]]:
        self._flush_before_reading()
        with self._connection() as connection:
            return self._query(connection, self.dialect.sql(query), arguments)  # type: ignore[no-any-return]

    def _flush_before_reading(self) -> None:
        """Read your own writes; records held while the database was unreachable cannot be, and
        the read that follows says what is wrong."""
        with contextlib.suppress(RunStoreUnavailableError):
            self.flush()

    def _runs(
        self, kind: type[R], where: str, order: str, arguments: dict[str, Any], limit: int | None = None
    ) -> list[R]:
        table, fields = (
            ("flow_runs", queries.FLOW_RUN_FIELDS)
            if kind is FlowRunRecord
            else ("task_runs", queries.TASK_RUN_FIELDS)
        )
        query = queries.runs_query(table, fields, where, order, limited=limit is not None)
        rows = self._read(query, {"limit": limit, **arguments})
        return [run_from_row(kind, fields, row) for row in rows]

    def list_flow_runs(
        self, limit: int | None = 20, *, parent_flow_run_id: str | None = None
    ) -> list[FlowRunRecord]:
        where = "" if parent_flow_run_id is None else "WHERE parent_flow_run_id = :parent"
        return self._runs(
            FlowRunRecord, where, "created DESC, seq DESC", {"parent": parent_flow_run_id}, limit
        )

    def list_task_runs(self, flow_run_id: str) -> list[TaskRunRecord]:
        return self._runs(
            TaskRunRecord, "WHERE flow_run_id = :flow_run_id", "created, seq", {"flow_run_id": flow_run_id}
        )

    def get_flow_run(self, run_id: str) -> FlowRunRecord:
        return self._find_run(FlowRunRecord, run_id, "flow run")

    def get_task_run(self, run_id: str) -> TaskRunRecord:
        return self._find_run(TaskRunRecord, run_id, "task run")

    def _find_run(self, kind: type[R], run_id: str, description: str) -> R:
        """The run whose id is `run_id` or, failing that, the only one whose id starts with it."""
        runs = self._runs(kind, "WHERE id = :id", "id", {"id": run_id})
        if not runs and run_id:
            # A prefix compared as a prefix: ids may hold LIKE's wildcards, and a range of text
            # depends on the database's collation.
            runs = self._runs(
                kind,
                "WHERE substr(id, 1, :length) = :id",
                "id",
                {"id": run_id, "length": len(run_id)},
                limit=6,
            )
        if len(runs) == 1:
            return runs[0]
        if not runs:
            raise UnknownRunError(
                f"No {description} with an id starting with {run_id!r} in the run store {self.location}. "
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
        rows = self._read(queries.STATES_OF_RUN, {"run_id": run_id})
        return [
            StateRecord(
                run_id=run_id_,
                type=state_type,
                name=name,
                message=message,
                timestamp=at(ts),
                result=result_from_columns(*result),  # type: ignore[arg-type]
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
        arguments: dict[str, Any] = {}
        if storage is not None:
            arguments["storage"] = storage
        if now is not None:
            arguments["now"] = micros(now)
        rows = self._read(queries.referenced_results_query(storage is not None, now is not None), arguments)
        return {(row[0], row[1]) for row in rows}

    # -- deleting history ---------------------------------------------------------------------------

    def delete_flow_runs(
        self, run_ids: list[str] | None = None, *, created_before: datetime | None = None
    ) -> int:
        """Delete flow runs (those in `run_ids`, or created before `created_before`) with their
        subflow runs, task runs and states, in one transaction; task runs of no flow run created
        before `created_before` go too. The number of flow runs deleted."""
        if (run_ids is None) == (created_before is None):
            raise ValueError("delete_flow_runs takes run_ids or created_before (one of them).")
        check_moment("created_before", created_before)
        if run_ids is not None and not run_ids:
            return 0
        dialect = self.dialect

        def work(connection: Any) -> int:
            def execute(sql: str, arguments: Any) -> Any:
                return connection.execute(dialect.sql(sql), arguments)

            if run_ids is not None:
                roots, arguments = queries.in_list("id", len(run_ids)), list[Any](run_ids)
            else:
                cutoff = micros(created_before)  # type: ignore[arg-type]
                roots, arguments = "created < ?", [cutoff]
                lone = "SELECT id FROM task_runs WHERE flow_run_id IS NULL AND created < ?"
                execute(f"DELETE FROM states WHERE run_id IN ({lone})", [cutoff])
                execute("DELETE FROM task_runs WHERE flow_run_id IS NULL AND created < ?", [cutoff])
            found = execute(queries.SUBFLOWS_OF.format(where=roots), arguments).fetchall()
            ids = [row[0] for row in found]
            for start in range(0, len(ids), _DELETE_CHUNK):
                chunk = ids[start : start + _DELETE_CHUNK]
                in_flow_runs = queries.in_list("flow_run_id", len(chunk))
                execute(
                    f"DELETE FROM states WHERE run_id IN (SELECT id FROM task_runs WHERE {in_flow_runs})",
                    chunk,
                )
                execute(f"DELETE FROM task_runs WHERE {in_flow_runs}", chunk)
                execute(f"DELETE FROM states WHERE {queries.in_list('run_id', len(chunk))}", chunk)
                execute(f"DELETE FROM flow_runs WHERE {queries.in_list('id', len(chunk))}", chunk)
            return len(ids)

        return self._writer.call(work, timeout=None)

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
        check_moment("created", created)
        check_moment("expiration", expiration)
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
        found = self._find_cache_entry(key, now, queries.GET_CACHE_ENTRY)
        return cache_entry_from_row(found) if isinstance(found, tuple) else found

    def get_cached_result(self, key: str, now: datetime | None = None) -> ResultRef | None:
        """`get_cache_entry(key, now).result`, for the engine's hot path: every cache hit looks
        its key up, and the entry's times cost more to convert than the lookup's own work."""
        found = self._find_cache_entry(key, now, queries.GET_CACHED_RESULT)
        if isinstance(found, tuple):
            return result_from_columns(*found)
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
        when = now_micros() if now is None else micros(now)
        try:
            return self._point_query(self.dialect.sql(query), (key, when))
        except UnicodeEncodeError:  # stored as the writer stores such keys: see `encodable_text`
            return self._point_query(self.dialect.sql(query), (encodable_text(key), when))

    def _point_query(self, query: str, arguments: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One row by key (every cache hit): no flush."""
        with self._connection() as connection:
            return self._query(connection, query, arguments, one=True)  # type: ignore[no-any-return]

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
            f"SELECT {queries.CACHE_COLUMNS} FROM cache_entries{where} ORDER BY created DESC", arguments
        )
        return [cache_entry_from_row(row) for row in rows]

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
        sql = self.dialect.sql(f"DELETE FROM cache_entries{where}")
        return self._writer.call(
            lambda connection: connection.execute(sql, arguments).rowcount,
            timeout=None,
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
        arguments.append(micros(now or datetime.now(UTC)))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), arguments
