"""`@task`: functions whose calls inside a flow become task runs with states and results."""

from __future__ import annotations

import datetime
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, overload

from ferroflow._engine import task_engine
from ferroflow._engine.inputs import unmapped
from ferroflow._engine.options import (
    check_callable_or_none,
    check_option_names,
    check_persistence,
    check_retries,
    check_retry_delay,
    check_timeout,
    describe,
)
from ferroflow.cache_keys import task_input_hash, task_input_hash_blake3
from ferroflow.exceptions import CachedResultUnavailableWarning, CacheKeyFunctionError, TaskRunTimeoutError

R = TypeVar("R")

# The options `with_options` may change: every keyword argument of `Task.__init__` but `fn`.
_TASK_OPTIONS = (
    "name",
    "description",
    "tags",
    "version",
    "cache_key_fn",
    "cache_expiration",
    "refresh_cache",
    "retries",
    "retry_delay_seconds",
    "timeout_seconds",
    "persist_result",
    "result_storage",
    "result_serializer",
    "cache_result_in_memory",
)


class Task(Generic[R]):
    """A function whose calls inside a flow run become task runs.

    Calling it (`my_task(x)`) runs it and returns its value (or raises its exception);
    `my_task(x, return_state=True)` returns the run's final `State`; `my_task.submit(x)` runs
    it on the flow's task runner and returns a `TaskFuture`; `my_task.map(xs)` submits one run
    per item. In async code, calls of async tasks and `submit`/`map` must be awaited.

    The result options (`persist_result`, `result_storage`, `result_serializer`,
    `cache_result_in_memory`, `cache_key_fn`, `cache_expiration`, `refresh_cache`) are kept as
    attributes; the result layer reads them from here.
    """

    _run_kind = "Task run"
    _timeout_error = TaskRunTimeoutError

    def __init__(
        self,
        fn: Callable[..., R],
        name: str | None = None,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        version: str | None = None,
        cache_key_fn: Callable[..., str | None] | None = None,
        cache_expiration: datetime.timedelta | None = None,
        refresh_cache: bool | None = None,
        retries: int = 0,
        retry_delay_seconds: float | Sequence[float] = 0,
        timeout_seconds: float | None = None,
        persist_result: bool | None = None,
        result_storage: Any = None,
        result_serializer: Any = None,
        cache_result_in_memory: bool = True,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@task decorates a function; got {fn!r}.")
        self.fn = fn
        self.isasync = inspect.iscoroutinefunction(fn)
        self.name = name if name is not None else fn.__name__
        owner = describe("Task", self.name)
        self.description = description if description is not None else inspect.getdoc(fn)
        self.tags = set(tags or ())
        self.version = version
        self.cache_key_fn = check_callable_or_none(owner, "cache_key_fn", cache_key_fn)
        if cache_expiration is not None and not isinstance(cache_expiration, datetime.timedelta):
            raise TypeError(
                f"{owner}: cache_expiration must be a datetime.timedelta or None, not {cache_expiration!r}."
            )
        self.cache_expiration = cache_expiration
        self.refresh_cache = refresh_cache
        self.retries = check_retries(owner, retries)
        self.retry_delay_seconds = check_retry_delay(owner, retry_delay_seconds)
        self.timeout_seconds = check_timeout(owner, timeout_seconds)
        self.persist_result = persist_result
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self.cache_result_in_memory = cache_result_in_memory
        # cache_result_in_memory=False with persist_result=False is allowed: the spec makes such a
        # result unavailable downstream (MissingResult on access), not an error at definition.
        check_persistence(owner, persist_result, {"cache_key_fn": cache_key_fn is not None})
        # Identifies the task across runs of a flow (with the call's dynamic key, a task run).
        self.task_key = f"{fn.__module__}.{fn.__qualname__}"
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def with_options(self, **options: Any) -> Task[R]:
        """A copy of this task with some options changed, e.g.
        `my_task.with_options(retries=3, name="load-again")`."""
        check_option_names("with_options()", "task", options, _TASK_OPTIONS)
        current = {option: getattr(self, option) for option in _TASK_OPTIONS}
        return Task(self.fn, **{**current, **options})

    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        return task_engine.call_task(self, args, kwargs, return_state)

    def submit(self, *args: Any, wait_for: Sequence[Any] | None = None, **kwargs: Any) -> Any:
        """Run on the flow's task runner; returns a `TaskFuture` (awaitable in async code).

        `wait_for`: futures or states that must finish first, without passing their values.
        """
        return task_engine.submit_task(self, args, kwargs, tuple(wait_for or ()))

    def map(self, *args: Any, wait_for: Sequence[Any] | None = None, **kwargs: Any) -> Any:
        """Submit one run per item of the iterable arguments (all of the same length); other
        arguments, and those wrapped in `unmapped(...)`, are passed unchanged to every run.
        Strings and bytes count as single values. Returns a list of `TaskFuture`s (awaitable in
        async code)."""
        return task_engine.map_task(self, args, kwargs, tuple(wait_for or ()))

    def __repr__(self) -> str:
        return f"Task(name={self.name!r}, fn={self.fn.__qualname__})"


@overload
def task(__fn: Callable[..., R]) -> Task[R]: ...


@overload
def task(__fn: None = None, **options: Any) -> Callable[[Callable[..., R]], Task[R]]: ...


def task(__fn: Callable[..., R] | None = None, **options: Any) -> Any:
    """Make a function a task: `@task`, or `@task(retries=2, ...)` with the options of `Task`."""
    if __fn is not None:
        return Task(__fn, **options)
    check_option_names("@task", "task", options, _TASK_OPTIONS)
    return functools.partial(Task, **options)


__all__ = [
    "CacheKeyFunctionError",
    "CachedResultUnavailableWarning",
    "Task",
    "task",
    "task_input_hash",
    "task_input_hash_blake3",
    "unmapped",
]
