"""Names and keys that a flow or task makes from a run: `flow_run_name` / `task_run_name`
(a template formatted with the call's parameters, or a function) and `result_storage_key`
(a template formatted with `parameters`, `flow_run`, `task_run`), as in Prefect 2.

The templates were checked when the flow or task was defined (`ferroflow._engine.options`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ferroflow._engine.parameters import LazyParameters
from ferroflow._engine.run_book import book_of
from ferroflow._engine.runs import FlowRun, TaskRun
from ferroflow.context import TaskRunContext


def run_name(option: str, name: str | Callable[[], str], parameters: Mapping[str, Any]) -> str:
    """A run's name from its flow's or task's `flow_run_name` / `task_run_name`. A function
    is called without arguments, in the run's context (it may read `get_run_context()`)."""
    if isinstance(name, str):
        return name.format(**parameters)
    made = name()
    if not isinstance(made, str):
        raise TypeError(f"{option} function {name!r} returned {made!r}; it must return a string.")
    return made


def rename(run: TaskRun | FlowRun, name: str, parameters: LazyParameters) -> None:
    """Give `run` its own name before its first attempt; the run store records the run again
    under that name (with the same `parameters` it recorded at the run's creation)."""
    run.name = name
    recorder = run.recorder
    if recorder is None:
        return
    created = run.state_history[0]
    if isinstance(run, TaskRun):
        recorder.task_run_created(run, parameters, created)
    else:
        recorder.flow_run_created(run, parameters, created)


def storage_key(template: str, task_context: TaskRunContext) -> str:
    """A task's `result_storage_key` for one run, e.g. "{parameters[day]}.pickle" or
    "{flow_run.name}/{task_run.name}.pickle"."""
    flow_context = task_context.flow_run_context
    task_run = task_context.task_run
    flow_run = flow_context.flow_run
    return template.format(
        parameters=task_context.parameters,
        task_run=RunFields(
            id=str(task_run.id),
            name=task_run.name,
            task_name=task_run.task_name,
            parameters=task_context.parameters,
            run_count=task_run.run_count,
            tags=sorted(getattr(task_context.task, "tags", ())),
        ),
        flow_run=RunFields(
            id=str(flow_run.id),
            name=flow_run.name,
            flow_name=flow_run.flow_name,
            parameters=dict(book_of(flow_context).parameters),
            run_count=flow_run.run_count,
            parent_flow_run_id=None
            if flow_run.parent_flow_run_id is None
            else str(flow_run.parent_flow_run_id),
        ),
        # Deployments exist only with a Prefect server: their fields are None here.
        deployment=RunFields(),
    )


@dataclass(frozen=True)
class RunFields:
    """What a storage key template can read of a run (`{task_run.id}`), like Prefect 2's
    `prefect.runtime.flow_run` / `task_run` / `deployment`."""

    id: str | None = None
    name: str | None = None
    task_name: str | None = None
    flow_name: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    run_count: int = 0
    parent_flow_run_id: str | None = None
    tags: list[str] = field(default_factory=list)
    version: str | None = None
