import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from ferroflow.cli import app
from ferroflow.runstore import ResultRef, open_store

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
FLOW_RUN = "3f2a9c1e-0000-4000-8000-000000000001"
SUBFLOW_RUN = "5d6e7f80-0000-4000-8000-000000000002"
OLDER_RUN = "3f2b0000-0000-4000-8000-000000000003"


def at(seconds):
    return T0 + timedelta(seconds=seconds)


@pytest.fixture(params=["sqlite", "postgresql"])
def home(request, tmp_path, monkeypatch):
    """FERROFLOW_HOME, its SQLite store the one in force, or a PostgreSQL store."""
    monkeypatch.setenv("FERROFLOW_HOME", str(tmp_path))
    if request.param == "postgresql":
        monkeypatch.setenv("FERROFLOW_RUNSTORE_URL", request.getfixturevalue("postgresql_url"))
    else:
        monkeypatch.delenv("FERROFLOW_RUNSTORE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps tables to the terminal width
    return tmp_path


@pytest.fixture
def recorded(home):
    with open_store() as store:
        store.record_flow_run(OLDER_RUN, "older-run", "report")
        store.record_state(OLDER_RUN, "RUNNING", "Running", timestamp=at(-100))
        store.record_state(OLDER_RUN, "FAILED", "Failed", timestamp=at(-99), message="ValueError('bad row')")
        store.flush()  # created earlier than the runs below

        store.record_flow_run(FLOW_RUN, "crimson-fox", "etl", parameters={"day": "2024-05-01"})
        store.record_state(FLOW_RUN, "RUNNING", "Running", timestamp=at(0))
        store.record_task_run(
            "task-load-1", "load-0", "load", flow_run_id=FLOW_RUN, task_key="etl.load", created=at(1)
        )
        store.record_state("task-load-1", "RUNNING", "Running", timestamp=at(2))
        store.record_state(
            "task-load-1",
            "COMPLETED",
            "Completed",
            timestamp=at(4),
            result=ResultRef.persisted("local-file-system/dev", "9b1c0f7e", "pickle"),
        )
        store.record_flow_run(SUBFLOW_RUN, "quiet-owl", "clean", parent_flow_run_id=FLOW_RUN)
        store.record_state(
            SUBFLOW_RUN, "COMPLETED", "Completed", timestamp=at(5), result=ResultRef.literal(True)
        )
        store.record_state(
            FLOW_RUN, "COMPLETED", "Completed", timestamp=at(75), result=ResultRef.literal(None)
        )
    return home


def invoke(*args, **kwargs):
    return CliRunner().invoke(app, list(args), **kwargs)


def test_runs_ls_with_nothing_recorded(home):
    result = invoke("runs", "ls")
    assert result.exit_code == 0, result.output
    assert "No flow runs recorded yet." in result.output


def test_runs_ls_lists_the_newest_flow_runs_first(recorded):
    result = invoke("runs", "ls")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "│" in line]
    assert [row.split("│")[1].strip() for row in rows] == ["5d6e7f80", "3f2a9c1e", "3f2b0000"]
    assert "crimson-fox" in rows[1] and "Completed" in rows[1] and "1m 15s" in rows[1]
    assert "older-run" in rows[2] and "Failed" in rows[2]

    limited = invoke("runs", "ls", "--limit", "1")
    assert "5d6e7f80" in limited.output and "3f2a9c1e" not in limited.output


def test_runs_ls_json_holds_full_records(recorded):
    result = invoke("runs", "ls", "--json", "-n", "2")
    assert result.exit_code == 0, result.output
    runs = json.loads(result.output)
    assert [run["id"] for run in runs] == [SUBFLOW_RUN, FLOW_RUN]
    assert runs[1]["state_type"] == "COMPLETED" and runs[1]["duration_seconds"] == 75.0
    assert runs[1]["parameters"] == "day='2024-05-01'"
    assert runs[0]["parent_flow_run_id"] == FLOW_RUN


def test_runs_show_gives_states_task_runs_and_results(recorded):
    result = invoke("runs", "show", "3f2a")
    assert result.exit_code == 0, result.output
    out = result.output
    assert FLOW_RUN in out and "crimson-fox" in out and "day='2024-05-01'" in out
    assert "literal null" in out  # the flow's own result
    assert "Pending > Running > Completed" in out
    assert "9b1c0f7e pickle" in out  # the key, which `results inspect` takes
    # Each result's location whole, on a line of its own.
    assert out.splitlines()[-1] == "key 9b1c0f7e in storage local-file-system/dev"
    assert "task-loa" in out and "load-0" in out
    assert "Subflow runs" in out and "quiet-owl" in out


def test_runs_show_json(recorded):
    result = invoke("runs", "show", FLOW_RUN, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["flow_run"]["id"] == FLOW_RUN
    assert [state["type"] for state in shown["states"]] == ["PENDING", "RUNNING", "COMPLETED"]
    [task_run] = shown["task_runs"]
    assert task_run["task_key"] == "etl.load"
    assert task_run["states"][-1]["result"] == {
        "kind": "persisted",
        "storage": "local-file-system/dev",
        "key": "9b1c0f7e",
        "serializer": "pickle",
    }
    assert [run["id"] for run in shown["subflow_runs"]] == [SUBFLOW_RUN]


def test_runs_show_explains_unknown_and_ambiguous_ids(recorded):
    unknown = invoke("runs", "show", "zz")
    assert unknown.exit_code == 1
    assert "No flow run or task run has an id starting with 'zz'" in unknown.output
    assert "ferroflow runs ls" in unknown.output
    ambiguous = invoke("runs", "show", "3f2")
    assert ambiguous.exit_code == 1
    assert "several run ids" in ambiguous.output and "give more of the id" in ambiguous.output
    assert FLOW_RUN in ambiguous.output and OLDER_RUN in ambiguous.output


def test_a_store_from_a_newer_ferroflow_is_reported_not_traced(recorded):
    with open_store() as store:
        store._writer.call(lambda db: db.execute("UPDATE schema_version SET version = version + 1"), None)
    result = invoke("runs", "ls")
    assert result.exit_code == 1
    assert "Upgrade ferroflow" in result.output and "Traceback" not in result.output


def test_the_store_url_setting_is_followed(tmp_path, monkeypatch):
    monkeypatch.setenv("FERROFLOW_RUNSTORE_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    with open_store() as store:
        store.record_flow_run("elsewhere-run", "x", "etl")
    assert "elsewhe" in invoke("runs", "ls").output


def record_flow_runs(names_and_flows):
    with open_store() as store:
        for index, (name, flow_name) in enumerate(names_and_flows):
            run_id = f"{index:08x}-0000-4000-8000-000000000000"
            store.record_flow_run(run_id, name.format(id=run_id[:8]), flow_name)
            store.record_state(run_id, "COMPLETED", "Completed", timestamp=at(index))


def test_runs_ls_at_80_columns_leaves_out_names_that_only_repeat_flow_and_id(home):
    record_flow_runs(
        [("nightly-prices-etl-{id}", "nightly-prices-etl"), ("train-the-model-{id}", "train-the-model")]
    )
    narrow = invoke("runs", "ls", env={"COLUMNS": "80"}).output
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert "Name" not in narrow and "nightly-prices-etl-" not in narrow
    assert "│ 00000000 │ nightly-prices-etl │ Completed │" in narrow
    wide = invoke("runs", "ls", env={"COLUMNS": "120"}).output
    assert "│ 00000000 │ nightly-prices-etl-00000000 │ nightly-prices-etl │ Completed │" in wide


def test_runs_ls_at_80_columns_cuts_chosen_names_before_flow_names(home):
    record_flow_runs(
        [("the-nightly-run-of-the-prices-pipeline", "nightly-prices-etl"), ("crimson-fox", "etl")]
    )
    narrow = invoke("runs", "ls", env={"COLUMNS": "80"}).output
    lines = narrow.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "Name" in narrow and any("│ nightly-prices-etl │" in line for line in lines)


@pytest.mark.parametrize("command", [["runs"], ["runs", "ls"], ["runs", "show"]])
def test_every_runs_command_has_help(home, command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Usage: " in result.output and "Examples:" in result.output
    assert "ferroflow runs " + (command[1] if len(command) > 1 else "") in result.output


def test_runs_delete_by_id_asks_then_deletes_the_run_its_task_runs_and_subflows(recorded):
    declined = invoke("runs", "delete", "3f2a", input="n\n")
    assert declined.exit_code == 1
    assert "Delete 1 flow run 3f2a9c1e (crimson-fox), with their task runs" in declined.output
    assert "3f2a9c1e" in invoke("runs", "ls").output

    deleted = invoke("runs", "delete", "3f2a", input="y\n")
    assert deleted.exit_code == 0, deleted.output
    assert "Deleted 2 flow runs." in deleted.output  # the run and its subflow run
    listed = invoke("runs", "ls").output
    assert "3f2a9c1e" not in listed and "5d6e7f80" not in listed and "3f2b0000" in listed
    with open_store() as store:
        assert store.list_states("task-load-1") == []


def test_runs_delete_older_than_keeps_the_newer_runs(home):
    with open_store() as store:
        store.record_flow_run("old-run", "old", "etl", created=at(0))
        store.record_flow_run("new-run", "new", "etl")
    result = invoke("runs", "delete", "--older-than", "30d", "--yes")
    assert result.exit_code == 0, result.output
    assert "Deleted 1 flow run." in result.output
    assert [run["id"] for run in json.loads(invoke("runs", "ls", "--json").output)] == ["new-run"]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ((), "Give flow run ids or --older-than (one of them)."),
        (("abc", "--older-than", "1d"), "Give flow run ids or --older-than (one of them)."),
        (("--older-than", "soon"), "'soon' is not an age"),
        (("--older-than", "999999999w"), "give an age of at most"),
        (("nothing-like-it", "--yes"), "No flow run with an id starting with 'nothing-like-it'"),
    ],
)
def test_runs_delete_explains_what_it_needs(home, arguments, expected):
    result = invoke("runs", "delete", *arguments)
    assert result.exit_code != 0
    assert expected in result.output and "Traceback" not in result.output


def test_an_unreachable_postgresql_store_is_named_without_its_password(home, monkeypatch):
    from postgresql_server import free_port

    pytest.importorskip("psycopg")
    url = f"postgresql://ferroflow:s3cret-pw@127.0.0.1:{free_port()}/runs"
    monkeypatch.setenv("FERROFLOW_RUNSTORE_URL", url)
    for command in (
        ("runs", "ls"),
        ("runs", "show", "abc"),
        ("cache", "ls"),
        ("runs", "delete", "abc", "-y"),
    ):
        result = invoke(*command)
        assert result.exit_code == 1, command
        assert (
            "cannot be reached" in result.output and "postgresql://ferroflow:***@127.0.0.1" in result.output
        )
        assert "s3cret-pw" not in result.output and "Traceback" not in result.output
