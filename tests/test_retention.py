"""Retention of result files: eviction under FERROFLOW_RESULTS_MAX_BYTES, and prunes that run
safely while processes write and alongside each other."""

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ferroflow import flow, task
from ferroflow.cli import app
from ferroflow.exceptions import MissingResult
from ferroflow.filesystems import LocalFileSystem
from ferroflow.results import PersistedResult
from ferroflow.results.retention import plan_prune, removal_note, remove_files, stored_files
from ferroflow.settings import temporary_settings
from other_homes import home_env


def folder_bytes(folder):
    return sum(item.size for item in stored_files(str(folder)))


def test_a_size_limit_evicts_the_least_recently_used_results_after_writes(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))

    @task(persist_result=True, result_storage=storage)
    def blob(n):
        return os.urandom(10_000)

    @flow
    def write(count):
        return [blob(n, return_state=True) for n in range(count)]

    with temporary_settings(results_max_bytes=50_000):
        states = write(12)
        assert folder_bytes(tmp_path) <= 50_000 + 11_000  # under the limit once the last write evicted
    kept = [state for state in states if Path(tmp_path, state.data.storage_key).exists()]
    assert states[-1] in kept and states[0] not in kept  # the newest stays, the oldest went
    assert 3 <= len(kept) < 12
    # The evicted ones say where they went.
    evicted = states[0].data
    # The same reference without the value in memory: read from storage.
    reopened = PersistedResult(storage=storage, storage_key=evicted.storage_key, serializer_type="pickle")
    with pytest.raises(MissingResult, match=r"eviction \(FERROFLOW_RESULTS_MAX_BYTES\)"):
        reopened.get()


def test_removing_a_file_already_removed_is_no_error(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))

    @task(persist_result=True, result_storage=storage)
    def value():
        return "x" * 100

    @flow
    def write():
        return value(return_state=True)

    key = write().data.storage_key
    files = stored_files(str(tmp_path))
    plan = plan_prune(files, now=time.time() + 10, older_than=0, max_bytes=None, min_age=0, cached_keys=set())
    assert [item.key for item in plan.remove] == [key]
    assert remove_files(str(tmp_path), plan.remove, "test") > 0
    assert remove_files(str(tmp_path), plan.remove, "test") == 0  # a second prune finds nothing
    assert removal_note(str(tmp_path), key).startswith("removed by test at ")


WRITER = """
import os, sys
from ferroflow import flow, task
from ferroflow.filesystems import LocalFileSystem
from ferroflow.tasks import task_input_hash

storage = LocalFileSystem(basepath=sys.argv[1])

@task(cache_key_fn=task_input_hash, result_storage=storage)
def payload(n, writer):
    return os.urandom(2000 + n)

@flow
def write(writer):
    for round in range(int(sys.argv[3])):
        for n in range(10):
            payload(n % 5, writer)  # half the calls hit the cache, some of whose results go

write(sys.argv[2])
print("done")
"""


def test_prunes_while_four_processes_write_never_fail(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    writers = [
        subprocess.Popen(
            [sys.executable, str(script), str(results), f"w{n}", "30"],
            env=home_env(tmp_path / f"home-{n}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    outcomes = []

    def prune_repeatedly(arguments):
        runner = CliRunner()
        while any(writer.poll() is None for writer in writers):
            outcome = runner.invoke(app, ["results", "prune", *arguments, "--storage", str(results)])
            outcomes.append((outcome.exit_code, outcome.output, outcome.exception))

    # Two prunes at once, by size and by age, over and over, removing files under the writers.
    pruners = [
        threading.Thread(target=prune_repeatedly, args=(["--max-bytes", "5k", "--min-age", "0s"],)),
        threading.Thread(target=prune_repeatedly, args=(["--older-than", "0s", "--min-age", "0s"],)),
    ]
    for pruner in pruners:
        pruner.start()
    outputs = [writer.communicate(timeout=300) for writer in writers]
    for pruner in pruners:
        pruner.join(timeout=120)
    assert [writer.returncode for writer in writers] == [0] * 4, [err[-2000:] for _, err in outputs]
    assert len(outcomes) >= 4
    failures = [outcome for outcome in outcomes if outcome[0] != 0]
    assert failures == []
    assert any("Removed" in output and "Removed 0" not in output for _, output, _ in outcomes)
