"""Task runners: where the task runs of `Task.submit()` / `Task.map()` execute.

A flow picks one with `@flow(task_runner=...)`; the default is `ConcurrentTaskRunner`. Each flow
run works on its own `duplicate()` of the flow's runner, between `start()` and `shutdown()`.
Plain task calls (`my_task()`) never go through the runner: they run in the caller.

The interface is deliberately small (see docs/engine.md). The engine hands a runner ready-made
work, a `TaskRunCall`: calling it performs a whole task run (state changes, retries, result
creation) in this process, in the run context of the flow, and returns the run's final `State`.
The same call also describes itself in a picklable form (`request`) together with the function
that executes such a description in any process (`execute`), which is what a runner that sends
work to other processes ships. A runner only decides where the run executes and returns a
`concurrent.futures.Future` of its final state.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import enum
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from ferroflow.states import State


class TaskRunCall(Protocol):
    """One task run, ready to execute (made by the engine).

    - `call()` runs it here, in the flow run's context, and returns its final state.
    - `request` describes it: the task, its resolved inputs, the run's identity, its result
      configuration and the settings in force; it pickles (with cloudpickle for the task).
    - `execute(request)` runs such a description in any process, returning a small final
      state: a persisted result travels back as its reference, not its value.
    """

    @property
    def request(self) -> Any: ...
    @property
    def execute(self) -> Callable[[Any], State]: ...
    def __call__(self) -> State: ...


AsyncTaskRun = Callable[[], Coroutine[Any, Any, State]]


class TaskConcurrencyType(enum.Enum):
    SEQUENTIAL = "sequential"
    CONCURRENT = "concurrent"
    PARALLEL = "parallel"


class BaseTaskRunner(abc.ABC):
    """What the engine needs from a task runner."""

    concurrency_type: TaskConcurrencyType

    @property
    def name(self) -> str:
        return type(self).__name__.removesuffix("TaskRunner").lower()

    def duplicate(self) -> BaseTaskRunner:
        """A fresh, unstarted runner with the same configuration (one per flow run)."""
        return type(self)()

    def start(self) -> None:  # noqa: B027 (an optional hook: a runner without resources keeps it)
        """Acquire resources before the flow run's first submission."""

    def shutdown(self) -> None:  # noqa: B027 (an optional hook, like start)
        """Release resources at the end of the flow run; the engine has already waited for
        every submitted run."""

    @abc.abstractmethod
    def submit(self, run: TaskRunCall) -> concurrent.futures.Future[State]:
        """Execute `run` (a sync task run; calling it blocks while the task body runs)."""

    @abc.abstractmethod
    def submit_coroutine(
        self, run: AsyncTaskRun, loop: asyncio.AbstractEventLoop
    ) -> concurrent.futures.Future[State]:
        """Execute `run()` (an async task run) on `loop`, the flow run's event loop, which runs
        in another thread or is the loop of the calling thread (async flows)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def finished_future(state: State) -> concurrent.futures.Future[State]:
    """A future that already holds `state` (for runs that finished during `submit`)."""
    future: concurrent.futures.Future[State] = concurrent.futures.Future()
    future.set_result(state)
    return future


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


class ConcurrentTaskRunner(BaseTaskRunner):
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
        self.max_workers = max_workers
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._shut_down = False

    def duplicate(self) -> ConcurrentTaskRunner:
        return type(self)(max_workers=self.max_workers)

    def submit(self, run: TaskRunCall) -> concurrent.futures.Future[State]:
        return self._pool().submit(run)

    def submit_coroutine(
        self, run: AsyncTaskRun, loop: asyncio.AbstractEventLoop
    ) -> concurrent.futures.Future[State]:
        return asyncio.run_coroutine_threadsafe(run(), loop)

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        # Created on first use: flows that submit nothing pay nothing.
        if self._executor is None:
            with self._lock:
                if self._shut_down:
                    # Only a flow function abandoned by its timeout can still submit here.
                    raise RuntimeError(
                        "This task runner was shut down: its flow run has ended (it timed out), "
                        "so it accepts no more task runs."
                    )
                if self._executor is None:
                    self._executor = concurrent.futures.ThreadPoolExecutor(
                        max_workers=self.max_workers, thread_name_prefix="ferroflow-task"
                    )
        return self._executor

    def shutdown(self) -> None:
        # Every submitted run has finished by now, except after a flow timeout; then runs that
        # have not started are dropped and running ones are not waited for (threads cannot be
        # stopped), so that the timeout really ends the flow run.
        with self._lock:
            self._shut_down = True
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None

    def __repr__(self) -> str:
        return f"ConcurrentTaskRunner(max_workers={self.max_workers})"


__all__ = [
    "BaseTaskRunner",
    "ConcurrentTaskRunner",
    "SequentialTaskRunner",
    "TaskConcurrencyType",
    "TaskRunCall",
]
