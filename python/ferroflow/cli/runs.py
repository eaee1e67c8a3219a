"""`ferroflow runs`: the flow runs, task runs and states recorded in the run store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from ferroflow.cli.console import (
    StoreText,
    cli_store,
    console,
    duration,
    echo_json,
    local_time,
    short_id,
    short_key,
    state_text,
)
from ferroflow.cli.lookup import find_run, location, result_path
from ferroflow.cli.results import AGE
from ferroflow.cli.tables import Cell, Column, fits, fitted_table
from ferroflow.runstore import FlowRunRecord, ResultRef, RunStore, StateRecord, TaskRunRecord

# The largest LIMIT SQLite takes (a signed 64-bit integer).
MAX_LIMIT = 2**63 - 1


@click.group("runs")
def runs() -> None:
    """Look at recorded flow runs, their task runs, states and results.

    Runs are recorded in the run store named by the runstore_url setting
    (FERROFLOW_RUNSTORE_URL, or `ferroflow config set runstore_url=...`), by default
    $FERROFLOW_HOME/ferroflow.db.

    \b
    Examples:
      ferroflow runs ls                 the 20 most recent flow runs
      ferroflow runs show 3f2a9c1e      one of them, with its task runs and results
      ferroflow runs delete --older-than 30d   trim the history
    """


@runs.command("ls")
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many of the most recent flow runs to show.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_runs(limit: int, as_json: bool) -> None:
    """List the most recent flow runs, newest first.

    On a terminal too narrow for the whole table, the Name column is left out when every run
    listed has the name it gets by default (its flow's name and its id).

    \b
    Examples:
      ferroflow runs ls
      ferroflow runs ls --limit 5
      ferroflow runs ls --json | jq '.[0].id'
    """
    with cli_store() as store:
        # A limit beyond what the store can count means "all of them".
        flow_runs = store.list_flow_runs(limit=None if limit > MAX_LIMIT else limit)
    if as_json:
        echo_json([run.to_dict() for run in flow_runs])
        return
    if not flow_runs:
        click.echo("No flow runs recorded yet.")
        return
    out = console()
    out.print(_flow_runs_table(flow_runs, out.width))


@runs.command("delete")
@click.argument("run_ids", nargs=-1, metavar="[RUN_ID]...")
@click.option(
    "--older-than",
    "age",
    type=AGE,
    help="Delete the flow runs created longer ago than this: 30d, 12h, 2w.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete_runs(run_ids: tuple[str, ...], age: timedelta | None, yes: bool) -> None:
    """Delete flow runs, with their task runs, states and subflow runs.

    Give flow run ids (or enough of their beginning to match one run each), or --older-than.
    Results the runs refer to stay where they are: `ferroflow results prune` removes those
    no longer referenced.

    \b
    Examples:
      ferroflow runs delete 3f2a9c1e
      ferroflow runs delete --older-than 30d --yes
    """
    if bool(run_ids) == (age is not None):
        raise click.UsageError("Give flow run ids or --older-than (one of them).")
    with cli_store() as store:
        if run_ids:
            found = [store.get_flow_run(run_id) for run_id in run_ids]
            listed = ", ".join(f"{short_id(run.id)} ({run.name})" for run in found)
            if not yes:
                click.confirm(
                    f"Delete {_runs_text(len(found))} {listed}, with their task runs, states and "
                    "subflow runs?",
                    abort=True,
                )
            deleted = store.delete_flow_runs([run.id for run in found])
        else:
            assert age is not None
            try:
                cutoff = datetime.now(UTC) - age
            except OverflowError:
                raise click.BadParameter(
                    f"{age} reaches before the year 1; give a shorter age.", param_hint="--older-than"
                ) from None
            if not yes:
                click.confirm(
                    f"Delete every flow run created before {local_time(cutoff)}, with its task runs, "
                    "states and subflow runs?",
                    abort=True,
                )
            deleted = store.delete_flow_runs(created_before=cutoff)
    click.echo(f"Deleted {_runs_text(deleted)}.")


def _runs_text(count: int) -> str:
    return f"{count} flow run" + ("" if count == 1 else "s")


def _flow_runs_table(flow_runs: list[FlowRunRecord], width: int) -> Table:
    columns = [
        Column("ID"),
        Column("Name", "name", priority=1),
        Column("Flow", "name"),
        Column("State"),
        Column("Start"),
        Column("Duration"),
    ]
    rows: list[list[Cell]] = [
        [
            short_id(run.id),
            run.name,
            run.flow_name,
            state_text(run.state_type, run.state_name),
            local_time(run.start_time),
            duration(run.duration_seconds),
        ]
        for run in flow_runs
    ]
    headers = [column.header for column in columns]
    if not fits(headers, rows, width) and all(_has_default_name(run) for run in flow_runs):
        # Such a name only repeats the flow and the id: leave it out rather than wrap every row.
        name_index = headers.index("Name")
        del columns[name_index]
        for row in rows:
            del row[name_index]
    return fitted_table("Flow runs", columns, rows, width)


def _has_default_name(run: FlowRunRecord) -> bool:
    """Whether the run has the name the engine gives when none is chosen: `<flow>-<short id>`."""
    return run.name == f"{run.flow_name}-{short_id(run.id)}"


@runs.command("show")
@click.argument("run_id", type=StoreText())
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def show_run(run_id: str, as_json: bool) -> None:
    """Show a flow run (its states, task runs and results) or a task run (its states and result).

    RUN_ID is a flow run's or a task run's id, or enough of its beginning to match only one run
    (as `ferroflow runs ls` and this command show them). Each result's location is printed whole
    on a line of its own; `ferroflow results inspect` takes it, or the result's key.

    \b
    Examples:
      ferroflow runs show 3f2a9c1e
      ferroflow runs show 3f2a --json
      ferroflow runs show 3f2a9c1e | tail -1 | xargs ferroflow results inspect
    """
    with cli_store() as store:
        run = find_run(store, run_id)
        if isinstance(run, TaskRunRecord):
            _show_task_run(store, run, as_json)
        else:
            _show_flow_run(store, run, as_json)


def _show_flow_run(store: RunStore, flow_run: FlowRunRecord, as_json: bool) -> None:
    states = store.list_states(flow_run.id)
    task_runs = [(task_run, store.list_states(task_run.id)) for task_run in store.list_task_runs(flow_run.id)]
    subflows = store.list_flow_runs(limit=None, parent_flow_run_id=flow_run.id)
    if as_json:
        echo_json(
            {
                "flow_run": flow_run.to_dict(),
                "states": [_state_json(state) for state in states],
                "task_runs": [
                    {**task_run.to_dict(), "states": [_state_json(state) for state in task_states]}
                    for task_run, task_states in task_runs
                ],
                "subflow_runs": [subflow.to_dict() for subflow in subflows],
            }
        )
        return
    out = console()
    out.print(_flow_run_summary(flow_run))
    out.print(_state_history(states, out.width))
    if task_runs:
        out.print(_task_runs_table(task_runs, out.width))
    else:
        out.print("No task runs recorded for this flow run.")
    if subflows:
        out.print(_subflows_table(subflows, out.width))
    results = [("flow run", flow_run.id, flow_run.name, _last_result(states))]
    results += [
        ("task run", task_run.id, task_run.name, _last_result(task_states))
        for task_run, task_states in task_runs
    ]
    _print_locations(results)


def _show_task_run(store: RunStore, task_run: TaskRunRecord, as_json: bool) -> None:
    states = store.list_states(task_run.id)
    if as_json:
        echo_json({"task_run": task_run.to_dict(), "states": [_state_json(state) for state in states]})
        return
    out = console()
    out.print(_task_run_summary(task_run))
    out.print(_state_history(states, out.width))
    _print_locations([("task run", task_run.id, task_run.name, _last_result(states))])


def _state_json(state: StateRecord) -> dict[str, Any]:
    fields = state.to_dict()
    path = None if state.result is None else result_path(state.result)
    if path is not None:
        fields["result"]["path"] = str(path)
    return fields


def _last_result(states: list[StateRecord]) -> ResultRef | None:
    results = [state.result for state in states if state.result is not None]
    return results[-1] if results else None


def _print_locations(results: list[tuple[str, str, str, ResultRef | None]]) -> None:
    """Each persisted result's location, whole, on a line of its own (under a line naming its
    run), so that it can be copied or piped to `ferroflow results inspect`."""
    persisted = [
        (kind, run_id, name, ref) for kind, run_id, name, ref in results if ref and ref.kind == "persisted"
    ]
    if not persisted:
        return
    click.echo("\nResults (`ferroflow results inspect` takes a location or a key):")
    for kind, run_id, name, reference in persisted:
        click.echo(f"{kind} {short_id(run_id)} {name}, {reference.serializer}, key {reference.key}:")
        click.echo(location(reference))


def _run_summary(title: str, run: FlowRunRecord | TaskRunRecord) -> Table:
    summary = Table.grid(padding=(0, 2))
    summary.add_column(no_wrap=True)
    summary.add_column(overflow="fold")  # values (paths, ids) whole, folded, never cut with an ellipsis
    summary.add_row(Text(title, style="bold"), run.id)
    summary.add_row("Name", run.name)
    return summary


def _flow_run_summary(run: FlowRunRecord) -> Table:
    summary = _run_summary("Flow run", run)
    summary.add_row("Flow", run.flow_name)
    _add_progress(summary, run)
    if run.parent_flow_run_id:
        summary.add_row("Parent flow run", run.parent_flow_run_id)
    return summary


def _task_run_summary(run: TaskRunRecord) -> Table:
    summary = _run_summary("Task run", run)
    summary.add_row("Task", run.task_name)
    summary.add_row("Flow run", run.flow_run_id or "-")
    _add_progress(summary, run)
    return summary


def _add_progress(summary: Table, run: FlowRunRecord | TaskRunRecord) -> None:
    summary.add_row("State", state_text(run.state_type, run.state_name))
    summary.add_row("Run count", str(run.run_count))
    summary.add_row("Start", local_time(run.start_time))
    summary.add_row("End", local_time(run.end_time))
    summary.add_row("Duration", duration(run.duration_seconds))
    summary.add_row("Parameters", run.parameters or "-")


def _result_cell(reference: ResultRef | None) -> Cell:
    """A result as a table shows it: the beginning of its key (which `results inspect` takes), or
    a literal's value; the whole location is printed under the tables."""
    if reference is None:
        return ""
    if reference.kind == "literal":
        return f"literal {reference.value_json}"
    return f"{short_key(reference.key or '')} {reference.serializer}"


def _state_history(states: list[StateRecord], width: int) -> Table:
    columns = [
        Column("Time"),
        Column("State"),
        Column("Message", "text", priority=1),
        Column("Result", "text"),
    ]
    rows: list[list[Cell]] = [
        [
            local_time(state.timestamp),
            state_text(state.type, state.name),
            state.message or "",
            _result_cell(state.result),
        ]
        for state in states
    ]
    return fitted_table("States", columns, rows, width)


def _task_runs_table(task_runs: list[tuple[TaskRunRecord, list[StateRecord]]], width: int) -> Table:
    columns = [
        Column("ID"),
        Column("Task run", "name"),
        Column("States", "text", priority=1),
        Column("Runs"),
        Column("Duration"),
        Column("Result", "text", priority=2),
    ]
    rows: list[list[Cell]] = [
        [
            short_id(task_run.id),
            task_run.name,
            Text(" > ").join(state_text(state.type, state.name) for state in task_states),
            str(task_run.run_count),
            duration(task_run.duration_seconds),
            _result_cell(_last_result(task_states)),
        ]
        for task_run, task_states in task_runs
    ]
    return fitted_table("Task runs", columns, rows, width)


def _subflows_table(subflows: list[FlowRunRecord], width: int) -> Table:
    columns = [
        Column("ID"),
        Column("Name", "name", priority=1),
        Column("Flow", "name"),
        Column("State"),
        Column("Duration"),
    ]
    rows: list[list[Cell]] = [
        [
            short_id(run.id),
            run.name,
            run.flow_name,
            state_text(run.state_type, run.state_name),
            duration(run.duration_seconds),
        ]
        for run in subflows
    ]
    return fitted_table("Subflow runs", columns, rows, width)


__all__ = ["runs"]
