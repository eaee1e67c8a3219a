"""Run contexts: what code running inside a flow or task run can learn about that run.

The engine sets a `FlowRunContext` for the duration of a flow run and a `TaskRunContext` for a
task run, in `contextvars`, so they follow the code into worker threads and asyncio tasks.
`get_run_context()` returns the innermost one.

They are data: the engine keeps its own bookkeeping of a flow run (attempts, earlier results,
the run store, the event loop) in one object that the flow run context carries (`engine`),
opaque to this layer.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

from ferroflow._asyncutils import flow_run_context_var, task_run_context_var
from ferroflow.exceptions import MissingContextError

if TYPE_CHECKING:
    import logging

    from ferroflow.futures import TaskFuture
    from ferroflow.results import ResultFactory
    from ferroflow.task_runners import BaseTaskRunner

_flow_run_context: ContextVar[FlowRunContext | None] = flow_run_context_var
_task_run_context: ContextVar[TaskRunContext | None] = task_run_context_var


class RunEngine(Protocol):
    """What this layer reads of the engine's bookkeeping of a flow run."""

    @property
    def child_runs(self) -> list[Any]: ...
    @property
    def futures(self) -> list[TaskFuture]: ...


class FlowRunContext:
    """The flow run in progress: its flow, run record, result factory and task runner.

    `child_runs` and `futures` are the task and subflow runs, and the futures, of the current
    attempt.
    """

    __slots__ = ("flow", "flow_run", "result_factory", "task_runner", "is_async", "engine", "logger")

    def __init__(
        self,
        flow: Any,
        flow_run: Any,
        result_factory: ResultFactory,
        task_runner: BaseTaskRunner,
        *,
        is_async: bool,
        engine: RunEngine,
    ) -> None:
        self.flow = flow
        self.flow_run = flow_run
        self.result_factory = result_factory
        self.task_runner = task_runner
        self.is_async = is_async
        # The engine's bookkeeping of this flow run (`ferroflow._engine.run_book.RunBook`).
        self.engine = engine
        self.logger: logging.LoggerAdapter[logging.Logger] | None = None

    @staticmethod
    def get() -> FlowRunContext | None:
        return _flow_run_context.get()

    @property
    def child_runs(self) -> list[Any]:
        return self.engine.child_runs

    @property
    def futures(self) -> list[TaskFuture]:
        return self.engine.futures


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
        "_bind",
        "_parameters",
        "logger",
        "cache_key",
    )

    def __init__(
        self,
        task: Any,
        task_run: Any,
        flow_run_context: FlowRunContext,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        is_async: bool,
        bind: Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], dict[str, Any]],
    ) -> None:
        self.task = task
        self.task_run = task_run
        self.flow_run_context = flow_run_context
        self.result_factory: ResultFactory | None = None
        self.args = args
        self.kwargs = kwargs
        self.is_async = is_async
        # How the engine binds a call's arguments to parameter names (defaults applied).
        self._bind = bind
        self._parameters: dict[str, Any] | None = None
        self.logger: logging.LoggerAdapter[logging.Logger] | None = None
        # The key this run's result is cached under (set when the task has a cache_key_fn).
        self.cache_key: str | None = None

    @staticmethod
    def get() -> TaskRunContext | None:
        return _task_run_context.get()

    @property
    def flow_run(self) -> Any:
        return self.flow_run_context.flow_run

    @property
    def parameters(self) -> dict[str, Any]:
        """The call's arguments by parameter name (defaults applied), futures resolved."""
        if self._parameters is None:
            self._parameters = self._bind(self.task.fn, self.args, self.kwargs)
        return self._parameters

    @property
    def identity(self) -> tuple[str, str, int]:
        """(flow run id, task key, dynamic key): the same for a task call on every retry of
        its flow run — the key under which a prior attempt's result can be found."""
        run = self.task_run
        return (str(run.flow_run_id), run.task_key, run.dynamic_key)


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


def set_task_run_context(context: TaskRunContext) -> Callable[[], None]:
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
