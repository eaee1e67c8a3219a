"""`ferroflow runs`: the flow runs, task runs and states recorded in the run store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
from rich.table import Table
from rich.text import Text

from ferroflow.cli.console import (
    cli_store,
    console,
    duration,
    echo_json,
    local_time,
    short_id,
    state_text,
    table,
)
from ferroflow.cli.results import Age
from ferroflow.cli.tables import fits, narrow_first
from ferroflow.runstore import FlowRunRecord, StateRecord, TaskRunRecord


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
        flow_runs = store.list_flow_runs(limit=limit)
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
    type=Age(),
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
    columns = ["ID", "Name", "Flow", "State", "Start", "Duration"]
    rows: list[list[str | Text]] = [
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
    if not fits(columns, rows, width) and all(_has_default_name(run) for run in flow_runs):
        # Such a name only repeats the flow and the id: leave it out rather than wrap every row.
        name_index = columns.index("Name")
        del columns[name_index]
        for row in rows:
            del row[name_index]
    runs_table = table("Flow runs", *columns, wrap=("Name", "Flow"))
    for row in rows:
        runs_table.add_row(*row)
    if "Name" in columns:
        narrow_first(runs_table, rows, width, narrowed="Name", kept="Flow")
    return runs_table


def _has_default_name(run: FlowRunRecord) -> bool:
    """Whether the run has the name the engine gives when none is chosen: `<flow>-<short id>`."""
    return run.name == f"{run.flow_name}-{short_id(run.id)}"


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def show_run(run_id: str, as_json: bool) -> None:
    """Show a flow run: its states, and its task runs with their states and results.

    RUN_ID is the flow run's id, or enough of its beginning to match only one run
    (as `ferroflow runs ls` shows it).

    \b
    Examples:
      ferroflow runs show 3f2a9c1e
      ferroflow runs show 3f2a --json
    """
    with cli_store() as store:
        flow_run = store.get_flow_run(run_id)
        states = store.list_states(flow_run.id)
        task_runs = [
            (task_run, store.list_states(task_run.id)) for task_run in store.list_task_runs(flow_run.id)
        ]
        subflows = store.list_flow_runs(limit=None, parent_flow_run_id=flow_run.id)
    if as_json:
        echo_json(
            {
                "flow_run": flow_run.to_dict(),
                "states": [state.to_dict() for state in states],
                "task_runs": [
                    {**task_run.to_dict(), "states": [state.to_dict() for state in task_states]}
                    for task_run, task_states in task_runs
                ],
                "subflow_runs": [subflow.to_dict() for subflow in subflows],
            }
        )
        return
    out = console()
    out.print(_summary(flow_run))
    out.print(_state_history(states))
    if task_runs:
        out.print(_task_runs_table(task_runs))
    else:
        out.print("No task runs recorded for this flow run.")
    if subflows:
        out.print(_subflows_table(subflows))


def _summary(run: FlowRunRecord) -> Table:
    summary = Table.grid(padding=(0, 2))
    summary.add_row(Text("Flow run", style="bold"), run.id)
    summary.add_row("Name", run.name)
    summary.add_row("Flow", run.flow_name)
    summary.add_row("State", state_text(run.state_type, run.state_name))
    summary.add_row("Run count", str(run.run_count))
    summary.add_row("Start", local_time(run.start_time))
    summary.add_row("End", local_time(run.end_time))
    summary.add_row("Duration", duration(run.duration_seconds))
    summary.add_row("Parameters", run.parameters or "-")
    if run.parent_flow_run_id:
        summary.add_row("Parent flow run", run.parent_flow_run_id)
    return summary


def _state_history(states: list[StateRecord]) -> Table:
    history = table("States", "Time", "State", "Message", "Result", wrap=("Message", "Result"))
    for state in states:
        history.add_row(
            local_time(state.timestamp),
            state_text(state.type, state.name),
            state.message or "",
            state.result.describe() if state.result else "",
        )
    return history


def _task_runs_table(task_runs: list[tuple[TaskRunRecord, list[StateRecord]]]) -> Table:
    listing = table(
        "Task runs",
        "ID",
        "Task run",
        "States",
        "Runs",
        "Duration",
        "Result",
        wrap=("Task run", "States", "Result"),
    )
    for task_run, task_states in task_runs:
        history = Text(" > ").join(state_text(state.type, state.name) for state in task_states)
        results = [state.result for state in task_states if state.result is not None]
        listing.add_row(
            short_id(task_run.id),
            task_run.name,
            history,
            str(task_run.run_count),
            duration(task_run.duration_seconds),
            results[-1].describe() if results else "",
        )
    return listing


def _subflows_table(subflows: list[FlowRunRecord]) -> Table:
    listing = table("Subflow runs", "ID", "Name", "Flow", "State", "Duration", wrap=("Name", "Flow"))
    for run in subflows:
        listing.add_row(
            short_id(run.id),
            run.name,
            run.flow_name,
            state_text(run.state_type, run.state_name),
            duration(run.duration_seconds),
        )
    return listing


__all__ = ["runs"]
