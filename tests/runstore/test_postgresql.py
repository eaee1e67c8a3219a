"""The PostgreSQL backend against a real server: its schema, its password, many writers at once,
and a server that is down or goes away while flows run."""

import logging
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest

from ferroflow.exceptions import RunStoreError, RunStoreSchemaError, RunStoreUnavailableError
from ferroflow.runstore import ResultRef, open_store, schema, writer
from ferroflow.runstore.postgresql import PostgreSQLRunStore

from .sample_runs import at, record_task

PASSWORD = "s3cret-Passw0rd"


def unreachable_url():
    from postgresql_server import free_port

    return f"postgresql://ferroflow:{PASSWORD}@127.0.0.1:{free_port()}/runs"


def sql(url, query, *arguments):
    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(query, arguments)
        return cursor.fetchall() if cursor.description else None


# ------------------------------------------------------------------------------------------------
# Schema


def test_a_new_store_has_the_portable_schema_at_the_current_version(postgresql_url):
    with open_store(postgresql_url) as store:
        assert isinstance(store, PostgreSQLRunStore)
        assert store.schema_version == schema.SCHEMA_VERSION
    tables = {
        row[0]
        for row in sql(postgresql_url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    }
    assert {"schema_version", "flow_runs", "task_runs", "states", "cache_entries"} <= tables
    identity = sql(
        postgresql_url,
        "SELECT is_identity FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = 'states' AND column_name = 'seq'",
    )
    assert identity == [("YES",)]


def test_a_store_from_a_newer_ferroflow_is_refused_naming_it_without_its_password(postgresql_server):
    url = postgresql_server.new_schema_url(password=PASSWORD)
    open_store(url).close()
    sql(url, "UPDATE schema_version SET version = %s", schema.SCHEMA_VERSION + 1)
    with pytest.raises(RunStoreSchemaError) as refused:
        open_store(url)
    message = str(refused.value)
    assert f"schema version {schema.SCHEMA_VERSION + 1}" in message and "Upgrade ferroflow" in message
    assert "127.0.0.1" in message and "***" in message and PASSWORD not in message


def test_an_older_store_is_migrated_on_open(postgresql_url, monkeypatch):
    open_store(postgresql_url).close()
    next_version = schema.SCHEMA_VERSION + 1
    monkeypatch.setitem(schema.UPGRADES, next_version, "ALTER TABLE flow_runs ADD COLUMN tags TEXT")
    monkeypatch.setattr(schema, "SCHEMA_VERSION", next_version)
    with open_store(postgresql_url) as store:
        assert store.schema_version == next_version
    columns = sql(
        postgresql_url,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = 'flow_runs'",
    )
    assert ("tags",) in columns


def test_stores_opened_at_once_on_a_new_database_agree_on_one_schema(postgresql_url):
    script = textwrap.dedent(
        f"""
        from ferroflow.runstore import open_store
        with open_store({postgresql_url!r}) as store:
            print(store.schema_version)
        """
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(4)
    ]
    outputs = [process.communicate(timeout=120)[0].strip() for process in processes]
    assert outputs == [str(schema.SCHEMA_VERSION)] * 4
    assert sql(postgresql_url, "SELECT COUNT(*) FROM schema_version") == [(1,)]


# ------------------------------------------------------------------------------------------------
# One batch, many writers


def test_a_run_renamed_in_the_batch_that_created_it_is_one_row(postgresql_url):
    # One INSERT ... ON CONFLICT may not touch a row twice: the batch keeps one row per id and key.
    with PostgreSQLRunStore(postgresql_url, batch_interval=60.0) as store:
        store.record_flow_run("f1", "first-name", "etl", created=at(0))
        store.record_flow_run("f1", "second-name", "etl", created=at(5))
        store.record_task_run("t1", "load-0", "load", flow_run_id="f1", created=at(1))
        store.record_task_run("t1", "load-renamed", "load", flow_run_id="f1", created=at(2))
        store.put_cache_entry("k", "load", ResultRef.persisted("s", "old", "pickle"))
        store.put_cache_entry("k", "load", ResultRef.persisted("s", "new", "pickle"))
        store.flush()
        run = store.get_flow_run("f1")
        assert (run.name, run.created) == ("second-name", at(0))  # created stays the first's
        [task_run] = store.list_task_runs("f1")
        assert (task_run.name, task_run.created) == ("load-renamed", at(1))
        assert store.get_cache_entry("k").result.key == "new"
        assert len(store.list_cache_entries()) == 1


def test_batches_of_one_kind_then_another_are_written(postgresql_url):
    with open_store(postgresql_url) as store:
        store.record_flow_run("f1", "a", "etl")
        store.flush()  # a batch of flow runs only
        record_task(store, "f1", "t1")
        store.flush()
        store.put_cache_entry("k", "load", ResultRef.literal(1))
        store.flush()
        store.record_flow_run("f1", "renamed", "etl")
        record_task(store, "f1", "t2")
        store.put_cache_entry("k", "load", ResultRef.literal(2))
        store.flush()
        assert [run.name for run in store.list_task_runs("f1")] == ["t1-name", "t2-name"]
        assert store.get_flow_run("f1").name == "renamed"
        assert store.get_cache_entry("k").result.value == 2


def test_four_processes_recording_a_thousand_task_runs_each_lose_and_repeat_nothing(postgresql_url):
    script = textwrap.dedent(
        """
        import sys
        from ferroflow.runstore import open_store, ResultRef
        url, worker = sys.argv[1], sys.argv[2]
        with open_store(url) as store:
            store.record_flow_run(f"flow-{worker}", f"flow-{worker}", "etl")
            for index in range(1000):
                run_id = f"task-{worker}-{index}"
                store.record_task_run(run_id, run_id, "load", flow_run_id=f"flow-{worker}")
                store.record_state(run_id, "RUNNING", "Running")
                store.record_state(run_id, "COMPLETED", "Completed",
                                   result=ResultRef.persisted("s", run_id, "pickle"))
                store.put_cache_entry(f"key-{index}", "load", ResultRef.literal(index))
        """
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script, postgresql_url, str(worker)]) for worker in range(4)
    ]
    assert [worker.wait(timeout=300) for worker in workers] == [0] * 4

    assert sql(postgresql_url, "SELECT COUNT(*), COUNT(DISTINCT id) FROM task_runs") == [(4000, 4000)]
    assert sql(postgresql_url, "SELECT COUNT(*), COUNT(DISTINCT (run_id, type)) FROM states") == [
        (8000, 8000)
    ]
    assert sql(postgresql_url, "SELECT COUNT(*) FROM flow_runs") == [(4,)]
    assert sql(postgresql_url, "SELECT COUNT(*) FROM cache_entries") == [(1000,)]
    with open_store(postgresql_url) as store:
        task_runs = store.list_task_runs("flow-3")
        assert len(task_runs) == 1000
        assert {(run.state_type, run.run_count) for run in task_runs} == {("COMPLETED", 1)}


# ------------------------------------------------------------------------------------------------
# The password, a missing driver


def test_the_password_is_in_no_repr_url_error_or_log(caplog):
    url = unreachable_url()
    with caplog.at_level(logging.DEBUG, logger="ferroflow"):
        store = open_store(url)  # the server is down: recording goes on
        assert PASSWORD not in repr(store) and PASSWORD not in store.url
        assert store.url.startswith("postgresql://ferroflow:***@127.0.0.1:")
        store.record_flow_run("f1", "a", "etl")
        with pytest.raises(RunStoreUnavailableError) as unavailable:
            store.flush()
        with pytest.raises(RunStoreUnavailableError) as reading:
            store.list_flow_runs()
        store.close()
    for text in (str(unavailable.value), str(reading.value), caplog.text):
        assert PASSWORD not in text
    assert "cannot be reached" in str(reading.value) and store.url in str(reading.value)
    assert "PostgreSQL server is running" in str(reading.value)


def test_without_psycopg_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    with pytest.raises(
        RunStoreError, match=r'needs psycopg: install it with pip install "ferroflow\[postgres\]"'
    ) as missing:
        open_store(unreachable_url())
    assert PASSWORD not in str(missing.value)


# ------------------------------------------------------------------------------------------------
# A server that is down, or goes away


def test_records_beyond_the_bound_are_dropped_and_counted_in_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(writer, "HELD_RECORDS_LIMIT", 10)
    store = PostgreSQLRunStore(unreachable_url(), connect_timeout=1)
    with caplog.at_level(logging.WARNING, logger="ferroflow.runstore"):
        for index in range(5):
            store.record_flow_run(f"f{index}", "a", "etl")
            with pytest.raises(RunStoreUnavailableError):
                store.flush()  # one batch of 1 record each time: 5 held
        for _ in range(30):
            store.record_state("f0", "RUNNING", "Running")
        with pytest.raises(RunStoreUnavailableError):
            store.flush()  # 30 more do not fit: dropped
        store.close()  # the 5 held go too
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert sum("cannot be reached" in message for message in warnings) == 1
    [dropped] = [message for message in warnings if "dropped" in message]
    assert "dropped 35 records" in dropped and "at most 10" in dropped


def test_a_flow_runs_on_while_the_server_stops_and_its_records_arrive_when_it_is_back(
    postgresql_server, postgresql_url, monkeypatch
):
    from ferroflow import flow, task

    monkeypatch.setenv("FERROFLOW_RUNSTORE_URL", postgresql_url)

    @task
    def step(index):
        if index == 3:
            postgresql_server.stop()
        return index * 2

    @flow
    def pipeline():
        return [step(index) for index in range(8)]

    try:
        assert pipeline() == [index * 2 for index in range(8)]
    finally:
        postgresql_server.start()

    # The writer tries again within a few seconds of the server's return.
    deadline = time.monotonic() + 60
    while True:
        with open_store(postgresql_url) as store:
            flow_runs = store.list_flow_runs()
            task_runs = store.list_task_runs(flow_runs[0].id) if flow_runs else []
        states = [run.state_type for run in flow_runs]
        if (states == ["COMPLETED"] and len(task_runs) == 8) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert states == ["COMPLETED"]
    assert sorted(run.name for run in task_runs) == sorted(f"step-{index}" for index in range(8))
    assert {run.state_type for run in task_runs} == {"COMPLETED"}


def test_a_flow_with_cached_tasks_runs_while_the_server_is_down(monkeypatch, caplog):
    from ferroflow import flow, task

    monkeypatch.setenv("FERROFLOW_RUNSTORE_URL", unreachable_url())
    calls = []

    @task(cache_key_fn=lambda context, parameters: f"square-{parameters['x']}")
    def square(x):
        calls.append(x)
        return x * x

    @flow
    def squares():
        return [square(x) for x in (1, 2, 1)]

    with caplog.at_level(logging.WARNING, logger="ferroflow.runstore"):
        assert squares() == [1, 4, 1]
    # The cache records live with the results, so the hit needs no run store: the server being
    # down costs the history only.
    assert calls == [1, 2]
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert not any("cannot look up the task cache" in message for message in warnings)
    assert any("cannot be reached" in message or "unreachable" in message for message in warnings), warnings
    assert all(PASSWORD not in message for message in warnings)


def sessions_of_ferroflow(url):
    [(count,)] = sql(url, "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'ferroflow'")
    return count


def test_reader_threads_that_come_and_go_do_not_pile_up_connections(postgresql_url):
    import gc
    import threading

    with open_store(postgresql_url) as store:
        store.get_cache_entry("k")
        before = sessions_of_ferroflow(postgresql_url)
        for _ in range(6):
            reader = threading.Thread(target=store.get_cache_entry, args=("k",))
            reader.start()
            reader.join()
            gc.collect()
        time.sleep(0.2)  # the server notices closed sessions as they end
        assert sessions_of_ferroflow(postgresql_url) <= before + 1


def test_a_forked_worker_records_through_its_own_connections_and_the_parent_keeps_its_own(postgresql_url):
    import multiprocessing

    with open_store(postgresql_url) as store:
        store.record_flow_run("parent-run", "a", "etl")
        store.flush()
        assert store.get_cache_entry("k") is None  # the parent has a reading connection too

        def child():
            store.record_flow_run("child-run", "b", "etl")
            store.put_cache_entry("k", "load", ResultRef.literal(True))

        worker = multiprocessing.get_context("fork").Process(target=child)
        worker.start()
        worker.join(timeout=120)
        assert worker.exitcode == 0
        # The parent's connections still work: the child did not end their sessions.
        store.record_flow_run("parent-again", "c", "etl")
        store.flush()
        assert {run.id for run in store.list_flow_runs()} == {"parent-run", "child-run", "parent-again"}
        assert store.get_cache_entry("k").result.value is True
