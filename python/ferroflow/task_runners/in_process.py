"""The runners that execute task runs in the flow's own process: one at a time
(`SequentialTaskRunner`) or overlapping in threads and on the flow's event loop
(`ConcurrentTaskRunner`)."""

from __future__ import annotations

import asyncio
import concurrent.futures

from ferroflow.states import State
from ferroflow.task_runners.base import (
    AsyncTaskRun,
    BaseTaskRunner,
    PoolTaskRunner,
    TaskConcurrencyType,
    TaskRunCall,
    finished_future,
)


class SequentialTaskRunner(BaseTaskRunner):
    """Runs each submitted task run to completion before `submit()` returns.

    In an async flow, `await my_task.submit()` returns once the run has finished; async task
    runs execute on the flow's own loop.
    """

    concurrency_type = TaskConcurrencyType.SEQUENTIAL

    def submit(self, run: TaskRunCall) -> concurrent.futures.Future[State]:
        return finished_future(run())

    def submit_coroutine(
        self, run: AsyncTaskRun, loop: asyncio.AbstractEventLoop
    ) -> concurrent.futures.Future[State]:
        future = asyncio.run_coroutine_threadsafe(run(), loop)
        if asyncio._get_running_loop() is not loop:
            concurrent.futures.wait([future])
        # On the loop's own thread the engine awaits the run itself (it cannot block here).
        return future


class ConcurrentTaskRunner(PoolTaskRunner):
    """Runs sync task runs in a pool of threads and async task runs as asyncio tasks on the
    flow's event loop, so both overlap while they wait on I/O. (Threads share the GIL: CPU-bound
    pure-Python tasks do not run in parallel.)

    Args:
        max_workers: the most sync task runs executing at once (threads are started as
            needed). The engine never blocks a worker waiting for an upstream run: a task run
            with unfinished upstream futures is submitted when they have finished.
    """

    concurrency_type = TaskConcurrencyType.CONCURRENT

    def __init__(self, max_workers: int = 32) -> None:
        if not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1:
            raise ValueError(f"ConcurrentTaskRunner(max_workers={max_workers!r}): give a positive integer.")
        super().__init__(max_workers)

    def submit(self, run: TaskRunCall) -> concurrent.futures.Future[State]:
        return self._pool().submit(run)

    def submit_coroutine(
        self, run: AsyncTaskRun, loop: asyncio.AbstractEventLoop
    ) -> concurrent.futures.Future[State]:
        return asyncio.run_coroutine_threadsafe(run(), loop)

    def _new_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(
            max_workers=self.max_workers, thread_name_prefix="ferroflow-task"
        )
