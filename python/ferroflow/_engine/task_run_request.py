"""`TaskRunRequest`: one task run described in a picklable form, so that it can execute in
another process (a process pool, a cluster worker) and come back as a small final state.

It holds what the run needs and nothing of the flow run's live objects: the task, its inputs
with futures and states already replaced by their values, the run's identity, its result
factory (storage and serializer, as descriptions), a persisted result an earlier attempt of the
flow run left for it, and the settings in force where the flow runs. The task itself pickles
with cloudpickle (a function defined in `__main__` or a notebook travels by value).
`ferroflow._engine.task_engine.execute_task_run` runs one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ferroflow._engine.definitions import TaskDefinition
from ferroflow.results import BaseResult, ResultFactory
from ferroflow.settings import Settings


@dataclass(frozen=True, slots=True)
class TaskRunIdentity:
    """Who a task run is: the same on every worker it may run on."""

    task_run_id: uuid.UUID
    task_name: str
    task_key: str
    dynamic_key: int
    flow_run_id: uuid.UUID
    flow_name: str = "detached"
    flow_run_name: str | None = None


@dataclass(frozen=True, slots=True)
class TaskRunRequest:
    task: TaskDefinition
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    identity: TaskRunIdentity
    result_factory: ResultFactory
    earlier_result: BaseResult | None
    """The persisted result an earlier attempt of the flow run got for this run, if any."""
    refresh_cache: bool
    """The flow run's FERROFLOW_TASKS_REFRESH_CACHE (a task's own `refresh_cache` wins)."""
    settings: Settings
    log_prints: bool = False
    """Whether the flow run logs its prints (the task's own `log_prints` wins)."""
