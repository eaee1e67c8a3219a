"""The SQLite backend: its schema, the runs, states and cache entries it reads back, its statements,
connections and locks."""

import gc
import os
import sqlite3
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from ferroflow.exceptions import RunStoreError, RunStoreLockedError, RunStoreSchemaError, UnknownRunError
from ferroflow.runstore import ResultRef, RunStore, open_store, queries, schema, summarize_parameters
from ferroflow.runstore.schema import SCHEMA_VERSION

from .sample_runs import at

# ------------------------------------------------------------------------------------------------
# Schema


def test_a_new_store_creates_its_file_with_the_current_schema_in_wal_mode(db_path):
    with open_store(f"sqlite:///{db_path}") as store:
        assert isinstance(store, RunStore)
        assert store.schema_version == SCHEMA_VERSION
    connection = sqlite3.connect(db_path)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"schema_version", "flow_runs", "task_runs", "states", "cache_entries"} <= tables


def test_a_database_from_a_newer_ferroflow_is_refused_with_an_upgrade_hint(db_path):
    open_store(f"sqlite:///{db_path}").close()
    with sqlite3.connect(db_path) as connection:
        connection.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(RunStoreSchemaError) as refused:
        open_store(f"sqlite:///{db_path}")
    message = str(refused.value)
    assert str(db_path) in message
    assert f"schema version {SCHEMA_VERSION + 1}" in message
    assert "Upgrade ferroflow" in message


def test_an_older_database_is_migrated_on_open(db_path, monkeypatch):
    open_store(f"sqlite:///{db_path}").close()
    next_version = SCHEMA_VERSION + 1
    monkeypatch.setitem(schema.UPGRADES, next_version, "ALTER TABLE flow_runs ADD COLUMN tags TEXT")
    monkeypatch.setattr(schema, "SCHEMA_VERSION", next_version)

    with open_store(f"sqlite:///{db_path}") as store:
        assert store.schema_version == next_version
    columns = {row[1] for row in sqlite3.connect(db_path).execute("PRAGMA table_info(flow_runs)")}
    assert "tags" in columns


def connection_count_of_states(db_path, run_id):
    return (
        sqlite3.connect(db_path)
        .execute("SELECT COUNT(*) FROM states WHERE run_id = ?", (run_id,))
        .fetchone()[0]
    )


def test_a_version_1_database_keeps_its_runs_in_order_and_loses_the_result_index(db_path):
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as old:
        old.executescript(schema.VERSION_1)
        old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        old.execute("INSERT INTO schema_version VALUES (1)")
        for run_id in ("flow-b", "flow-a"):  # created in the same microsecond: rowid orders them
            old.execute(
                "INSERT INTO flow_runs (id, name, flow_name, created) VALUES (?, 'n', 'etl', 5)", (run_id,)
            )
        old.execute(
            "INSERT INTO task_runs (id, name, task_name, flow_run_id, created) VALUES ('task-1', 'n', 'load', 'flow-a', 7)"
        )
        old.executemany(
            "INSERT INTO states (run_id, type, name, timestamp, result_kind, result_storage, result_key,"
            " result_serializer) VALUES ('task-1', ?, ?, ?, ?, ?, ?, ?)",
            [
                ("PENDING", "Pending", 7, None, None, None, None),
                ("RUNNING", "Running", 8, None, None, None, None),
                ("COMPLETED", "Completed", 9, "persisted", "local-file-system/dev", "k1", "pickle"),
            ],
        )

    with open_store(f"sqlite:///{db_path}") as store:
        assert store.schema_version == SCHEMA_VERSION >= 3
        # The first Pending row is gone: the run's creation stands for it.
        assert [state.type for state in store.list_states("task-1")] == ["PENDING", "RUNNING", "COMPLETED"]
        assert connection_count_of_states(db_path, "task-1") == 2
        assert store.referenced_result_keys() == {("local-file-system/dev", "k1")}
        assert [run.id for run in store.list_flow_runs()] == ["flow-a", "flow-b"]  # newest first
        assert store.get_task_run("task-1").run_count == 1
    indexes = {
        row[0]
        for row in sqlite3.connect(db_path).execute("SELECT name FROM sqlite_master WHERE type = 'index'")
    }
    assert "states_by_result" not in indexes
    assert {"states_by_run", "flow_runs_by_created", "task_runs_by_flow_run"} <= indexes


# ------------------------------------------------------------------------------------------------
# Runs, states, result references


def test_runs_follow_their_states(store):
    flow_run_id, task_run_id = str(uuid.uuid4()), str(uuid.uuid4())
    store.record_flow_run(
        flow_run_id, "crimson-fox", "etl", parameters={"day": "2024-05-01", "n": 3}, created=at(0)
    )
    store.record_state(flow_run_id, "RUNNING", "Running", timestamp=at(1))
    store.record_task_run(
        task_run_id,
        "load-0",
        "load",
        flow_run_id=flow_run_id,
        task_key="etl.load",
        dynamic_key="0",
        parameters={"path": "/data/in.csv"},
        created=at(2),
    )
    store.record_state(task_run_id, "RUNNING", "Running", timestamp=at(3))
    store.record_state(task_run_id, "SCHEDULED", "AwaitingRetry", timestamp=at(4), message="retry 1 of 2")
    store.record_state(task_run_id, "RUNNING", "Running", timestamp=at(5))
    persisted = ResultRef.persisted("local-file-system/dev", "6f1c2a", "pickle")
    store.record_state(task_run_id, "COMPLETED", "Completed", timestamp=at(6), result=persisted)
    store.record_state(flow_run_id, "COMPLETED", "Completed", timestamp=at(7), result=ResultRef.literal(True))

    flow_run = store.get_flow_run(flow_run_id)
    assert (flow_run.name, flow_run.flow_name, flow_run.parameters) == (
        "crimson-fox",
        "etl",
        "day='2024-05-01', n=3",
    )
    assert (flow_run.state_type, flow_run.state_name, flow_run.run_count) == ("COMPLETED", "Completed", 1)
    assert (flow_run.start_time, flow_run.end_time, flow_run.duration_seconds) == (at(1), at(7), 6.0)

    [task_run] = store.list_task_runs(flow_run_id)
    assert (task_run.id, task_run.task_name, task_run.task_key, task_run.dynamic_key) == (
        task_run_id,
        "load",
        "etl.load",
        "0",
    )
    assert task_run.run_count == 2  # one retry
    assert (task_run.start_time, task_run.end_time) == (at(3), at(6))

    states = store.list_states(task_run_id)
    assert [(s.type, s.name) for s in states] == [
        ("PENDING", "Pending"),
        ("RUNNING", "Running"),
        ("SCHEDULED", "AwaitingRetry"),
        ("RUNNING", "Running"),
        ("COMPLETED", "Completed"),
    ]
    assert states[0].timestamp == at(2)  # the run's creation
    assert states[2].message == "retry 1 of 2"
    assert states[-1].result == persisted
    assert store.list_states(flow_run_id)[-1].result.value is True


def test_a_rerun_clears_the_end_time_until_it_ends_again(store):
    store.record_flow_run("f1", "a", "etl")
    store.record_state("f1", "RUNNING", "Running", timestamp=at(0))
    store.record_state("f1", "FAILED", "Failed", timestamp=at(1))
    store.record_state("f1", "RUNNING", "Retrying", timestamp=at(2))
    assert store.get_flow_run("f1").end_time is None
    store.record_state("f1", "COMPLETED", "Completed", timestamp=at(3))
    run = store.get_flow_run("f1")
    assert (run.run_count, run.start_time, run.end_time) == (2, at(0), at(3))


def test_states_recorded_before_their_run_still_count(store):
    store.record_state("t1", "RUNNING", "Running", timestamp=at(0))
    store.record_task_run("t1", "late", "load", flow_run_id="f1")
    store.record_state("t1", "COMPLETED", "Completed", timestamp=at(2))
    [run] = store.list_task_runs("f1")
    assert (run.state_type, run.run_count, run.duration_seconds) == ("COMPLETED", 1, 2.0)


def test_subflows_name_their_parent_and_runs_list_newest_first(store):
    store.record_flow_run("parent", "a", "outer")
    store.record_flow_run("child", "b", "inner", parent_flow_run_id="parent")
    runs = store.list_flow_runs()
    assert [run.id for run in runs] == ["child", "parent"]
    assert runs[0].parent_flow_run_id == "parent"
    assert [run.id for run in store.list_flow_runs(limit=1)] == ["child"]


def test_recording_a_run_again_updates_its_names_but_keeps_its_history(store):
    store.record_flow_run("f1", "old-name", "etl")
    store.record_state("f1", "RUNNING", "Running", timestamp=at(0))
    store.record_flow_run("f1", "new-name", "etl")
    run = store.get_flow_run("f1")
    assert (run.name, run.state_type, run.run_count, run.start_time) == ("new-name", "RUNNING", 1, at(0))


def test_a_run_is_found_by_an_unambiguous_id_prefix(store):
    store.record_flow_run("abc123", "a", "etl")
    store.record_flow_run("abd456", "b", "etl")
    store.record_task_run("task-9", "t", "t", flow_run_id="abc123")
    assert store.get_flow_run("abc").id == "abc123"
    assert store.get_task_run("task").id == "task-9"
    with pytest.raises(UnknownRunError, match="several flow run ids.*abc123, abd456"):
        store.get_flow_run("ab")
    with pytest.raises(UnknownRunError, match="No flow run .* 'zz'.*ferroflow runs ls"):
        store.get_flow_run("zz")


def test_state_types_may_be_given_as_enums(store):
    import enum

    class StateType(enum.Enum):
        COMPLETED = "COMPLETED"

    store.record_flow_run("f1", "a", "etl")
    store.record_state("f1", StateType.COMPLETED, "Completed")
    assert store.get_flow_run("f1").state_type == "COMPLETED"


def test_naive_timestamps_are_local_time_and_read_back_in_utc(store):
    naive = datetime(2024, 5, 1, 14, 30, 0, 123456)
    store.record_flow_run("f1", "a", "etl")
    store.record_state("f1", "RUNNING", "Running", timestamp=naive)
    recorded = store.list_states("f1")[1].timestamp
    assert recorded == naive.astimezone() and recorded.tzinfo == UTC


def test_a_bad_time_or_missing_name_is_refused_at_the_call_and_the_batch_goes_on(store):
    store.record_flow_run("f1", "a", "etl")
    with pytest.raises(TypeError, match="timestamp must be a datetime.datetime or None, not float"):
        store.record_state("f1", "RUNNING", "Running", timestamp=1700000000.0)
    with pytest.raises(TypeError, match="expiration must be a datetime"):
        store.put_cache_entry("k", "t", ResultRef.literal(None), expiration=timedelta(seconds=5))
    with pytest.raises(ValueError, match="state_name is required"):
        store.record_state("f1", "RUNNING", None)
    with pytest.raises(ValueError, match="run_id is required"):
        store.record_task_run("", "t", "t")
    store.record_state("f1", "RUNNING", "Running", timestamp=at(0))
    assert store.get_flow_run("f1").start_time == at(0)
    assert summarize_parameters(["not", "a", "mapping"]) == "['not', 'a', 'mapping']"


def test_referenced_result_keys_cover_states_and_unexpired_cache_entries(store):
    store.record_task_run("t1", "t", "t")
    store.record_state(
        "t1", "COMPLETED", "Completed", result=ResultRef.persisted("lfs/a", "k-state", "pickle")
    )
    store.record_state("t1", "COMPLETED", "Completed", result=ResultRef.literal(None))
    store.put_cache_entry("c1", "t", ResultRef.persisted("lfs/a", "k-live", "pickle"), expiration=at(100))
    store.put_cache_entry("c2", "t", ResultRef.persisted("lfs/a", "k-expired", "pickle"), expiration=at(10))
    store.put_cache_entry("c3", "t", ResultRef.persisted("lfs/b", "k-other", "json"))

    assert store.referenced_result_keys() == {
        ("lfs/a", "k-state"),
        ("lfs/a", "k-live"),
        ("lfs/a", "k-expired"),
        ("lfs/b", "k-other"),
    }
    assert store.referenced_result_keys("lfs/a", now=at(50)) == {("lfs/a", "k-state"), ("lfs/a", "k-live")}


# ------------------------------------------------------------------------------------------------
# Statements, connections, locks


@pytest.mark.parametrize("parameter_limit", [32766, 50])
@pytest.mark.parametrize("count", [1, 3, 5, 64, 255, 256, 257, 1000])
def test_rows_are_inserted_in_order_in_statements_of_a_few_sizes(count, parameter_limit):
    connection = sqlite3.connect(":memory:")
    connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, parameter_limit)
    connection.execute("CREATE TABLE t (a INTEGER, b TEXT)")
    rows = [(i, f"row {i}") for i in range(count)]
    statements = []
    connection.set_trace_callback(statements.append)
    queries.insert_rows(
        connection.execute, queries.SQLITE, ("INSERT INTO t (a, b) VALUES", ""), rows, parameter_limit
    )
    assert connection.execute("SELECT a, b FROM t ORDER BY rowid").fetchall() == rows
    # The trace shows each statement with its values filled in: count its row groups.
    sizes = {statement.count("), (") + 1 for statement in statements if statement.startswith("INSERT")}
    assert sizes <= set(queries.ROWS_PER_STATEMENT)
    assert all(size * 2 <= parameter_limit for size in sizes)


def open_handles(path):
    return sum(os.path.realpath(f"/proc/self/fd/{fd}") == str(path) for fd in os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts file descriptors through /proc")
def test_reader_threads_that_come_and_go_do_not_pile_up_open_files(db_path):
    with open_store(f"sqlite:///{db_path}") as store:
        before = open_handles(db_path)
        for _ in range(6):
            reader = threading.Thread(target=store.get_cache_entry, args=("k",))
            reader.start()
            reader.join()
            gc.collect()  # sqlite3 connections sit in a reference cycle (their statement cache)
        # SQLite keeps a closed connection's descriptor for the next one while others hold locks.
        assert open_handles(db_path) <= before + 1


def test_a_locked_database_names_the_file_and_what_to_do(db_path):
    open_store(f"sqlite:///{db_path}").close()
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        with pytest.raises(RunStoreLockedError) as locked:
            open_store(f"sqlite:///{db_path}", lock_timeout=0.2)
        message = str(locked.value)
        assert str(db_path) in message and "stayed locked" in message and "FERROFLOW_RUNSTORE_URL" in message
    finally:
        holder.execute("ROLLBACK")


# ------------------------------------------------------------------------------------------------
# The task cache


def test_a_cache_entry_is_readable_at_once_and_after_it_is_committed(store):
    result = ResultRef.persisted("local-file-system/dev", "r1", "pickle")
    store.put_cache_entry("key-1", "load", result, created=at(0), expiration=at(60))
    entry = store.get_cache_entry("key-1", now=at(1))  # before any flush: read your writes
    assert (entry.key, entry.task_name, entry.result, entry.created, entry.expiration) == (
        "key-1",
        "load",
        result,
        at(0),
        at(60),
    )
    assert store.get_cached_result("key-1", now=at(1)) == result
    store.flush()
    assert store.get_cache_entry("key-1", now=at(1)) == entry
    assert store.get_cached_result("key-1", now=at(1)) == result


@pytest.mark.parametrize("flush_first", [False, True])
def test_expired_entries_are_not_returned(store, flush_first):
    store.put_cache_entry("key-1", "load", ResultRef.literal(None), created=at(0), expiration=at(60))
    if flush_first:
        store.flush()
    assert store.get_cache_entry("key-1", now=at(59)) is not None
    assert store.get_cached_result("key-1", now=at(59)) == ResultRef.literal(None)
    assert store.get_cache_entry("key-1", now=at(60)) is None
    assert store.get_cached_result("key-1", now=at(60)) is None
    assert store.get_cache_entry("missing", now=at(0)) is None
    assert store.get_cached_result("missing", now=at(0)) is None


def test_putting_a_key_again_replaces_its_entry(store):
    store.put_cache_entry(
        "key-1", "load", ResultRef.persisted("s", "old", "pickle"), created=at(0), expiration=at(10)
    )
    store.put_cache_entry("key-1", "load", ResultRef.persisted("s", "new", "pickle"), created=at(5))
    entry = store.get_cache_entry("key-1", now=at(100))
    assert (entry.result.key, entry.expiration) == ("new", None)
    assert len(store.list_cache_entries()) == 1


def test_another_store_on_the_same_file_sees_committed_entries(db_path):
    with open_store(f"sqlite:///{db_path}") as writer, open_store(f"sqlite:///{db_path}") as reader:
        writer.put_cache_entry("key-1", "load", ResultRef.literal(True))
        writer.flush()
        assert reader.get_cache_entry("key-1").result.value is True


def test_a_reader_sees_entries_committed_after_its_own_lookups(db_path):
    """The reader's connection is kept for the thread: it must not keep an old snapshot."""
    with open_store(f"sqlite:///{db_path}") as writer, open_store(f"sqlite:///{db_path}") as reader:
        assert reader.get_cache_entry("key-1") is None
        writer.put_cache_entry("key-1", "load", ResultRef.persisted("s", "first", "pickle"))
        writer.flush()
        assert reader.get_cache_entry("key-1").result.key == "first"
        writer.put_cache_entry("key-1", "load", ResultRef.persisted("s", "second", "pickle"))
        writer.flush()
        assert reader.get_cache_entry("key-1").result.key == "second"


def test_a_cache_lookup_on_a_closed_store_says_to_open_it_again(db_path):
    store = open_store(f"sqlite:///{db_path}")
    store.close()
    with pytest.raises(RunStoreError, match="closed; open it again"):
        store.get_cache_entry("key-1")


def test_cache_entries_are_deleted_by_key_task_or_expiry(store):
    for key, task_name, expiration in [
        ("k1", "load", at(10)),
        ("k2", "load", None),
        ("k3", "clean", at(10)),
        ("k4", "clean", at(1000)),
    ]:
        store.put_cache_entry(key, task_name, ResultRef.literal(None), created=at(0), expiration=expiration)

    assert [e.key for e in store.list_cache_entries(expired_only=True, now=at(20))] in (
        ["k1", "k3"],
        ["k3", "k1"],
    )
    assert store.delete_cache_entries(expired_only=True, task_name="clean", now=at(20)) == 1
    assert store.delete_cache_entries(key="k2") == 1
    assert store.delete_cache_entries(key="k2") == 0
    assert store.delete_cache_entries(task_name="load") == 1
    assert [entry.key for entry in store.list_cache_entries()] == ["k4"]
    assert store.delete_cache_entries() == 1
    assert store.list_cache_entries() == []


def test_a_put_after_a_delete_survives_it(store):
    store.put_cache_entry("k1", "load", ResultRef.persisted("s", "first", "pickle"))
    assert store.delete_cache_entries(key="k1") == 1
    store.put_cache_entry("k1", "load", ResultRef.persisted("s", "second", "pickle"))
    store.flush()
    assert store.get_cache_entry("k1").result.key == "second"
