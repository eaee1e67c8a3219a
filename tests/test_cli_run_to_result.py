"""From a run to its result on the command line: `runs show` takes flow and task run ids and
prints each result's location whole; `results inspect` takes what it prints; every table fits 80
columns; no argument, however strange, ends in a traceback."""

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from ferroflow import flow, task
from ferroflow.cli import app
from ferroflow.runstore import open_store
from ferroflow.tasks import task_input_hash

LONG_TASK = "load_daily_prices_from_the_exchange"
LONG_FLOW = "nightly-market-data-consolidation-pipeline"


def invoke(*args, columns=200):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)})


@pytest.fixture
def ran(isolated_home):
    """A flow run with two persisted task results (one cached) and a literal one."""

    @task(name=LONG_TASK, persist_result=True, cache_key_fn=task_input_hash)
    def load(day):
        return {"day": day, "prices": list(range(50))}

    @task(persist_result=True, result_serializer="json")
    def count(prices):
        return len(prices["prices"])

    @flow(name=LONG_FLOW, persist_result=True)
    def pipeline():
        return count(load(1))

    state = pipeline(return_state=True)
    with open_store() as store:
        [flow_run] = store.list_flow_runs()
        task_runs = store.list_task_runs(flow_run.id)
    return {
        "flow_run": flow_run,
        "task_runs": {run.task_name: run for run in task_runs},
        "flow_result": Path(state.data.storage.basepath, state.data.storage_key),
    }


def result_lines(output):
    """The lines after `Results ...:` in pairs: (the run's line, the location's line)."""
    lines = output.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("Results"))
    listed = lines[start + 1 :]
    return list(zip(listed[::2], listed[1::2]))


def test_runs_show_prints_each_result_location_whole_on_its_own_line(ran):
    shown = invoke("runs", "show", ran["flow_run"].id[:8], columns=80)
    assert shown.exit_code == 0, shown.output
    pairs = result_lines(shown.output)
    assert len(pairs) == 3  # the flow's result and the two tasks'
    for _, location in pairs:
        assert Path(location).is_file()  # untruncated, nothing else on the line
    assert str(ran["flow_result"]) in [location for _, location in pairs]


def test_runs_show_takes_a_task_run_id(ran):
    load_run = ran["task_runs"][LONG_TASK]
    shown = invoke("runs", "show", load_run.id[:8])
    assert shown.exit_code == 0, shown.output
    assert "Task run" in shown.output and load_run.id in shown.output
    assert ran["flow_run"].id in shown.output  # the flow run it belongs to
    [(described, location)] = result_lines(shown.output)
    assert LONG_TASK in described and Path(location).is_file()

    as_json = json.loads(invoke("runs", "show", load_run.id, "--json").output)
    assert as_json["task_run"]["id"] == load_run.id
    assert Path(as_json["states"][-1]["result"]["path"]).is_file()


def test_results_inspect_takes_what_runs_show_prints(ran):
    shown = invoke("runs", "show", ran["flow_run"].id).output
    for described, location in result_lines(shown):
        key = re.search(r"key (\w+):$", described).group(1)
        by_path = json.loads(invoke("results", "inspect", location, "--json").output)
        by_key = json.loads(invoke("results", "inspect", key, "--json").output)
        by_prefix = json.loads(invoke("results", "inspect", key[:12], "--json").output)
        assert by_path["path"] == by_key["path"] == by_prefix["path"] == location
        assert by_key["found"] == f"result key {key}"

    count_run = ran["task_runs"]["count"]
    by_task_run = json.loads(invoke("results", "inspect", count_run.id[:8], "--json").output)
    assert by_task_run["serializer"] == "json" and "task run" in by_task_run["found"]
    by_flow_run = json.loads(invoke("results", "inspect", ran["flow_run"].id, "--json").output)
    assert by_flow_run["path"] == str(ran["flow_result"])


def test_results_inspect_says_what_it_could_not_find(ran):
    unknown = invoke("results", "inspect", "no-such-thing")
    assert unknown.exit_code == 1 and "neither a file, nor the key of a recorded result" in unknown.output
    os.remove(ran["flow_result"])
    missing = invoke("results", "inspect", ran["flow_run"].id)
    assert missing.exit_code == 1 and "does not exist" in missing.output


@pytest.mark.parametrize("columns", [80, 100])
def test_every_table_fits_the_terminal_without_cutting_names(ran, columns):
    outputs = [
        (invoke("runs", "ls", columns=columns).output, [LONG_FLOW]),
        (invoke("runs", "show", ran["flow_run"].id, columns=columns).output, [LONG_TASK]),
        (invoke("cache", "ls", columns=columns).output, [LONG_TASK]),
    ]
    for output, names in outputs:
        table_lines = [line for line in output.splitlines() if line[:1] in "┏┃┡│└"]
        assert table_lines and max(len(line) for line in table_lines) <= columns
        cells = " ".join(part.strip() for line in table_lines for part in line.split("│"))
        # Names are broken only after a separator: every word of each name shows whole.
        for name in names:
            for word in re.split(r"[-_]", name):
                assert re.search(rf"(^|[\s_-]){word}([\s_-]|$)", cells), (word, output)


def test_cache_ls_shortens_result_paths_from_the_middle_keeping_the_file_name(ran):
    listed = invoke("cache", "ls", "--json").output
    [entry] = json.loads(listed)
    assert isinstance(entry["result"]["storage"], dict)  # an object, not JSON text in a string
    assert entry["result"]["storage"]["type"] == "local-file-system"
    file_name = entry["result"]["key"]
    narrow = invoke("cache", "ls", columns=80).output
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert sum(file_name in line for line in narrow.splitlines()) == 1  # the file name whole
    assert "…" in narrow
    wide = invoke("cache", "ls", columns=200).output
    assert str(Path(ran["flow_result"].parent, file_name)) in wide


@pytest.fixture
def odd_files(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    empty = tmp_path / "empty"
    empty.touch()
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 4)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    json_other = tmp_path / "other.json"
    json_other.write_text('{"serializer": 1, "data": [1, 2]}')
    damaged = tmp_path / "damaged"
    damaged.write_bytes(b"\x89FFB\r\n\x1a\n" + b"\0" * 40)
    return {
        "folder": (folder, "is a folder"),
        "empty": (empty, "is empty: it is not a ferroflow result file"),
        "junk": (junk, "is not a ferroflow result file"),
        "fifo": (fifo, "is not a regular file"),
        "json": (json_other, "is not a ferroflow result file"),
        "damaged": (damaged, "is a ferroflow result file, but a damaged one"),
    }


@pytest.mark.timeout(30)  # a FIFO opened for reading would block forever
@pytest.mark.parametrize("kind", ["folder", "empty", "junk", "fifo", "json", "damaged"])
def test_results_inspect_on_any_file_says_what_it_is(isolated_home, odd_files, kind):
    path, message = odd_files[kind]
    shown = invoke("results", "inspect", str(path))
    assert shown.exit_code == 1
    assert message in shown.output and "Traceback" not in shown.output
    if kind != "damaged":
        assert "delete" not in shown.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["runs", "ls", "--limit", "9" * 40], None),  # more than the store can count: all of them
        (["runs", "ls", "--limit", "-3"], "not in the range"),
        (["runs", "ls", "--limit", "many"], "is not a valid integer"),
        (["runs", "show", ""], "The run id is empty"),
        (["runs", "show", "\udcff"], "not UTF-8"),
        (["runs", "show", "x" * 100_000], "No flow run or task run"),
        (["runs", "show", "%_'\"; DROP TABLE flow_runs"], "No flow run or task run"),
        (["cache", "clear", "--key", "", "--yes"], "--key is empty"),
        (["cache", "clear", "--key", "  ", "--yes"], "--key is empty"),
        (["cache", "clear", "--key", "\udcff", "--yes"], "not UTF-8"),
        (["results", "prune", "--older-than", "9" * 30 + "d"], "before the year 1"),
        (["results", "prune", "--older-than", "1" + "0" * 400 + "s"], "before the year 1"),
        (["results", "prune", "--older-than", "-1d"], "is not an age"),
        (["results", "inspect", ""], "neither a file"),
        (["results", "inspect", "\udcff"], "neither a file"),
    ],
)
def test_no_argument_ends_in_a_traceback(ran, arguments, message):
    result = invoke(*arguments)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    if message is None:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == (2 if "Invalid value" in result.output else 1)
        assert message in result.output


def test_an_empty_key_clears_nothing(ran):
    with open_store() as store:
        before = len(store.list_cache_entries())
    assert before == 1
    invoke("cache", "clear", "--key", "", "--yes")
    with open_store() as store:
        assert len(store.list_cache_entries()) == before
