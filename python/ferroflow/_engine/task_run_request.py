"""`TaskRunRequest`: one task run described in a picklable form, so that it can execute in
another process (a process pool, a cluster worker) and come back as a small final state.

It holds what the run needs and nothing of the flow run's live objects: the task, its inputs
with futures and states already replaced by their values, the run's identity, its result
factory (storage and serializer, as descriptions), a persisted result an earlier attempt of the
flow run left for it, and the settings in force where the flow runs. The task itself pickles
with cloudpickle (a function defined in `__main__` or a notebook travels by value).
`ferroflow._engine.task_engine.execute_task_run` runs one; `report_task_run` runs one and
hands back a `TaskRunReport`. A request sent before its upstream runs finished holds
`UpstreamInput` markers where their values go.

Most of a request's bytes are the same for every run of one task in one flow run (the task, its
result factory, the settings, most of the identity): `TaskRunRequest.parted` splits them off as
`RequestCommons`, so that a runner can send them once to each process and each request without
them.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

from ferroflow._engine.definitions import TaskDefinition
from ferroflow.results import BaseResult, ResultFactory
from ferroflow.settings import Settings
from ferroflow.states import State


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
    wait_for: tuple[Any, ...] = ()
    """`submit(wait_for=...)` dependencies not finished when the run was sent, as
    `UpstreamInput` markers (their failure makes the run NotReady)."""
    log_level: int = 0
    """The lowest level the flow's process logs run records at: a worker that has not configured
    logging still hands those records back (0: whatever the worker's loggers pass)."""

    def parted(self) -> tuple[RequestCommons, TaskRunRequest]:
        """The parts this request shares with every run of its task in its flow run (the task,
        its result factory and the settings, the same objects for each, which a runner can
        recognize by identity; the run's identity but its id and dynamic key), and the request
        without them, which `RequestCommons.complete` makes whole again."""
        identity = self.identity
        commons = RequestCommons(
            self.task,
            self.result_factory,
            self.settings,
            dataclasses.replace(identity, task_run_id=_NO_RUN_ID, dynamic_key=0),
        )
        left_out = cast(Any, None)
        own_identity = cast(Any, (identity.task_run_id.bytes, identity.dynamic_key))
        return commons, dataclasses.replace(
            self, task=left_out, result_factory=left_out, settings=left_out, identity=own_identity
        )


_NO_RUN_ID = uuid.UUID(int=0)


@dataclass(frozen=True, slots=True)
class RequestCommons:
    """What the requests of one task's runs in one flow run share: the task (with its function,
    by value for one defined in `__main__`), its result factory, the settings in force, and the
    runs' identity but their ids and dynamic keys (`identity`)."""

    task: TaskDefinition
    result_factory: ResultFactory
    settings: Settings
    identity: TaskRunIdentity

    def complete(self, request: TaskRunRequest) -> TaskRunRequest:
        """`request` (made by `TaskRunRequest.parted`) with these parts back in it."""
        run_id, dynamic_key = cast(Any, request.identity)
        identity = dataclasses.replace(
            self.identity, task_run_id=uuid.UUID(bytes=run_id), dynamic_key=dynamic_key
        )
        return dataclasses.replace(
            request,
            task=self.task,
            result_factory=self.result_factory,
            settings=self.settings,
            identity=identity,
        )


@dataclass(frozen=True, slots=True)
class UpstreamInput:
    """Stands in a request's inputs for the value of an upstream run that has not finished when
    the run is sent (a cluster schedules the dependency): `index` is the upstream's position
    among the states the executing process is given with the request; `name` is its run's
    name (a failure names it)."""

    index: int
    name: str


@dataclass(slots=True)
class TaskRunReport:
    """What a task run executed from its request hands back to the flow's process: its final
    state (a persisted result as its reference), the states it went through before it, its
    name, and the records it logged. The flow's process records the states and emits the
    records, so the run store and the flow's log read as if the run had executed there."""

    state: State
    history: list[State]
    """The states after Pending and before the final one (Running, AwaitingRetry, ...)."""
    name: str
    logs: list[logging.LogRecord] = field(default_factory=list)
