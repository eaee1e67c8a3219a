"""The runner interface: the work the engine hands a task runner (`TaskRunCall`) and what it
needs from the runner (`BaseTaskRunner`).

The engine hands a runner ready-made work, a `TaskRunCall`: calling it performs a whole task run
(state changes, retries, result creation) in this process, in the run context of the flow, and
returns the run's final `State`. The same call also describes itself in a picklable form
(`request`) together with the function that executes such a description in any process
(`execute`), which is what a runner that sends work to other processes ships. A runner only
decides where the run executes and returns a `concurrent.futures.Future` of its final state.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import enum
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, Self

from ferroflow.states import State


class TaskRunCall(Protocol):
    """One task run, ready to execute (made by the engine).

    - `call()` runs it here, in the flow run's context, and returns its final state.
    - `request` describes it: the task, its resolved inputs, the run's identity, its result
      configuration and the settings in force; it pickles (with cloudpickle for the task).
    - `execute(request)` runs such a description in any process, returning a small final
      state: a persisted result travels back as its reference, not its value.
    - `report(request, upstream_states)` does the same and returns a `TaskRunReport` (final
      state, the states before it, name, log records); a runner whose future holds a report
      lets the engine record those states and emit those records in the flow's process.
    - `upstream` lists the futures among the run's inputs; `deferred_request(upstream)`
      describes the run before they finished, with markers that the final states given to
      `report` replace (so a cluster can schedule the dependencies itself).
    """

    @property
    def request(self) -> Any: ...
    @property
    def execute(self) -> Callable[[Any], State]: ...
    @property
    def report(self) -> Callable[..., Any]: ...
    @property
    def upstream(self) -> list[Any]: ...
    @property
    def task_run(self) -> Any: ...
    def deferred_request(self, upstream: list[Any]) -> Any: ...
    def __call__(self) -> State: ...


AsyncTaskRun = Callable[[], Coroutine[Any, Any, State]]


class TaskConcurrencyType(enum.Enum):
    SEQUENTIAL = "sequential"
    CONCURRENT = "concurrent"
    PARALLEL = "parallel"


class BaseTaskRunner(abc.ABC):
    """What the engine needs from a task runner."""

    concurrency_type: TaskConcurrencyType
    executes_requests: bool = False
    """True for a runner that executes every task run (async ones too) elsewhere from its
    request: the engine hands it `TaskRunCall`s for both and never calls `submit_coroutine`."""
    schedules_upstream: bool = False
    """True for a runner that takes a run before its upstream runs have finished and lets its
    cluster schedule them as dependencies (`TaskRunCall.deferred_request`); otherwise the
    engine submits a run once its upstream runs have finished."""

    @property
    def name(self) -> str:
        return type(self).__name__.removesuffix("TaskRunner").lower()

    def duplicate(self) -> BaseTaskRunner:
        """A fresh, unstarted runner with the same configuration (one per flow run)."""
        return type(self)()

    def start(self) -> None:  # noqa: B027 (an optional hook: a runner without resources keeps it)
        """Acquire resources before the flow run's first submission."""

    def check_result_storage(self, result_factory: Any) -> None:  # noqa: B027 (an optional hook)
        """Called after `start()` with the flow run's result factory: a runner whose workers
        cannot reach its storage raises here, before any task runs."""

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


class PoolTaskRunner(BaseTaskRunner):
    """A runner whose task runs execute in a `concurrent.futures` executor of up to `max_workers`,
    made on first use (flows that submit nothing pay nothing) and shut down with the flow run."""

    def __init__(self, max_workers: int | None) -> None:
        self.max_workers = max_workers
        self._executor: concurrent.futures.Executor | None = None
        self._lock = threading.Lock()
        self._shut_down = False

    @abc.abstractmethod
    def _new_executor(self) -> concurrent.futures.Executor:
        """The executor this runner's task runs execute in."""

    def duplicate(self) -> Self:
        return type(self)(max_workers=self.max_workers)

    def _pool(self) -> concurrent.futures.Executor:
        with self._lock:
            if self._shut_down:
                # Only a flow function abandoned by its timeout can still submit here.
                raise RuntimeError(
                    "This task runner was shut down: its flow run has ended (it timed out), so it "
                    "accepts no more task runs."
                )
            if self._executor is None:
                self._executor = self._new_executor()
            return self._executor

    def _forget_pool(self) -> None:
        """Make the next submission start a new executor (this one is broken)."""
        with self._lock:
            self._executor = None

    def shutdown(self) -> None:
        with self._lock:
            self._shut_down = True
            executor, self._executor = self._executor, None
        if executor is not None:
            # Every submitted run has finished by now, except after a flow timeout; then runs
            # that have not started are dropped and running ones are not waited for (threads
            # cannot be stopped; worker processes exit when they finish), so that the timeout
            # really ends the flow run.
            executor.shutdown(wait=False, cancel_futures=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_workers={self.max_workers})"


def finished_future(state: State) -> concurrent.futures.Future[State]:
    """A future that already holds `state` (for runs that finished during `submit`)."""
    future: concurrent.futures.Future[State] = concurrent.futures.Future()
    future.set_result(state)
    return future


def _upstream_states(run: TaskRunCall) -> tuple[list[Any], tuple[State, ...]]:
    """The upstream futures of `run` (all finished) and their final states."""
    upstream = run.upstream
    return upstream, tuple(future.state for future in upstream)
