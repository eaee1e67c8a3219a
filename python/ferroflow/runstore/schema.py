"""The run store's schema, one for every SQL database, and its migrations.

`create_script(dialect)` creates a new store at `SCHEMA_VERSION`. `UPGRADES[n]` turns a version
`n - 1` store into version `n`; a release that changes the schema appends one script (written in
the portable SQL below, with `{identity}` for an identity column) and bumps `SCHEMA_VERSION`.
Versions 1 and 2 existed only as SQLite files, so upgrades 2 and 3 are SQLite's own SQL: a
PostgreSQL store starts at version 3.

Portable means: `TEXT` and `BIGINT` columns, an identity column (`seq`) where SQLite would use its
`rowid` (it orders runs created in the same microsecond, and states), `ON CONFLICT` upserts, partial
indexes. Times are integers (microseconds since the Unix epoch, UTC): exact, compact and ordered
the same way as the instants they stand for. Each script runs statement by statement inside the
migrating transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

# Each table with its indexes, its name a placeholder so the SQLite upgrade to version 3 can build
# a table beside the old one.
_FLOW_RUNS = """
CREATE TABLE {table} (
    seq                {identity},
    id                 TEXT NOT NULL UNIQUE,
    name               TEXT NOT NULL,
    flow_name          TEXT NOT NULL,
    parameters         TEXT NOT NULL DEFAULT '',
    parent_flow_run_id TEXT,
    created            BIGINT NOT NULL
);
CREATE INDEX flow_runs_by_created ON flow_runs (created, seq);
CREATE INDEX flow_runs_by_parent ON flow_runs (parent_flow_run_id) WHERE parent_flow_run_id IS NOT NULL;
"""

_TASK_RUNS = """
CREATE TABLE {table} (
    seq                {identity},
    id                 TEXT NOT NULL UNIQUE,
    name               TEXT NOT NULL,
    task_name          TEXT NOT NULL,
    flow_run_id        TEXT,
    task_key           TEXT NOT NULL DEFAULT '',
    dynamic_key        TEXT NOT NULL DEFAULT '',
    parameters         TEXT NOT NULL DEFAULT '',
    created            BIGINT NOT NULL
);
CREATE INDEX task_runs_by_flow_run ON task_runs (flow_run_id, created);
"""

# Every state transition of every run, in `seq` order: the order they were recorded in. A run's
# current state, run count and times are computed from these when read, so writing is
# append-only. A run's first state, Pending at its creation, is not a row: the run's `created`.
_STATES = """
CREATE TABLE {table} (
    seq                {identity},
    run_id             TEXT NOT NULL,
    type               TEXT NOT NULL,
    name               TEXT NOT NULL,
    message            TEXT,
    timestamp          BIGINT NOT NULL,
    result_kind        TEXT,
    result_value       TEXT,
    result_storage     TEXT,
    result_key         TEXT,
    result_serializer  TEXT
);
CREATE INDEX states_by_run ON states (run_id);
"""

_CACHE_ENTRIES = """
CREATE TABLE cache_entries (
    key                TEXT PRIMARY KEY,
    task_name          TEXT NOT NULL,
    created            BIGINT NOT NULL,
    expiration         BIGINT,
    result_kind        TEXT NOT NULL,
    result_value       TEXT,
    result_storage     TEXT,
    result_key         TEXT,
    result_serializer  TEXT
);
CREATE INDEX cache_entries_by_task ON cache_entries (task_name);
"""

SCHEMA_VERSION = 3

CREATE_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"


def create_script(identity: str) -> str:
    """The SQL that creates a store at `SCHEMA_VERSION`; `identity` declares an identity column."""
    tables = (_FLOW_RUNS, _TASK_RUNS, _STATES)
    names = ("flow_runs", "task_runs", "states")
    return (
        "".join(
            script.format(table=name, identity=identity) for script, name in zip(tables, names, strict=True)
        )
        + _CACHE_ENTRIES
    )


# Version 1, as SQLite stores were first created (kept to test the upgrades from it).
VERSION_1 = (
    """
CREATE TABLE flow_runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, flow_name TEXT NOT NULL, parameters TEXT NOT NULL DEFAULT '',
    parent_flow_run_id TEXT, created INTEGER NOT NULL
);
CREATE INDEX flow_runs_by_created ON flow_runs (created);
CREATE INDEX flow_runs_by_parent ON flow_runs (parent_flow_run_id) WHERE parent_flow_run_id IS NOT NULL;
CREATE TABLE task_runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, task_name TEXT NOT NULL, flow_run_id TEXT,
    task_key TEXT NOT NULL DEFAULT '', dynamic_key TEXT NOT NULL DEFAULT '', parameters TEXT NOT NULL DEFAULT '',
    created INTEGER NOT NULL
);
CREATE INDEX task_runs_by_flow_run ON task_runs (flow_run_id, created);
CREATE TABLE states (
    run_id TEXT NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL, message TEXT, timestamp INTEGER NOT NULL,
    result_kind TEXT, result_value TEXT, result_storage TEXT, result_key TEXT, result_serializer TEXT
);
CREATE INDEX states_by_run ON states (run_id);
CREATE INDEX states_by_result ON states (result_storage, result_key) WHERE result_key IS NOT NULL;
"""
    + _CACHE_ENTRIES
)

# Version 2 (SQLite) makes recording cheaper, for the same information:
# - A run's first state, Pending at its creation, is no longer a row of its own: the run's
#   `created` time is that state's (the store lists it first). The rows version 1 wrote for it
#   are removed. One row fewer per run is about a quarter of the writer's work for a task run.
# - The index of states by result reference goes: only pruning reads states by result, rarely,
#   and by a scan of every persisted reference anyway, while every state recorded with a
#   persisted result paid for an insert into it.
_UPGRADE_TO_2 = """
DELETE FROM states WHERE type = 'PENDING' AND message IS NULL AND result_kind IS NULL
    AND rowid IN (SELECT MIN(rowid) FROM states GROUP BY run_id);
DROP INDEX IF EXISTS states_by_result;
"""


def _rebuilt(script: str, name: str, columns: str) -> str:
    """SQLite: `name` rebuilt from `script`, its rows copied in with their rowid as `seq`."""
    return (
        script.format(table=f"{name}_v3", identity="INTEGER PRIMARY KEY").split(";")[0]
        + f";\nINSERT INTO {name}_v3 (seq, {columns}) SELECT rowid, {columns} FROM {name};\n"
        + f"DROP TABLE {name};\nALTER TABLE {name}_v3 RENAME TO {name};\n"
        + ";".join(script.split(";")[1:])
    )


# Version 3 (SQLite) is the portable schema: `rowid` becomes an identity column `seq`.
_UPGRADE_TO_3 = (
    _rebuilt(_FLOW_RUNS, "flow_runs", "id, name, flow_name, parameters, parent_flow_run_id, created")
    + _rebuilt(
        _TASK_RUNS,
        "task_runs",
        "id, name, task_name, flow_run_id, task_key, dynamic_key, parameters, created",
    )
    + _rebuilt(
        _STATES,
        "states",
        "run_id, type, name, message, timestamp, result_kind, result_value, result_storage, "
        "result_key, result_serializer",
    )
)

UPGRADES: dict[int, str] = {2: _UPGRADE_TO_2, 3: _UPGRADE_TO_3}

SQLITE_ONLY_UPGRADES = frozenset({2, 3})
"""Upgrades from versions only SQLite stores ever had."""


def statements(script: str) -> Iterator[str]:
    """The SQL statements of a script, one at a time (`executescript` would commit the transaction)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):  # a trigger's body holds semicolons of its own
            if pending.strip(" \n;"):
                yield pending
            pending = ""
