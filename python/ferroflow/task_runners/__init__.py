"""Task runners: where the task runs of `Task.submit()` / `Task.map()` execute.

A flow picks one with `@flow(task_runner=...)`; the default is `ConcurrentTaskRunner`. Each flow
run works on its own `duplicate()` of the flow's runner, between `start()` and `shutdown()`.
Plain task calls (`my_task()`) never go through the runner: they run in the caller.

- `base`: the interface: `TaskRunCall` (the work the engine hands a runner), `BaseTaskRunner`.
- `in_process`: `SequentialTaskRunner`, `ConcurrentTaskRunner` (threads and the flow's event loop).
- `process_pool`: `ProcessPoolTaskRunner` (worker processes of this machine).
- `dask`: `DaskTaskRunner`; `dask_reports`: its reports and `ClusterResult` in the flow's process;
  `dask_worker`: the functions it runs on the Dask workers.

The interface is deliberately small (see docs/engine.md): a runner only decides where a task run
executes and returns a `concurrent.futures.Future` of its final state.
"""

from ferroflow.task_runners.base import AsyncTaskRun as AsyncTaskRun
from ferroflow.task_runners.base import BaseTaskRunner, TaskConcurrencyType, TaskRunCall
from ferroflow.task_runners.base import finished_future as finished_future
from ferroflow.task_runners.dask import DaskTaskRunner
from ferroflow.task_runners.dask_reports import ClusterResult
from ferroflow.task_runners.dask_worker import HeldInCluster as HeldInCluster
from ferroflow.task_runners.in_process import ConcurrentTaskRunner, SequentialTaskRunner
from ferroflow.task_runners.process_pool import ProcessPoolTaskRunner

__all__ = [
    "BaseTaskRunner",
    "ClusterResult",
    "DaskTaskRunner",
    "ProcessPoolTaskRunner",
    "ConcurrentTaskRunner",
    "SequentialTaskRunner",
    "TaskConcurrencyType",
    "TaskRunCall",
]
