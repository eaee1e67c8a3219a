"""Run contexts: what code running inside a flow or task run can learn about that run.

The engine sets a `FlowRunContext` for the duration of a flow run and a `TaskRunContext` for a
task run, in `contextvars`, so they follow the code into worker threads and asyncio tasks.
`get_run_context()` returns the innermost one.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import threading
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ferroflow.exceptions import MissingContextError

if TYPE_CHECKING:
    import logging

    from ferroflow._engine.loops import EventLoopThread
    from ferroflow._engine.runs import FlowRun, TaskRun
    from ferroflow.flows import Flow
    from ferroflow.futures import TaskFuture
    from ferroflow.results import BaseResult, ResultFactory
    from ferroflow.runstore import RunStore
    from ferroflow.task_runners import BaseTaskRunner
    from ferroflow.tasks import Task

_flow_run_context: ContextVar[FlowRunContext | None] = ContextVar(
    "ferroflow_flow_run_context", default=None
)
_task_run_context: ContextVar[TaskRunContext | None] = ContextVar(
    "ferroflow_task_run_context", default=None
)


class FlowRunContext:
    """The flow run in progress: its flow, run record, result factory and task runner."""

    __slots__ = (
        "flow",
        "flow_run",
        "result_factory",
        "task_runner",
        "is_async",
        "_loop",
        "_loop_thread",
        "_loop_lock",
        "_task_factories",
        "_dynamic_keys",
        "child_runs",
        "futures",
        "logger",
        "_earlier_results",
        "_run_store",
        "_refresh_cache",
        "_owns_run_store",
    )

    def __init__(
        self,
        flow: Flow,
        flow_run: FlowRun,
        result_factory: ResultFactory,
        task_runner: BaseTaskRunner,
        *,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.flow = flow
        self.flow_run = flow_run
        self.result_factory = result_factory
        self.task_runner = task_runner
        self.is_async = loop is not None
        # An async flow runs its async tasks on its own loop; a sync flow starts a loop thread
        # the first time it meets an async task (most sync flows never do).
        self._loop = loop
        self._loop_thread: EventLoopThread | None = None
        self._loop_lock = threading.Lock()
        self._task_factories: dict[Task, ResultFactory] = {}
        self._dynamic_keys: dict[str, itertools.count[int]] = {}
        self.child_runs: list[TaskRun | FlowRun] = []
        self.futures: list[TaskFuture] = []
        self.logger: logging.LoggerAdapter[logging.Logger] | None = None
        # Persisted results of the earlier attempts' task and subflow runs, by identity.
        self._earlier_results: dict[tuple[str, int], BaseResult] = {}
        self._run_store: RunStore | None = None
        self._refresh_cache: bool | None = None
        self._owns_run_store = False

    @staticmethod
    def get() -> FlowRunContext | None:
        return _flow_run_context.get()

    def start_attempt(self) -> None:
        """Forget the previous attempt's task runs, keeping their persisted results: a flow
        retry numbers its task runs from zero again, so each gets the same identity as before
        and finds the result it had (`earlier_attempt_result`)."""
        from ferroflow._engine.runs import run_identity
        from ferroflow.results import PersistedResult
        from ferroflow.states import StateType

        for run in self.child_runs:
            state = run.state
            if state.type is StateType.COMPLETED and isinstance(state.data, PersistedResult):
                self._earlier_results[run_identity(run)] = state.data
        self._dynamic_keys.clear()
        self.child_runs = []
        self.futures = []

    def earlier_attempt_result(self, identity: tuple[str, int]) -> BaseResult | None:
        """The persisted result an earlier attempt of this flow run got for the task or subflow
        run with this identity (`ferroflow._engine.runs.run_identity`), if any."""
        if not self._earlier_results:
            return None
        return self._earlier_results.get(identity)

    def run_store(self) -> RunStore:
        """The run store of this flow run (the task cache lives there): its recorder's, or,
        when runs are not recorded, one taken from the process's stores on first use and given
        back when the flow run ends (`close`)."""
        if self._run_store is None:
            recorder = self.flow_run.recorder
            if recorder is not None:
                self._run_store = recorder.store
            else:
                from ferroflow._engine.recording import stores

                self._run_store = stores.acquire()
                self._owns_run_store = True
        return self._run_store

    def refresh_cache_by_default(self) -> bool:
        """The FERROFLOW_TASKS_REFRESH_CACHE setting, read once per flow run (reading settings
        costs more than the rest of a cache lookup's bookkeeping)."""
        if self._refresh_cache is None:
            from ferroflow.settings import get_current_settings

            self._refresh_cache = bool(get_current_settings().tasks_refresh_cache)
        return self._refresh_cache

    def next_dynamic_key(self, task_key: str) -> int:
        """0, 1, 2, ... for successive runs of one task within this flow run attempt."""
        counter = self._dynamic_keys.get(task_key)
        if counter is None:
            counter = self._dynamic_keys.setdefault(task_key, itertools.count())
        return next(counter)  # next() on itertools.count is atomic under the GIL

    def task_result_factory(self, task: Task) -> ResultFactory:
        """The factory for `task`'s runs, made once per flow run (it depends only on the
        task's options and this flow run's factory)."""
        factory = self._task_factories.get(task)
        if factory is None:
            # Task runs on several threads may both get here; making it twice is harmless.
            from ferroflow.results import ResultFactory

            factory = ResultFactory.from_task(task, self.result_factory)
            self._task_factories[task] = factory
        return factory

    def event_loop(self) -> asyncio.AbstractEventLoop:
        """The loop this flow run's async tasks run on."""
        if self._loop is not None:
            return self._loop
        with self._loop_lock:
            if self._loop_thread is None:
                from ferroflow._engine.loops import EventLoopThread

                self._loop_thread = EventLoopThread(name=f"ferroflow-{self.flow_run.name}")
            return self._loop_thread.loop

    def run_coroutine(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run an async task body from this (sync) flow run's thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.event_loop()).result()

    def close(self) -> None:
        if self._loop_thread is not None:
            self._loop_thread.close()
        if self._owns_run_store and self._run_store is not None:
            from ferroflow._engine.recording import stores

            stores.release(self._run_store)
            self._owns_run_store = False


class TaskRunContext:
    """The task run in progress. `parameters` binds the call's arguments to the task's
    signature on first use (cache key functions read it)."""

    __slots__ = (
        "task",
        "task_run",
        "flow_run_context",
        "result_factory",
        "args",
        "kwargs",
        "is_async",
        "_parameters",
        "logger",
        "cache_key",
    )

    def __init__(
        self,
        task: Task,
        task_run: TaskRun,
        flow_run_context: FlowRunContext,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        is_async: bool,
    ) -> None:
        self.task = task
        self.task_run = task_run
        self.flow_run_context = flow_run_context
        self.result_factory: ResultFactory | None = None
        self.args = args
        self.kwargs = kwargs
        self.is_async = is_async
        self._parameters: dict[str, Any] | None = None
        self.logger: logging.LoggerAdapter[logging.Logger] | None = None
        # The key this run's result is cached under (set when the task has a cache_key_fn).
        self.cache_key: str | None = None

    @staticmethod
    def get() -> TaskRunContext | None:
        return _task_run_context.get()

    @property
    def flow_run(self) -> FlowRun:
        return self.flow_run_context.flow_run

    @property
    def parameters(self) -> dict[str, Any]:
        """The call's arguments by parameter name (defaults applied), futures resolved."""
        if self._parameters is None:
            bound = _signature(self.task.fn).bind(*self.args, **self.kwargs)
            bound.apply_defaults()
            self._parameters = dict(bound.arguments)
        return self._parameters

    @property
    def identity(self) -> tuple[str, str, int]:
        """(flow run id, task key, dynamic key): the same for a task call on every retry of
        its flow run — the key under which a prior attempt's result can be found."""
        run = self.task_run
        return (str(run.flow_run_id), run.task_key, run.dynamic_key)


_signatures: dict[Any, inspect.Signature] = {}


def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    """`inspect.signature(fn)`, made once per function: building it is most of the cost of
    binding a call's parameters, which cache key functions do for every call."""
    try:
        return _signatures[fn]
    except KeyError:
        signature = _signatures[fn] = inspect.signature(fn)
        return signature
    except TypeError:  # an unhashable callable
        return inspect.signature(fn)


def get_run_context() -> TaskRunContext | FlowRunContext:
    """The innermost run in progress: the task run if inside one, else the flow run."""
    context: TaskRunContext | FlowRunContext | None = _task_run_context.get()
    if context is None:
        context = _flow_run_context.get()
    if context is None:
        raise MissingContextError(
            "No flow or task run is in progress here. get_run_context() works only in code that "
            "runs inside a @flow or @task function."
        )
    return context


def set_task_run_context(context: TaskRunContext | None) -> Callable[[], None]:
    """Enter a task run context; returns the function that leaves it."""
    token = _task_run_context.set(context)
    return lambda: _task_run_context.reset(token)


def set_flow_run_context(context: FlowRunContext) -> Callable[[], None]:
    """Enter a flow run context (leaving any task run context); returns the function that
    leaves it."""
    flow_token = _flow_run_context.set(context)
    task_token = _task_run_context.set(None)

    def leave() -> None:
        _task_run_context.reset(task_token)
        _flow_run_context.reset(flow_token)

    return leave


__all__ = ["FlowRunContext", "TaskRunContext", "get_run_context"]
