"""The run store: a record of flow runs, task runs, their states and result references, and the
task-cache table.

The engine talks to it through `RunStore`, in plain data (ids, names, strings, datetimes, dicts),
and gets one from `open_store(url)`:

    store = open_store()                      # the runstore_url setting, else $FERROFLOW_HOME/ferroflow.db
    store.record_flow_run(flow_run_id, "crimson-fox", "etl", parameters={"day": "2024-01-02"})  # Pending
    store.record_state(flow_run_id, "RUNNING", "Running")
    store.record_task_run(task_run_id, "load-0", "load", flow_run_id=flow_run_id, task_key="etl.load")
    store.record_state(task_run_id, "COMPLETED", "Completed",
                       result=ResultRef.persisted("local-file-system/dev", "5f0c...", "pickle"))
    store.flush()                             # only needed before reading from another process

Recording is queued and committed in batches by a background thread; see `docs/runstore.md`.

The package's modules, each with one job:
- `records`: the plain records a store hands back (runs, states, result references, cache entries);
- `writer`: the batched writer every backend records through (queue, thread, flush, process exit,
  records held while a database server cannot be reached);
- `parameters`: the bounded summary of a run's parameters, all a store keeps of them;
- `store`: what every SQL backend shares (`SQLRunStore`): recording, reading, the task cache,
  deleting history; its SQL in `queries` (one text, a `Dialect` per database), its rows in `rows`,
  its schema and migrations in `schema`;
- `sqlite`: the SQLite backend (the embedded default: a file, or memory);
- `postgresql`: the PostgreSQL backend (a database shared by many processes and machines; needs
  the `postgres` extra: psycopg);
- `ids`: the clock-ordered ids that keep the store's indexes appending;
- `console`: showing the store in a terminal, for the `ferroflow runs` and `ferroflow cache` commands.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from ferroflow.runstore.parameters import summarize_parameters
from ferroflow.runstore.records import (
    CacheEntry,
    FlowRunRecord,
    ResultRef,
    RunRecord,
    StateRecord,
    TaskRunRecord,
)
from ferroflow.runstore.sqlite import SQLiteRunStore
from ferroflow.runstore.store import SQLRunStore
from ferroflow.settings import (
    MEMORY_RUNSTORE_URL,
    SQLITE_URL_PREFIX,
    check_runstore_url,
    env_name,
    get_current_settings,
    is_postgresql_url,
)

RUNSTORE_URL_VARIABLE = env_name("runstore_url")  # FERROFLOW_RUNSTORE_URL


@runtime_checkable
class RunStore(Protocol):
    """What the engine and the CLI need from a run store, whatever its backend.

    Recording methods are cheap and may be asynchronous: their effects become visible to other
    processes after `flush()` (or the backend's next batch). Reads in the same process see every
    write made before them. Run ids are unique across flow and task runs.
    """

    url: str

    # Recording (the engine's hot path). A run begins in a Pending state at `created` (default:
    # now): recording the run records that state, which `list_states` gives first. Record the
    # states that follow it with `record_state`.
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
        """Record (or rename) a flow run, Pending since `created`; record it before its states."""

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
        """Record (or rename) a task run, Pending since `created`; record it before its states."""

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
        """Append a state to a run after its first (Pending) one; the run's current state, run
        count and times follow it."""

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything recorded so far is stored."""

    def close(self) -> None:
        """Flush and release the store."""

    def delete_flow_runs(
        self, run_ids: list[str] | None = None, *, created_before: datetime | None = None
    ) -> int:
        """Delete flow runs (by id, or created before a time) with their subflow runs, task runs
        and states; the number of flow runs deleted."""

    # Reading
    def list_flow_runs(
        self, limit: int | None = 20, *, parent_flow_run_id: str | None = None
    ) -> list[FlowRunRecord]:
        """The newest flow runs first (only the subflows of `parent_flow_run_id` if given)."""

    def get_flow_run(self, run_id: str) -> FlowRunRecord:
        """The flow run with this id or id prefix; `UnknownRunError` if none or several match."""

    def get_task_run(self, run_id: str) -> TaskRunRecord: ...
    def list_task_runs(self, flow_run_id: str) -> list[TaskRunRecord]: ...
    def list_states(self, run_id: str) -> list[StateRecord]: ...
    def referenced_result_keys(
        self, storage: str | None = None, *, now: datetime | None = None
    ) -> set[tuple[str, str]]:
        """`(storage, key)` of every persisted result still referenced by a state or cache entry."""

    # The task cache
    def put_cache_entry(
        self,
        key: str,
        task_name: str,
        result: ResultRef,
        *,
        created: datetime | None = None,
        expiration: datetime | None = None,
    ) -> None: ...
    def get_cache_entry(self, key: str, now: datetime | None = None) -> CacheEntry | None: ...
    def get_cached_result(self, key: str, now: datetime | None = None) -> ResultRef | None:
        """`get_cache_entry(key, now).result`, as cheaply as the backend can (every hit calls it)."""

    def list_cache_entries(
        self,
        *,
        key: str | None = None,
        task_name: str | None = None,
        expired_only: bool = False,
        now: datetime | None = None,
    ) -> list[CacheEntry]: ...
    def delete_cache_entries(
        self,
        *,
        key: str | None = None,
        task_name: str | None = None,
        expired_only: bool = False,
        now: datetime | None = None,
    ) -> int: ...


def default_store_url() -> str:
    """The `runstore_url` setting (`FERROFLOW_RUNSTORE_URL`, a profile or `temporary_settings`),
    else `sqlite:///<FERROFLOW_HOME>/ferroflow.db`.

    Called once per outermost flow run: it costs one `get_current_settings()`.
    """
    return get_current_settings().runstore_url_in_force


def open_store(url: str | None = None, *, lock_timeout: float = 10.0) -> RunStore:
    """Open the run store at `url` (default: `default_store_url()`), creating it on first use.

    `sqlite:///relative/path.db` and `sqlite:////absolute/path.db` name a SQLite file (as in
    SQLAlchemy, a fourth slash starts an absolute path; a relative path is taken from the working
    directory); `postgresql://user:password@host:port/database` a PostgreSQL database (with the
    `postgres` extra installed: `pip install "ferroflow[postgres]"`); `memory://` a private
    in-memory store. Any other URL raises ValueError listing these forms. The caller owns the
    store: `close()` it, or let interpreter exit flush and close it.
    """
    url = check_runstore_url(url) if url else default_store_url()
    if url == MEMORY_RUNSTORE_URL:
        return SQLiteRunStore(None, lock_timeout=lock_timeout)
    if is_postgresql_url(url):
        from ferroflow.runstore.postgresql import PostgreSQLRunStore  # psycopg: only when used

        return PostgreSQLRunStore(url)
    return SQLiteRunStore(url.removeprefix(SQLITE_URL_PREFIX), lock_timeout=lock_timeout)


__all__ = [
    "RUNSTORE_URL_VARIABLE",
    "CacheEntry",
    "FlowRunRecord",
    "ResultRef",
    "RunRecord",
    "RunStore",
    "SQLRunStore",
    "SQLiteRunStore",
    "StateRecord",
    "TaskRunRecord",
    "default_store_url",
    "open_store",
    "summarize_parameters",
]
