"""`@flow`: functions whose calls become flow runs, inside which tasks run."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, overload

from ferroflow._engine import flow_engine
from ferroflow._engine.options import (
    check_option_names,
    check_persistence,
    check_retries,
    check_retry_delay,
    check_timeout,
    describe,
)
from ferroflow.exceptions import FlowRunTimeoutError
from ferroflow.task_runners import BaseTaskRunner, ConcurrentTaskRunner

R = TypeVar("R")

# The options `with_options` may change: every keyword argument of `Flow.__init__` but `fn`.
_FLOW_OPTIONS = (
    "name",
    "description",
    "version",
    "task_runner",
    "retries",
    "retry_delay_seconds",
    "timeout_seconds",
    "persist_result",
    "result_storage",
    "result_serializer",
    "cache_result_in_memory",
)


class Flow(Generic[R]):
    """A function whose calls become flow runs.

    Calling it runs it and returns its value (or raises its exception); with
    `return_state=True` it returns the run's final `State`. An async flow called from async
    code returns an awaitable; called from sync code it runs to completion. A flow called
    inside another flow's run is a subflow.

    The result options (`persist_result`, `result_storage`, `result_serializer`,
    `cache_result_in_memory`) are kept as attributes; the result layer reads them from here.
    """

    _run_kind = "Flow run"
    _timeout_error = FlowRunTimeoutError

    def __init__(
        self,
        fn: Callable[..., R],
        name: str | None = None,
        description: str | None = None,
        version: str | None = None,
        task_runner: BaseTaskRunner | type[BaseTaskRunner] | None = None,
        retries: int = 0,
        retry_delay_seconds: float | Sequence[float] = 0,
        timeout_seconds: float | None = None,
        persist_result: bool | None = None,
        result_storage: Any = None,
        result_serializer: Any = None,
        cache_result_in_memory: bool = True,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@flow decorates a function; got {fn!r}.")
        self.fn = fn
        self.isasync = inspect.iscoroutinefunction(fn)
        # Prefect 2's default flow name: the function name with dashes.
        self.name = name if name is not None else fn.__name__.replace("_", "-")
        owner = describe("Flow", self.name)
        self.description = description if description is not None else inspect.getdoc(fn)
        self.version = version
        self.task_runner = _task_runner(owner, task_runner)
        self.retries = check_retries(owner, retries)
        self.retry_delay_seconds = check_retry_delay(owner, retry_delay_seconds)
        self.timeout_seconds = check_timeout(owner, timeout_seconds)
        self.persist_result = persist_result
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self.cache_result_in_memory = cache_result_in_memory
        check_persistence(
            owner, persist_result, {"cache_result_in_memory=False": not cache_result_in_memory}
        )
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def with_options(self, **options: Any) -> Flow[R]:
        """A copy of this flow with some options changed, e.g.
        `my_flow.with_options(retries=2, task_runner=SequentialTaskRunner())`."""
        check_option_names("with_options()", "flow", options, _FLOW_OPTIONS)
        current = {option: getattr(self, option) for option in _FLOW_OPTIONS}
        return Flow(self.fn, **{**current, **options})

    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        return flow_engine.call_flow(self, args, kwargs, return_state)

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r}, fn={self.fn.__qualname__})"


def _task_runner(owner: str, runner: Any) -> BaseTaskRunner:
    if runner is None:
        return ConcurrentTaskRunner()
    if isinstance(runner, type) and issubclass(runner, BaseTaskRunner):
        return runner()
    if isinstance(runner, BaseTaskRunner):
        return runner
    raise TypeError(
        f"{owner}: task_runner={runner!r} is not a task runner; give an instance such as "
        "ConcurrentTaskRunner() or SequentialTaskRunner() from ferroflow.task_runners."
    )


@overload
def flow(__fn: Callable[..., R]) -> Flow[R]: ...


@overload
def flow(__fn: None = None, **options: Any) -> Callable[[Callable[..., R]], Flow[R]]: ...


def flow(__fn: Callable[..., R] | None = None, **options: Any) -> Any:
    """Make a function a flow: `@flow`, or `@flow(retries=2, ...)` with the options of `Flow`."""
    if __fn is not None:
        return Flow(__fn, **options)
    check_option_names("@flow", "flow", options, _FLOW_OPTIONS)
    return functools.partial(Flow, **options)


__all__ = ["Flow", "flow"]
