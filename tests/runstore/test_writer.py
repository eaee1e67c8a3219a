"""The batched writer, seen through the SQLite store: batches, flushes, threads, processes, and
the store's life at exit and across fork."""

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from ferroflow.exceptions import RunStoreError, RunStoreLockedError
from ferroflow.runstore import ResultRef, SQLiteRunStore, open_store
from ferroflow.runstore import writer as writer_module
from ferroflow.runstore.writer import STATE, BatchWriter

from .sample_runs import record_task


class ListBackend:
    """A backend without a database: each batch's rows are appended to a list."""

    url = "list://"
    batch_interval = 60.0

    def __init__(self):
        self.batches = []

    def write_batch(self, batch):
        self.batches.append([list(rows) for rows in batch.rows])
        batch.run_calls(self.batches)


def test_a_backend_of_the_writer_only_writes_batches():
    backend = ListBackend()
    writer = BatchWriter(backend)
    writer.put((STATE, ("t1", "RUNNING")))
    writer.put((STATE, ("t1", "COMPLETED")))
    # A call runs after everything queued before it, without waiting out the batch interval.
    assert writer.call(lambda batches: sum(len(batch[STATE]) for batch in batches), timeout=10) == 2
    writer.flush()
    assert [row for batch in backend.batches for row in batch[STATE]] == [
        ("t1", "RUNNING"),
        ("t1", "COMPLETED"),
    ]
    writer.stop()
    with pytest.raises(RunStoreError, match="list:// is closed"):
        writer.put((STATE, ("t1", "FAILED")))


def test_records_reach_the_file_after_flush(db_path):
    with open_store(f"sqlite:///{db_path}") as store:
        store.record_flow_run("f1", "a", "etl")
        record_task(store, "f1", "t1")
        store.flush()
        # A separate connection: what another process would see.
        outside = sqlite3.connect(db_path)
        assert outside.execute("SELECT COUNT(*) FROM states").fetchone()[0] == 2  # Pending: the run's row
        assert outside.execute("SELECT name FROM task_runs").fetchone()[0] == "t1-name"


def test_a_backlog_larger_than_a_batch_is_written_without_waiting_between_batches(tmp_path):
    # The writer waits for company only when its queue was empty: with a backlog of several
    # batches behind a flush, waiting its interval before each batch would hold the flush for
    # minutes here.
    with SQLiteRunStore(tmp_path / "backlog.db", batch_interval=60.0) as store:
        store.record_flow_run("f1", "a", "etl")
        for _ in range(3 * writer_module._MAX_BATCH):
            store.record_state("f1", "RUNNING", "Running")
        started = time.monotonic()
        store.flush(timeout=30)
        assert time.monotonic() - started < 30
        assert len(store.list_states("f1")) == 3 * writer_module._MAX_BATCH + 1


def test_many_threads_recording_at_once_lose_nothing(store):
    threads, tasks_per_thread = 8, 150

    def work(thread_index):
        for i in range(tasks_per_thread):
            record_task(store, "f1", f"t{thread_index}-{i}", result=ResultRef.literal(None))

    store.record_flow_run("f1", "a", "etl")
    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    task_runs = store.list_task_runs("f1")
    assert len(task_runs) == threads * tasks_per_thread
    assert {run.state_type for run in task_runs} == {"COMPLETED"}
    assert all(len(store.list_states(run.id)) == 3 for run in task_runs[:50])


WRITER_PROCESS = textwrap.dedent("""
    import sys
    from ferroflow.runstore import open_store, ResultRef
    url, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = open_store(url)
    store.record_flow_run(prefix, prefix, "etl")
    for i in range(count):
        run_id = f"{prefix}-{i}"
        store.record_task_run(run_id, run_id, "load", flow_run_id=prefix)
        store.record_state(run_id, "RUNNING", "Running")
        store.record_state(run_id, "COMPLETED", "Completed", result=ResultRef.persisted("lfs/x", run_id, "pickle"))
    # No flush or close: the store is flushed at interpreter exit.
""")


def test_two_processes_writing_one_store_at_once_lose_nothing(db_path):
    url, count = f"sqlite:///{db_path}", 1500  # no store yet: the two race to create it, too
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER_PROCESS, url, name, str(count)])
        for name in ("alpha", "beta")
    ]
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0]
    with open_store(url) as store:
        for name in ("alpha", "beta"):
            runs = store.list_task_runs(name)
            assert len(runs) == count
            assert {run.state_type for run in runs} == {"COMPLETED"}
        assert len(store.referenced_result_keys("lfs/x")) == 2 * count


KILLED_PROCESS = textwrap.dedent("""
    import itertools, sys
    from ferroflow.runstore import open_store
    store = open_store(sys.argv[1])
    store.record_flow_run("flow", "f", "etl")
    for i in itertools.count():
        run_id = f"t{i}"
        store.record_task_run(run_id, run_id, "load", flow_run_id="flow")
        store.record_state(run_id, "RUNNING", "Running")
        store.record_state(run_id, "COMPLETED", "Completed")
        if i == 999:
            store.flush()
            print("flushed", flush=True)
""")


def test_a_killed_process_keeps_what_it_flushed_and_leaves_a_consistent_database(db_path):
    url = f"sqlite:///{db_path}"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_PROCESS, url], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "flushed"
        time.sleep(0.1)  # a few more batches in flight
    finally:
        writer.kill()
        writer.wait()
    connection = sqlite3.connect(db_path)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with open_store(url) as store:
        task_runs = store.list_task_runs("flow")
        assert len(task_runs) >= 1000
        # Each batch is one transaction: no run lost its first states while later ones were kept.
        for run in task_runs:
            states = store.list_states(run.id)
            assert [state.type for state in states] in (
                ["PENDING"],
                ["PENDING", "RUNNING"],
                ["PENDING", "RUNNING", "COMPLETED"],
            )
            assert run.state_type == (states[-1].type if states else None)


def test_a_forked_worker_records_through_its_own_writer_and_flushes_at_exit(db_path):
    import multiprocessing

    url = f"sqlite:///{db_path}"
    store = open_store(url)
    store.record_flow_run("parent", "p", "etl")  # the parent's writer is running when it forks

    def child():
        store.record_flow_run("child", "c", "etl")  # flushed when the worker exits

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(timeout=30)
    assert process.exitcode == 0
    assert {run.id for run in store.list_flow_runs()} == {"parent", "child"}
    store.close()


def test_a_batch_that_cannot_be_written_is_reported_by_flush(db_path):
    store = open_store(f"sqlite:///{db_path}", lock_timeout=0.2)
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        store.record_flow_run("f1", "a", "etl")
        with pytest.raises(RunStoreLockedError):
            store.flush()
    finally:
        holder.execute("ROLLBACK")
    store.record_flow_run("f2", "b", "etl")  # the writer carries on once the lock is gone
    assert [run.id for run in store.list_flow_runs()] == ["f2"]
    store.close()


def test_a_closed_store_refuses_new_records(store):
    store.close()
    with pytest.raises(Exception, match="is closed; open it again"):
        store.record_flow_run("f1", "a", "etl")
    store.close()  # twice is harmless


def test_text_that_is_not_valid_unicode_is_escaped_and_the_rest_of_its_batch_is_kept(store):
    store.record_flow_run("f1", "flow-\udcff", "etl")
    record_task(store, "f1", "t-ok")
    store.record_task_run("t-odd", "odd-\ud800", "load-\udce9", flow_run_id="f1", parameters={"p\udc80": 1})
    store.record_state("t-odd", "FAILED", "Failed", message="bad \udcfe byte")
    store.put_cache_entry("key-\udce9", "load", ResultRef.literal(1))
    store.put_cache_entry("plain-key", "load", ResultRef.literal(2))
    store.flush()
    assert store.get_flow_run("f1").name == "flow-\\udcff"
    runs = {run.id: run for run in store.list_task_runs("f1")}
    assert set(runs) == {"t-ok", "t-odd"}
    assert (runs["t-odd"].name, runs["t-odd"].task_name) == ("odd-\\ud800", "load-\\udce9")
    assert store.list_states("t-odd")[-1].message == "bad \\udcfe byte"
    assert store.get_cache_entry("plain-key").result.value == 2
    assert store.get_cache_entry("key-\udce9").result.value == 1  # found under the escaped key
