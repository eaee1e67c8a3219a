"""The run store's SQLite schema and its migrations.

`MIGRATIONS[n]` turns a version `n - 1` database into version `n`; a new database runs them all.
A release that changes the schema appends one script and bumps nothing else: `SCHEMA_VERSION` is
the highest key. Each script runs statement by statement inside the migrating transaction.
Times are integers (microseconds since the Unix epoch, UTC): exact, compact and ordered the same
way as the instants they stand for.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

_VERSION_1 = """
CREATE TABLE flow_runs (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    flow_name          TEXT NOT NULL,
    parameters         TEXT NOT NULL DEFAULT '',
    parent_flow_run_id TEXT,
    created            INTEGER NOT NULL
);
CREATE INDEX flow_runs_by_created ON flow_runs (created);
CREATE INDEX flow_runs_by_parent ON flow_runs (parent_flow_run_id) WHERE parent_flow_run_id IS NOT NULL;

CREATE TABLE task_runs (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    task_name          TEXT NOT NULL,
    flow_run_id        TEXT,
    task_key           TEXT NOT NULL DEFAULT '',
    dynamic_key        TEXT NOT NULL DEFAULT '',
    parameters         TEXT NOT NULL DEFAULT '',
    created            INTEGER NOT NULL
);
CREATE INDEX task_runs_by_flow_run ON task_runs (flow_run_id, created);

-- Every state transition of every run, in rowid order: the order they were recorded in. A run's
-- current state, run count and times are computed from these when read, so writing is append-only.
CREATE TABLE states (
    run_id             TEXT NOT NULL,
    type               TEXT NOT NULL,
    name               TEXT NOT NULL,
    message            TEXT,
    timestamp          INTEGER NOT NULL,
    result_kind        TEXT,
    result_value       TEXT,
    result_storage     TEXT,
    result_key         TEXT,
    result_serializer  TEXT
);
CREATE INDEX states_by_run ON states (run_id);
CREATE INDEX states_by_result ON states (result_storage, result_key) WHERE result_key IS NOT NULL;

CREATE TABLE cache_entries (
    key                TEXT PRIMARY KEY,
    task_name          TEXT NOT NULL,
    created            INTEGER NOT NULL,
    expiration         INTEGER,
    result_kind        TEXT NOT NULL,
    result_value       TEXT,
    result_storage     TEXT,
    result_key         TEXT,
    result_serializer  TEXT
);
CREATE INDEX cache_entries_by_task ON cache_entries (task_name);
"""

# Version 2 makes recording cheaper, for the same information:
# - A run's first state, Pending at its creation, is no longer a row of its own: the run's
#   `created` time is that state's (the store lists it first). The rows version 1 wrote for it
#   are removed. One row fewer per run is about a quarter of the writer's work for a task run.
# - The index of states by result reference goes: only pruning reads states by result, rarely,
#   and by a scan of every persisted reference anyway, while every state recorded with a
#   persisted result paid for an insert into it.
_VERSION_2 = """
DELETE FROM states WHERE type = 'PENDING' AND message IS NULL AND result_kind IS NULL
    AND rowid IN (SELECT MIN(rowid) FROM states GROUP BY run_id);
DROP INDEX IF EXISTS states_by_result;
"""

MIGRATIONS: dict[int, str] = {1: _VERSION_1, 2: _VERSION_2}

SCHEMA_VERSION = max(MIGRATIONS)

CREATE_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"


def statements(script: str) -> Iterator[str]:
    """The SQL statements of a script, one at a time (`executescript` would commit the transaction)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):  # a trigger's body holds semicolons of its own
            if pending.strip(" \n;"):
                yield pending
            pending = ""
