"""The engine records every flow run, task run and state, with result references, in the run
store; `ferroflow runs` shows them."""

import inspect
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from ferroflow import flow, task
from ferroflow._engine.parameters import LazyParameters, parameters_with_defaults
from ferroflow.cli import app
from ferroflow.results import read_result
from ferroflow.runstore import default_store_url, open_store
from ferroflow.settings import temporary_settings


@task
def load(day, limit=10):
    return {"day": day, "rows": limit}


@task
def check(rows):
    return rows is not None  # a literal True


@task
def explode():
    raise ValueError("bad row")


@flow(name="etl")
def etl(day):
    data = load(day)
    check(data)
    explode(return_state=True)
    return "done"


def reopened_store():
    """A second connection to the store the engine wrote to, as another process would open it."""
    return open_store(default_store_url())


def test_a_flow_run_its_task_runs_and_their_states_are_recorded():
    with temporary_settings(results_persist_by_default=True):
        etl("2024-05-01")
    with reopened_store() as store:
        (flow_run,) = store.list_flow_runs()
        task_runs = store.list_task_runs(flow_run.id)
        states = {run.name: store.list_states(run.id) for run in task_runs}
    assert (flow_run.flow_name, flow_run.parameters, flow_run.state_name) == (
        "etl",
        "day='2024-05-01'",
        "Completed",
    )
    assert flow_run.run_count == 1 and flow_run.end_time >= flow_run.start_time
    assert [run.name for run in task_runs] == ["load-0", "check-0", "explode-0"]
    load_run = task_runs[0]
    assert load_run.task_key.endswith("test_run_recording.load") and load_run.dynamic_key == "0"
    assert load_run.parameters == "day='2024-05-01'"
    assert [state.name for state in states["load-0"]] == ["Pending", "Running", "Completed"]
    persisted = states["load-0"][-1].result
    assert persisted.kind == "persisted" and persisted.serializer == "pickle"
    storage = json.loads(persisted.storage)
    assert read_result(Path(storage["basepath"], persisted.key)) == {"day": "2024-05-01", "rows": 10}
    assert states["check-0"][-1].result.to_dict() == {"kind": "literal", "value": True}
    failed = states["explode-0"][-1]
    assert (failed.type, failed.result) == ("FAILED", None) and "bad row" in failed.message


def test_retries_and_subflows_are_recorded():
    attempts = []

    @flow
    def child():
        return None

    @flow(retries=1)
    def parent():
        child()
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")

    parent()
    with reopened_store() as store:
        (outer,) = [run for run in store.list_flow_runs() if run.parent_flow_run_id is None]
        names = [state.name for state in store.list_states(outer.id)]
        subflows = store.list_flow_runs(parent_flow_run_id=outer.id)
    assert outer.flow_name == "parent" and outer.run_count == 2
    assert names == ["Pending", "Running", "AwaitingRetry", "Retrying", "Completed"]
    assert [run.flow_name for run in subflows] == [
        "child",
        "child",
    ]  # one per attempt (None is not persisted)


def test_runs_show_lists_what_the_engine_recorded(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    etl("2024-05-02")
    runner = CliRunner()
    listing = runner.invoke(app, ["runs", "ls", "--json"])
    assert listing.exit_code == 0, listing.output
    (run,) = json.loads(listing.output)
    shown = runner.invoke(app, ["runs", "show", run["id"][:8]])
    assert shown.exit_code == 0, shown.output
    for expected in ("etl", "load-0", "check-0", "explode-0", "Failed", "literal true", "day='2024-05-02'"):
        assert expected in shown.output


def test_recording_can_be_turned_off():
    with temporary_settings(runstore_record_runs=False):
        assert etl("2024-05-03") == "done"
    with reopened_store() as store:
        assert store.list_flow_runs() == []


# ------------------------------------------------------------------------------------------------
# Recording never fails a flow: a store that cannot be used is one warning naming it and what to do


def run_store_warnings(caplog):
    return [
        r.getMessage() for r in caplog.records if r.name == "ferroflow.runstore" and r.levelname == "WARNING"
    ]


def test_a_store_from_a_newer_ferroflow_is_a_warning_and_the_flow_runs(tmp_path, monkeypatch, caplog):
    path = tmp_path / "newer.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE schema_version SET version = 999")
    monkeypatch.setenv("FERROFLOW_RUNSTORE_URL", f"sqlite:///{path}")
    assert etl("2024-05-04") == "done"
    [warning] = run_store_warnings(caplog)
    assert (
        str(path) in warning and "newer ferroflow" in warning and "pip install --upgrade ferroflow" in warning
    )


def test_a_garbage_store_file_is_a_warning_naming_it_and_the_cli_says_what_is_wrong(isolated_home, caplog):
    path = isolated_home / "ferroflow.db"
    path.write_bytes(b"this is no database " * 500)
    assert etl("2024-05-05") == "done"
    [warning] = run_store_warnings(caplog)
    assert str(path) in warning and "not a ferroflow run store, or it is damaged" in warning
    assert "Move it aside" in warning
    for command in (["runs", "ls"], ["cache", "ls"], ["cache", "clear", "--yes"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 1
        assert str(path) in result.output and "damaged" in result.output and "Traceback" not in result.output


def test_a_store_damaged_after_it_was_written_does_not_fail_flows(tmp_path, monkeypatch, caplog):
    path = tmp_path / "damaged.db"
    with open_store(f"sqlite:///{path}") as store:
        for index in range(50):
            store.record_flow_run(f"run-{index}", "earlier", "etl")
    with sqlite3.connect(path) as connection:  # fold the WAL in, so every page is in the file
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    data[page_size:] = b"\xa5" * (len(data) - page_size)  # every page but the first (the schema's)
    path.write_bytes(bytes(data))
    monkeypatch.setenv("FERROFLOW_RUNSTORE_URL", f"sqlite:///{path}")

    assert etl("2024-05-07") == "done"
    warnings_text = " ".join(run_store_warnings(caplog))
    assert str(path) in warnings_text and "damaged" in warnings_text
    result = CliRunner().invoke(app, ["runs", "ls"])
    assert result.exit_code == 1 and str(path) in result.output and "Traceback" not in result.output


def test_a_folder_that_cannot_be_created_is_named_in_the_warning(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FERROFLOW_RUNSTORE_URL", f"sqlite:///{blocker / 'home' / 'ferroflow.db'}")
    assert etl("2024-05-08") == "done"
    [warning] = run_store_warnings(caplog)
    assert f"folder {blocker / 'home'} cannot be created" in warning and "Set FERROFLOW_HOME" in warning
    result = CliRunner().invoke(app, ["runs", "ls"])
    assert result.exit_code == 1 and str(blocker / "home") in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="needs POSIX permissions, not root")
def test_an_unwritable_home_is_named_in_the_warning(tmp_path, monkeypatch, caplog):
    home = tmp_path / "locked-home"
    home.mkdir()
    home.chmod(0o500)
    try:
        monkeypatch.setenv("FERROFLOW_HOME", str(home))
        assert etl("2024-05-09") == "done"
        [warning] = run_store_warnings(caplog)
        assert str(home) in warning and "FERROFLOW_HOME" in warning
    finally:
        home.chmod(0o700)


FULL_DISK_SCRIPT = """
import resource, signal
from ferroflow import flow, task

@task
def add(a, b):
    return a + b

@flow
def totals():
    return add(1, 2)

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # not a byte more may be written: a full disk
print("result", totals())
"""


def test_a_disk_full_when_the_store_is_opened_is_a_warning_and_the_flow_runs(isolated_home):
    completed = subprocess.run(
        [sys.executable, "-c", FULL_DISK_SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert "result 3" in completed.stdout
    assert str(isolated_home / "ferroflow.db") in completed.stderr
    assert "the disk may be full" in completed.stderr and "Traceback" not in completed.stderr


def test_a_name_that_is_not_valid_unicode_does_not_drop_the_other_records(caplog):
    # The key is valid text: a key function returning a lone surrogate is refused before the run
    # (tests/test_caching.py); a name holding one is recorded escaped.
    @task(name="load-\udce9", cache_key_fn=lambda context, parameters: "key-of-odd")
    def odd(day):
        return day

    @task(cache_key_fn=lambda context, parameters: "plain-key")
    def plain(day):
        return day

    @flow(name="odd-\udcff")
    def mixed(day):
        return odd(day), plain(day)

    assert mixed("2024-05-10") == ("2024-05-10", "2024-05-10")
    with reopened_store() as store:
        [flow_run] = store.list_flow_runs()
        assert flow_run.flow_name == "odd-\\udcff"  # escaped, not lost
        names = sorted(run.task_name for run in store.list_task_runs(flow_run.id))
        assert names == ["load-\\udce9", "plain"]
        assert {entry.key for entry in store.list_cache_entries()} == {"plain-key", "key-of-odd"}
    assert run_store_warnings(caplog) == []


KILLED_SCRIPT = """
import sys
from ferroflow import flow, task

@task(persist_result=True)
def produce(i):
    return list(range(i % 50))

@flow
def endless():
    for i in range(10**9):
        produce(i)
        if i == 300:
            print("running", flush=True)

endless()
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_process_leaves_store_and_result_files_consistent(tmp_path, isolated_home):
    script = tmp_path / "endless.py"
    script.write_text(textwrap.dedent(KILLED_SCRIPT))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "running"
        time.sleep(0.3)  # let the writer commit a few batches, then kill mid-write
    finally:
        os.kill(process.pid, signal.SIGKILL)  # the script never ends by itself
        process.wait(timeout=30)
    with reopened_store() as store:
        (flow_run,) = store.list_flow_runs()
        task_runs = store.list_task_runs(flow_run.id)
        references = store.referenced_result_keys()
    assert flow_run.state_name == "Running" and len(task_runs) > 300
    assert references
    storage = Path(isolated_home, "storage")
    for storage_reference, key in references:
        assert Path(json.loads(storage_reference)["basepath"]) == storage
        read_result(storage / key)  # every referenced file is whole and verified
    for path in storage.iterdir():
        if not path.name.endswith(".tmp"):  # an unfinished atomic write is never a result file
            read_result(path)


WAITING_SCRIPT = """
import sys
from ferroflow import flow, task

@task
def step(x):
    return x

@flow
def short(n):
    return [step(i) for i in range(n)]

short(20)
print("flow ended", flush=True)
sys.stdin.readline()  # stay alive: nothing is left to the exit hook
"""


def test_another_process_sees_a_flow_run_as_soon_as_it_ends(tmp_path):
    script = tmp_path / "short.py"
    script.write_text(textwrap.dedent(WAITING_SCRIPT))
    process = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "flow ended"
        with reopened_store() as store:
            (flow_run,) = store.list_flow_runs()
            assert flow_run.state_name == "Completed"
            assert len(store.list_task_runs(flow_run.id)) == 20
    finally:
        process.communicate("\n", timeout=30)


def test_a_process_moving_to_another_store_closes_the_one_it_left(tmp_path, monkeypatch):
    from ferroflow._engine.recording import stores

    monkeypatch.setenv("FERROFLOW_RUNSTORE_URL", f"sqlite:///{tmp_path / 'first.db'}")
    etl("2024-05-05")
    monkeypatch.setenv("FERROFLOW_RUNSTORE_URL", f"sqlite:///{tmp_path / 'second.db'}")
    etl("2024-05-06")
    assert list(stores._stores) == [f"sqlite:///{tmp_path / 'second.db'}"]
    for name, day in (("first.db", "2024-05-05"), ("second.db", "2024-05-06")):
        with open_store(f"sqlite:///{tmp_path / name}") as store:
            (run,) = store.list_flow_runs()
            assert run.parameters == f"day={day!r}"


def test_an_async_flow_run_is_committed_when_it_ends():
    import asyncio

    @task
    async def fetch(x):
        return x

    @flow
    async def gather():
        return [await fetch(i) for i in range(3)]

    assert asyncio.run(gather()) == [0, 1, 2]
    with reopened_store() as store:
        (run,) = store.list_flow_runs()
        assert run.state_name == "Completed" and len(store.list_task_runs(run.id)) == 3


def test_a_closed_store_loses_late_records_with_a_warning_not_the_run(caplog):
    from ferroflow._engine.recording import RunRecorder
    from ferroflow._engine.runs import TaskRun, set_state
    from ferroflow.states import Completed

    store = open_store("memory://")
    recorder = RunRecorder(store)
    run = TaskRun("late", "tests.late", 0, flow_run_id=uuid.uuid4(), recorder=recorder)
    store.close()  # e.g. the process moved to another store while a timed-out task ran on
    set_state(run, Completed())
    assert run.state.is_completed()
    assert "could not record run late-0" in caplog.text


def test_recorded_runs_keep_distinct_short_ids():
    @flow
    def several():
        for day in range(20):
            load(day)

    several()
    with open_store() as store:
        (run,) = store.list_flow_runs()
        short_ids = {task_run.id[:8] for task_run in store.list_task_runs(run.id)}
    assert len(short_ids) == 20  # what `ferroflow runs show` lists tells the task runs apart
    assert uuid.UUID(run.id).version == 8  # clock-ordered: see ferroflow.runstore.ids


def _plain(a, b=2, c=None):
    return a


def _starred(a, *rest, key=1):
    return a


def _keyword_only(a, *, key=1):
    return a


@pytest.mark.parametrize(
    ("fn", "args", "kwargs"),
    [
        (_plain, (1,), {}),
        (_plain, (1, 5), {}),
        (_plain, (1,), {"c": 3}),
        (_plain, (), {"c": 3, "a": 1}),
        (_plain, (1, 2, 3), {}),
    ],
)
def test_parameters_with_defaults_are_what_signature_bind_gives(fn, args, kwargs):
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    fast = parameters_with_defaults(fn, args, kwargs)
    assert fast == dict(bound.arguments)
    assert list(fast) == list(bound.arguments)  # in the signature's order


@pytest.mark.parametrize(
    ("fn", "args", "kwargs"),
    [
        (_plain, (), {}),  # missing a
        (_plain, (1, 2, 3, 4), {}),  # too many
        (_plain, (1,), {"a": 1}),  # a twice
        (_plain, (1,), {"d": 1}),  # unknown name
        (_starred, (1, 2), {}),  # not a plain signature: bound the slow way
        (_keyword_only, (1,), {}),
    ],
)
def test_parameters_with_defaults_leave_other_calls_to_signature_bind(fn, args, kwargs):
    assert parameters_with_defaults(fn, args, kwargs) is None


def test_lazy_parameters_bind_once_and_show_their_items_in_call_order():
    parameters = LazyParameters(_plain, (1,), {"c": 3})
    assert list(parameters.items()) == [("a", 1), ("c", 3)]  # as passed: defaults are not filled in
    assert dict(parameters) == {"a": 1, "c": 3} and len(parameters) == 2
