"""`@flow`: functions whose calls become flow runs, inside which tasks run."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, overload

from ferroflow._engine import flow_engine
from ferroflow._engine.options import (
    check_hooks,
    check_option_names,
    check_optional_bool,
    check_retries,
    check_retry_delay,
    check_run_name,
    check_timeout,
    describe,
)
from ferroflow._engine.validation import validated_parameters
from ferroflow.exceptions import FlowRunTimeoutError
from ferroflow.task_runners import BaseTaskRunner, ConcurrentTaskRunner

R = TypeVar("R")

# The options `with_options` may change: every keyword argument of `Flow.__init__` but `fn`
# (Prefect 2.x's options of a flow, all of them).
_FLOW_OPTIONS = (
    "name",
    "description",
    "version",
    "flow_run_name",
    "task_runner",
    "retries",
    "retry_delay_seconds",
    "timeout_seconds",
    "validate_parameters",
    "persist_result",
    "result_storage",
    "result_serializer",
    "cache_result_in_memory",
    "log_prints",
    "on_completion",
    "on_failure",
    "on_cancellation",
    "on_crashed",
    "on_running",
)
# Options kept under another attribute name (Prefect 2's: `validate_parameters` is a method).
_ATTRIBUTES = {"validate_parameters": "should_validate_parameters"}


class Flow(Generic[R]):
    """A function whose calls become flow runs.

    Calling it runs it and returns its value (or raises its exception); with
    `return_state=True` it returns the run's final `State`. An async flow called from async
    code returns an awaitable; called from sync code it runs to completion. A flow called
    inside another flow's run is a subflow.

    The result options (`persist_result`, `result_storage`, `result_serializer`,
    `cache_result_in_memory`) are kept as attributes; the result layer reads them from here.

    Besides Prefect 2's result options and retries: `flow_run_name` names each run (a template
    formatted with the call's parameters, "etl-{day}", or a function without arguments);
    `validate_parameters` (default True) checks and converts the parameters by the function's
    type hints with pydantic before it runs (invalid ones fail the run with
    `ParameterTypeError`); `log_prints=True` sends `print()` in the run, and in its tasks that
    do not set `log_prints=False`, to the run logger at INFO (None: as the parent flow run, else
    not); `on_running`, `on_completion`, `on_failure`, `on_cancellation`, `on_crashed` are
    lists of functions called as `hook(flow, flow_run, state)` when a run enters that state (a
    hook that raises is logged; the state stays). docs/engine.md lists every option.
    """

    _run_kind = "Flow run"
    _timeout_error = FlowRunTimeoutError

    def __init__(
        self,
        fn: Callable[..., R],
        name: str | None = None,
        description: str | None = None,
        version: str | None = None,
        flow_run_name: str | Callable[[], str] | None = None,
        task_runner: BaseTaskRunner | type[BaseTaskRunner] | None = None,
        retries: int | None = 0,
        retry_delay_seconds: float | Sequence[float] | None = 0,
        timeout_seconds: float | None = None,
        validate_parameters: bool = True,
        persist_result: bool | None = None,
        result_storage: Any = None,
        result_serializer: Any = None,
        cache_result_in_memory: bool = True,
        log_prints: bool | None = None,
        on_completion: list[Callable[..., Any]] | None = None,
        on_failure: list[Callable[..., Any]] | None = None,
        on_cancellation: list[Callable[..., Any]] | None = None,
        on_crashed: list[Callable[..., Any]] | None = None,
        on_running: list[Callable[..., Any]] | None = None,
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
        self.flow_run_name = check_run_name(owner, "flow_run_name", flow_run_name, fn)
        self.task_runner = _task_runner(owner, task_runner)
        self.retries = check_retries(owner, retries)
        self.retry_delay_seconds = check_retry_delay(owner, retry_delay_seconds)
        self.timeout_seconds = check_timeout(owner, timeout_seconds)
        self.should_validate_parameters = bool(validate_parameters)
        self.persist_result = persist_result
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self.cache_result_in_memory = cache_result_in_memory
        self.log_prints = check_optional_bool(owner, "log_prints", log_prints)
        self.on_completion = check_hooks(owner, "on_completion", on_completion)
        self.on_failure = check_hooks(owner, "on_failure", on_failure)
        self.on_cancellation = check_hooks(owner, "on_cancellation", on_cancellation)
        self.on_crashed = check_hooks(owner, "on_crashed", on_crashed)
        self.on_running = check_hooks(owner, "on_running", on_running)
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def with_options(self, **options: Any) -> Flow[R]:
        """A copy of this flow with some options changed, e.g.
        `my_flow.with_options(retries=2, task_runner=SequentialTaskRunner())`."""
        check_option_names("with_options()", "flow", options, _FLOW_OPTIONS)
        current = {option: getattr(self, _ATTRIBUTES.get(option, option)) for option in _FLOW_OPTIONS}
        return Flow(self.fn, **{**current, **options})

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """`parameters` (by name) checked against the function's type hints and converted to
        them, as a run does before calling the function; raises `ParameterTypeError` naming
        each invalid parameter."""
        return validated_parameters(describe("Flow", self.name), self.fn, parameters)

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
