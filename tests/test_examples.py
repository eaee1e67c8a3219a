"""The demo (`make demo`) end to end at a small size: retry reuse, cache hits, and the commands it
prints work when pasted."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ferroflow import _core
from ferroflow.runstore import open_store

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"


def run_demo(*args, env=None):
    return subprocess.run(
        [sys.executable, str(DEMO), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "160", **(env or {})},
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    home = tmp_path_factory.mktemp("demo")
    completed = run_demo("--size", "2MiB", "--home", home)
    assert completed.returncode == 0, completed.stderr
    return home, completed.stdout


def test_the_first_run_retries_once_and_reuses_the_completed_tasks(demo):
    home, output = demo
    with open_store(f"sqlite:///{home / 'ferroflow.db'}") as store:
        second, first = store.list_flow_runs()
        first_states = [state.name for state in store.list_states(first.id)]
        first_tasks = [(run.task_name, run.state_name) for run in store.list_task_runs(first.id)]
    assert first.run_count == 2 and first.state_name == "Completed"
    assert first_states == ["Pending", "Running", "AwaitingRetry", "Retrying", "Completed"]
    assert first_tasks[4] == ("publish_report", "Failed")
    assert first_tasks[5:] == [
        ("record_readings", "Cached"),
        ("load_maintenance_log", "Cached"),
        ("sensor_statistics", "Cached"),
        ("unstable_sensors", "Cached"),
        ("publish_report", "Completed"),
    ]
    assert "4 tasks reused by the retry" in output


def test_the_second_run_reads_the_cached_tasks_back(demo):
    home, output = demo
    with open_store(f"sqlite:///{home / 'ferroflow.db'}") as store:
        second = store.list_flow_runs()[0]
        tasks = {run.task_name: run.state_name for run in store.list_task_runs(second.id)}
        cached = sorted(entry.task_name for entry in store.list_cache_entries())
    assert second.run_count == 1 and second.state_name == "Completed"
    assert tasks["record_readings"] == tasks["load_maintenance_log"] == "Cached"
    assert tasks["sensor_statistics"] == "Completed"
    assert cached == ["load_maintenance_log", "record_readings"]
    assert "2 cache hits" in output


def test_the_readings_are_stored_compressed(demo):
    home, output = demo
    largest = max((home / "storage").iterdir(), key=lambda path: path.stat().st_size)
    header = _core.read_header(largest)
    assert (header.codec, header.level) == ("zstd", 3)
    assert header.segment_raw_lengths[1] == 2 * 2**20  # the readings, out of band, not copied into the pickle
    assert largest.stat().st_size < 0.6 * header.raw_length
    assert "x smaller" in output


def test_the_printed_commands_work_when_pasted(demo):
    home, output = demo
    commands = [line.strip() for line in output.splitlines() if line.strip().startswith("FERROFLOW_HOME=")]
    assert [shlex.split(command)[2:4] for command in commands] == [
        ["runs", "ls"],
        ["runs", "show"],
        ["cache", "ls"],
        ["results", "inspect"],
    ]
    outputs = []
    for command in commands:
        completed = subprocess.run(
            command,
            shell=True,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=DEMO.parent.parent,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert completed.returncode == 0, (command, completed.stderr)
        outputs.append(completed.stdout)
    runs_ls, runs_show, cache_ls, results_inspect = outputs
    assert runs_ls.count("Completed") == 2  # both flow runs
    assert "AwaitingRetry" in runs_show
    assert "record_readings" in cache_ls and "load_maintenance_log" in cache_ls
    assert "zstd" in results_inspect


def test_a_folder_not_made_by_the_demo_is_never_emptied(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    completed = run_demo("--size", "1MiB", "--home", tmp_path)
    assert completed.returncode != 0
    assert "was not made by this demo" in completed.stderr
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_a_bad_size_is_refused():
    completed = run_demo("--size", "big")
    assert completed.returncode != 0
    assert "--size: Cannot read the size 'big'" in completed.stderr


def test_the_readme_quick_start_runs_and_hits_the_cache(tmp_path):
    readme = (DEMO.parent.parent / "README.md").read_text()
    code = readme.split("## Quick start", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FERROFLOW_HOME": str(tmp_path)},
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["100.5", "100.5"]
    with open_store(f"sqlite:///{tmp_path / 'ferroflow.db'}") as store:
        latest = store.list_flow_runs()[0]
        states = {run.task_name: run.state_name for run in store.list_task_runs(latest.id)}
    assert states == {"load_prices": "Cached", "average": "Completed"}


def test_the_demo_records_in_a_postgresql_store(tmp_path, postgresql_url):
    completed = run_demo("--size", "1MiB", "--home", tmp_path / "demo", "--runstore-url", postgresql_url)
    assert completed.returncode == 0, completed.stderr
    assert "4 tasks reused by the retry" in completed.stdout and "2 cache hits" in completed.stdout
    with open_store(postgresql_url) as store:
        second, first = store.list_flow_runs()
        assert (first.run_count, first.state_name, second.state_name) == (2, "Completed", "Completed")
        assert sorted(entry.task_name for entry in store.list_cache_entries()) == [
            "load_maintenance_log",
            "record_readings",
        ]
    commands = [
        line.strip() for line in completed.stdout.splitlines() if line.strip().startswith("FERROFLOW_")
    ]
    runs_ls = subprocess.run(
        commands[0],
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=DEMO.parent.parent,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert runs_ls.returncode == 0, runs_ls.stderr
    assert runs_ls.stdout.count("Completed") == 2
    # Run again: the demo's cache entries (their results were in the emptied folder) are cleared.
    again = run_demo("--size", "1MiB", "--home", tmp_path / "demo", "--runstore-url", postgresql_url)
    assert again.returncode == 0, again.stderr
    assert "4 tasks reused by the retry" in again.stdout and "Traceback" not in again.stderr


# The scheduler serves its metrics routes on port 8787 even without a dashboard, and moves to a
# free port (with this warning) when the session's cluster has it.
@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")
def test_the_readme_beyond_one_machine_example_runs_on_dask_and_s3(tmp_path, monkeypatch, s3_env):
    import importlib

    import cloudpickle

    from ferroflow.task_runners import DaskTaskRunner

    readme = (DEMO.parent.parent / "README.md").read_text()
    code = readme.split("## Beyond one machine", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "readme_beyond.py").write_text(code)  # a module, so that TASK_SOURCE reads its source
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FERROFLOW_HOME", str(tmp_path / "home"))
    example = importlib.import_module("readme_beyond")
    cloudpickle.register_pickle_by_value(example)  # the workers cannot import it from tmp_path
    # As the example's DaskTaskRunner(), a cluster started for each flow run, whose workers take
    # the AWS_* credentials from their environment (inherited here); kept on loopback, small.
    runner = DaskTaskRunner(
        cluster_kwargs={
            "n_workers": 2,
            "threads_per_worker": 1,
            "host": "127.0.0.1",
            "dashboard_address": None,
        }
    )
    try:
        squares = example.squares.with_options(task_runner=runner)
        first = squares(4, return_state=True)
        second = squares(4, return_state=True)
    finally:
        cloudpickle.unregister_pickle_by_value(example)

    assert first.result() == second.result() == [0, 1, 4, 9]
    stored = s3_env.client().list_objects_v2(Bucket="my-bucket", Prefix="results/")
    assert stored["KeyCount"] >= 5  # the four squares, the flow's result, and their cache records
    with open_store(f"sqlite:///{tmp_path / 'home' / 'ferroflow.db'}") as store:
        latest = store.list_flow_runs()[0]
        assert {run.state_name for run in store.list_task_runs(latest.id)} == {"Cached"}
