"""Run-store and cache-key benchmarks: what the engine pays per task, measured in one run against
the plain stdlib way of doing the same. Prints figures and ratios; asserts nothing about time.

    make bench                                   # every benchmark
    .venv/bin/python -m pytest benches -k runstore -q -s -p no:cacheprovider
"""

from __future__ import annotations

import hashlib
import pickle
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np

from _report import print_table, race
from ferroflow.cache_keys import task_input_hash
from ferroflow.runstore import ResultRef, SQLiteRunStore, open_store
from ferroflow.runstore.ids import clock_ordered_uuid

TASKS = 20_000
MIB = 1 << 20


def report(title: str, rows: list[tuple[str, str]]) -> None:
    print_table(title, ("measure", "figure"), rows)


def record_one_task(store, flow_run_id: str, now: datetime, result: ResultRef) -> None:
    """What the engine records for a task run: the run and its Pending, Running, Completed states,
    under a clock-ordered id as the engine makes them."""
    run_id = str(clock_ordered_uuid())
    store.record_task_run(
        run_id,
        "load-0",
        "load",
        flow_run_id=flow_run_id,
        task_key="etl.load",
        parameters={"path": "/data/in.csv", "n": 3},
    )
    store.record_state(run_id, "PENDING", "Pending", timestamp=now)
    store.record_state(run_id, "RUNNING", "Running", timestamp=now)
    store.record_state(run_id, "COMPLETED", "Completed", timestamp=now, result=result)


def synchronous_sqlite_task(connection: sqlite3.Connection, flow_run_id: str, now: float) -> None:
    """The stdlib way: one INSERT and commit per record, on the caller's thread (same ids)."""
    run_id = str(clock_ordered_uuid())
    connection.execute("INSERT INTO runs VALUES (?, ?, ?, ?)", (run_id, "load-0", flow_run_id, now))
    connection.commit()
    for state_type in ("PENDING", "RUNNING", "COMPLETED"):
        connection.execute("INSERT INTO states VALUES (?, ?, ?)", (run_id, state_type, now))
        connection.commit()


def test_recording_task_runs(tmp_path):
    now = datetime.now(UTC)
    result = ResultRef.persisted("local-file-system/dev", "9b1c0f7e5d4c3b2a", "pickle")
    with open_store(f"sqlite:///{tmp_path / 'ferroflow.db'}") as store:
        store.record_flow_run("flow", "bench", "bench")
        store.flush()
        start = time.perf_counter()
        for _ in range(TASKS):
            record_one_task(store, "flow", now, result)
        caller = time.perf_counter() - start
        store.flush()
        total = time.perf_counter() - start
        recorded = len(store.list_task_runs("flow"))

    connection = sqlite3.connect(tmp_path / "plain.db")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT, flow_run_id TEXT, created REAL)")
    connection.execute("CREATE TABLE states (run_id TEXT, type TEXT, timestamp REAL)")
    plain_tasks = TASKS // 10
    start = time.perf_counter()
    for _ in range(plain_tasks):
        synchronous_sqlite_task(connection, "flow", time.time())
    plain = (time.perf_counter() - start) / plain_tasks
    connection.close()

    per_task = caller / TASKS
    report(
        f"Recording a task run with 3 states ({TASKS} tasks, file store, WAL)",
        [
            ("caller thread, per task", f"{per_task * 1e6:.1f} us   (target: well under 50 us)"),
            (
                "until committed (flush), per task",
                f"{total / TASKS * 1e6:.1f} us   ({TASKS / total:,.0f} tasks/s)",
            ),
            ("stdlib sqlite3, commit per record", f"{plain * 1e6:.1f} us per task"),
            ("ratio stdlib / ferroflow (caller)", f"{plain / per_task:.1f}x"),
            ("task runs read back", str(recorded)),
        ],
    )


def busy_work(microseconds: float) -> None:
    """Pure-Python work holding the GIL, like an engine running a small task."""
    deadline = time.perf_counter() + microseconds / 1e6
    while time.perf_counter() < deadline:
        pass


def test_recording_inside_a_busy_engine_loop(tmp_path):
    """The overhead the engine sees: the writer thread shares the GIL with the engine's own work."""
    now = datetime.now(UTC)
    result = ResultRef.literal(None)
    tasks, work_us = 5_000, 100.0

    def run(store) -> tuple[float, float]:
        """Wall time and CPU time of the process (all threads), per task."""
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(tasks):
            busy_work(work_us)
            if store is not None:
                record_one_task(store, "flow", now, result)
        if store is not None:
            store.flush()
        return (time.perf_counter() - start) / tasks, (time.process_time() - cpu_start) / tasks

    without, without_cpu = run(None)
    with open_store(f"sqlite:///{tmp_path / 'ferroflow.db'}") as store:
        store.record_flow_run("flow", "bench", "bench")
        store.flush()
        with_store, with_store_cpu = run(store)
    report(
        f"Recording inside an engine-like loop ({tasks} tasks of {work_us:.0f} us Python work each)",
        [
            ("without the store, per task", f"{without * 1e6:.1f} us wall, {without_cpu * 1e6:.1f} us CPU"),
            (
                "with the store, until committed",
                f"{with_store * 1e6:.1f} us wall, {with_store_cpu * 1e6:.1f} us CPU",
            ),
            (
                "overhead per task, wall",
                f"{(with_store - without) * 1e6:.1f} us   (budget for the whole engine: 150 us)",
            ),
            (
                "overhead per task, CPU of both threads",
                f"{(with_store_cpu - without_cpu) * 1e6:.1f} us   "
                "(the writer's share runs on another core when one is free)",
            ),
        ],
    )


def test_cache_lookup(tmp_path):
    now = datetime.now(UTC)
    result = ResultRef.persisted("local-file-system/dev", "key", "pickle")
    keys = [uuid.uuid4().hex for _ in range(10_000)]
    lookups = 20_000
    with open_store(f"sqlite:///{tmp_path / 'ferroflow.db'}") as store:
        for key in keys:
            store.put_cache_entry(key, "load", result, expiration=now + timedelta(days=1))
        store.flush()

        def lookup_all(key_list: list[str]) -> None:
            for i in range(lookups):
                store.get_cache_entry(key_list[i % len(key_list)], now)

        timings = race({"committed": lambda: lookup_all(keys), "miss": lambda: lookup_all(["missing"])})
        committed_hit, miss = timings["committed"] / lookups, timings["miss"] / lookups

        context = SimpleNamespace(task=SimpleNamespace(fn=record_one_task, name="record_one_task"))
        parameters = {"path": "/data/in.csv", "n": 3, "options": {"sep": ",", "header": True}}
        store.put_cache_entry(task_input_hash(context, parameters), "load", result)
        store.flush()

        def full_hit() -> None:
            for _ in range(lookups // 10):
                store.get_cache_entry(task_input_hash(context, parameters), now)

        hash_and_hit = race({"hash and hit": full_hit})["hash and hit"] / (lookups // 10)

    # A writer that waits long for company keeps the entry uncommitted while we look it up.
    with SQLiteRunStore(tmp_path / "lingering.db", batch_interval=60.0) as lingering:
        lingering.put_cache_entry("fresh", "load", result)
        start = time.perf_counter()
        for _ in range(lookups):
            lingering.get_cache_entry("fresh", now)
        fresh_hit = (time.perf_counter() - start) / lookups

    report(
        "Cache lookup (10,000 entries, file store)",
        [
            ("hit, committed entry", f"{committed_hit * 1e6:.1f} us"),
            ("hit, entry not committed yet", f"{fresh_hit * 1e6:.1f} us"),
            ("miss", f"{miss * 1e6:.1f} us"),
            ("task_input_hash (3 small inputs) + hit", f"{hash_and_hit * 1e6:.1f} us   (target: ~100 us)"),
        ],
    )


def test_hashing_a_large_numpy_input():
    array = np.random.default_rng(0).random(64 * MIB // 8)  # 64 MiB of float64
    context = SimpleNamespace(task=SimpleNamespace(fn=record_one_task, name="record_one_task"))
    parameters = {"data": array}
    task_input_hash(context, parameters)  # warm: source digest cached, pages touched

    strided = array[::2]
    timings = race(
        {
            "ours": lambda: task_input_hash(context, parameters),
            "md5 of pickle": lambda: hashlib.md5(pickle.dumps(array, protocol=5)).hexdigest(),
            "strided": lambda: task_input_hash(context, {"data": strided}),
        },
        repeat=5,
    )
    ours, md5_of_pickle, strided_time = timings["ours"], timings["md5 of pickle"], timings["strided"]

    gigabytes = array.nbytes / 1e9
    report(
        "Hashing a 64 MiB NumPy input",
        [
            ("task_input_hash (XXH3-128, in place)", f"{gigabytes / ours:.2f} GB/s   (target: >= 4 GB/s)"),
            ("hashlib md5 of its pickle", f"{gigabytes / md5_of_pickle:.2f} GB/s"),
            ("ratio", f"{md5_of_pickle / ours:.1f}x"),
            ("non-contiguous view (copy first)", f"{strided.nbytes / 1e9 / strided_time:.2f} GB/s"),
        ],
    )
