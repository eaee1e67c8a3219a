"""`RunBook`: the engine's bookkeeping of one flow run, carried by its `FlowRunContext`.

It holds what the engine must remember while a flow run goes on: the task and subflow runs of
the current attempt and their futures, the persisted results of earlier attempts (a flow retry
reuses them), the numbering of repeated calls (dynamic keys), the task result factories, the run
store the task cache lives in, and the event loop that runs the async tasks of a sync flow.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, cast

from ferroflow._asyncutils import EventLoopThread
from ferroflow._engine.definitions import TaskDefinition
from ferroflow._engine.recording import stores
from ferroflow._engine.runs import FlowRun, TaskRun, run_identity
from ferroflow.context import FlowRunContext
from ferroflow.futures import TaskFuture
from ferroflow.results import BaseResult, PersistedResult, ResultFactory
from ferroflow.runstore import RunStore
from ferroflow.settings import get_current_settings
from ferroflow.states import StateType


class RunBook:
    """The bookkeeping of one flow run (see the module's docstring)."""

    __slots__ = (
        "flow_run",
        "result_factory",
        "child_runs",
        "futures",
        "_loop",
        "_loop_thread",
        "_loop_lock",
        "_task_factories",
        "_dynamic_keys",
        "_earlier_results",
        "_run_store",
        "_owns_run_store",
        "_refresh_cache",
        "log_prints",
        "parameters",
    )

    def __init__(
        self,
        flow_run: FlowRun,
        result_factory: ResultFactory,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.flow_run = flow_run
        self.result_factory = result_factory
        self.child_runs: list[TaskRun | FlowRun] = []
        self.futures: list[TaskFuture] = []
        # An async flow runs its async tasks on its own loop; a sync flow starts a loop thread
        # the first time it meets an async task (most sync flows never do).
        self._loop = loop
        self._loop_thread: EventLoopThread | None = None
        self._loop_lock = threading.Lock()
        self._task_factories: dict[TaskDefinition, ResultFactory] = {}
        self._dynamic_keys: dict[str, itertools.count[int]] = {}
        # Persisted results of the earlier attempts' task and subflow runs, by identity.
        self._earlier_results: dict[tuple[str, int], BaseResult] = {}
        self._run_store: RunStore | None = None
        self._owns_run_store = False
        self._refresh_cache: bool | None = None
        # Whether prints in this flow run (and its tasks that do not say) go to the run logger.
        self.log_prints = False
        # The flow run's parameters by name, for result storage key templates (`{flow_run.parameters}`).
        self.parameters: Mapping[str, Any] = {}

    def adopt(
        self,
        task: TaskDefinition,
        factory: ResultFactory,
        earlier_result: BaseResult | None,
        refresh_cache: bool,
        identity: tuple[str, int],
    ) -> None:
        """Take over what the flow run's own book knew about one task run executing here, in
        another process (`ferroflow._engine.task_engine.execute_task_run`)."""
        self._task_factories[task] = factory
        self._refresh_cache = refresh_cache
        if earlier_result is not None:
            self._earlier_results[identity] = earlier_result

    def start_attempt(self) -> None:
        """Forget the previous attempt's task runs, keeping their persisted results: a flow
        retry numbers its task runs from zero again, so each gets the same identity as before
        and finds the result it had (`earlier_attempt_result`)."""
        for run in self.child_runs:
            state = run.state
            if state.type is StateType.COMPLETED and isinstance(state.data, PersistedResult):
                self._earlier_results[run_identity(run)] = state.data
        self._dynamic_keys.clear()
        self.child_runs = []
        self.futures = []

    def earlier_attempt_result(self, identity: tuple[str, int]) -> BaseResult | None:
        """The persisted result an earlier attempt of this flow run got for the task or subflow
        run with this identity (`run_identity`), if any."""
        if not self._earlier_results:
            return None
        return self._earlier_results.get(identity)

    def forget_earlier_attempt_result(self, identity: tuple[str, int]) -> None:
        """Drop an earlier attempt's result that cannot be read back: the run runs again."""
        self._earlier_results.pop(identity, None)

    def next_dynamic_key(self, task_key: str) -> int:
        """0, 1, 2, ... for successive runs of one task within this flow run attempt."""
        counter = self._dynamic_keys.get(task_key)
        if counter is None:
            counter = self._dynamic_keys.setdefault(task_key, itertools.count())
        return next(counter)  # next() on itertools.count is atomic under the GIL

    def task_result_factory(self, task: TaskDefinition) -> ResultFactory:
        """The factory for `task`'s runs, made once per flow run (it depends only on the
        task's options and this flow run's factory)."""
        factory = self._task_factories.get(task)
        if factory is None:
            # Task runs on several threads may both get here; making it twice is harmless.
            factory = ResultFactory.from_task(task, self.result_factory)
            self._task_factories[task] = factory
        return factory

    def run_store(self) -> RunStore:
        """The run store of this flow run (the task cache lives there): its recorder's, or,
        when runs are not recorded, one taken from the process's stores on first use and given
        back when the flow run ends (`close`)."""
        if self._run_store is None:
            recorder = self.flow_run.recorder
            if recorder is not None:
                self._run_store = recorder.store
            else:
                self._run_store = stores.acquire()
                self._owns_run_store = True
        return self._run_store

    def refresh_cache_by_default(self) -> bool:
        """The FERROFLOW_TASKS_REFRESH_CACHE setting, read once per flow run (reading settings
        costs more than the rest of a cache lookup's bookkeeping)."""
        if self._refresh_cache is None:
            self._refresh_cache = bool(get_current_settings().tasks_refresh_cache)
        return self._refresh_cache

    def event_loop(self) -> asyncio.AbstractEventLoop:
        """The loop this flow run's async tasks run on."""
        if self._loop is not None:
            return self._loop
        with self._loop_lock:
            if self._loop_thread is None:
                self._loop_thread = EventLoopThread(name=f"ferroflow-{self.flow_run.name}")
            return self._loop_thread.loop

    def run_coroutine(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run an async task body from this (sync) flow run's thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.event_loop()).result()

    def commit_run_store(self) -> None:
        """Wait until what was written to the run store (a cache entry) is committed, so that
        other processes see it: a task run executing in a worker does so before it reports."""
        if self._run_store is not None:
            self._run_store.flush()

    def close(self) -> None:
        """Stop the loop thread and give back a run store taken for the task cache."""
        if self._loop_thread is not None:
            self._loop_thread.close()
        if self._owns_run_store and self._run_store is not None:
            stores.release(self._run_store)
            self._owns_run_store = False


def book_of(context: FlowRunContext) -> RunBook:
    """The book a flow run context carries (typed as the engine knows it)."""
    return cast(RunBook, context.engine)
