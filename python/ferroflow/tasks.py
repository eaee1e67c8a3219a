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
    check_cache_expiration,
    check_callable_or_none,
    check_hooks,
    check_jitter_factor,
    check_option_names,
    check_optional_bool,
    check_persistence,
    check_retries,
    check_run_name,
    check_storage_key,
    check_task_retry_delay,
    check_timeout,
    describe,
)
from ferroflow.cache_keys import task_input_hash, task_input_hash_blake3
from ferroflow.cache_policies import CachePolicy, NoCache, check_isolation_level, resolve_policy
from ferroflow.exceptions import CachedResultUnavailableWarning, CacheKeyFunctionError, TaskRunTimeoutError

R = TypeVar("R")

# The options `with_options` may change: every keyword argument of `Task.__init__` but `fn`
# (Prefect 2.x's options of a task, all of them).
_TASK_OPTIONS = (
    "name",
    "description",
    "tags",
    "version",
    "cache_key_fn",
    "cache_policy",
    "isolation_level",
    "cache_expiration",
    "refresh_cache",
    "task_run_name",
    "retries",
    "retry_delay_seconds",
    "retry_jitter_factor",
    "retry_condition_fn",
    "timeout_seconds",
    "persist_result",
    "result_storage",
    "result_storage_key",
    "result_serializer",
    "cache_result_in_memory",
    "log_prints",
    "on_completion",
    "on_failure",
    "viz_return_value",
)


class Task(Generic[R]):
    """A function whose calls inside a flow run become task runs.

    Calling it (`my_task(x)`) runs it and returns its value (or raises its exception);
    `my_task(x, return_state=True)` returns the run's final `State`; `my_task.submit(x)` runs
    it on the flow's task runner and returns a `TaskFuture`; `my_task.map(xs)` submits one run
    per item. In async code, calls of async tasks and `submit`/`map` must be awaited.

    The result options (`persist_result`, `result_storage`, `result_serializer`,
    `cache_result_in_memory`, `cache_key_fn`, `cache_expiration`, `refresh_cache`) are kept as
    attributes; the result layer reads them from here. `cache_policy` (from
    `ferroflow.cache_policies`, e.g. `INPUTS + TASK_SOURCE`) makes the cache key from parts
    instead of a `cache_key_fn` (a task takes one or the other); `isolation_level="SERIALIZABLE"`
    makes concurrent runs of one cache key compute it once (also settable on the policy).

    Besides those and retries (`retry_delay_seconds`: a number, a list, or a function of the
    number of retries such as `exponential_backoff(10)`), as in Prefect 2: `task_run_name`
    names each run (a template formatted with the call's parameters, or a function without
    arguments); `retry_jitter_factor` randomizes each retry delay up to `delay * (1 + factor)`,
    `delay` on average; `retry_condition_fn(task, task_run, state)` returning False ends a
    failed run without retrying; `result_storage_key` is the key the result is persisted under,
    a template of `parameters`, `task_run` and `flow_run` ("{parameters[day]}.pickle");
    `log_prints` (None: as the flow run) sends `print()` to the run logger; `on_completion`
    and `on_failure` are lists of functions called as `hook(task, task_run, state)` when a run
    that ran ends in that state (a hook that raises is logged; the state stays).
    `viz_return_value` is kept only: it served Prefect's `flow.visualize()`, which ferroflow
    does not have. docs/engine.md lists every option.
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
        cache_policy: CachePolicy | None = None,
        isolation_level: str | None = None,
        cache_expiration: datetime.timedelta | None = None,
        refresh_cache: bool | None = None,
        task_run_name: str | Callable[[], str] | None = None,
        retries: int | None = 0,
        retry_delay_seconds: float | Sequence[float] | Callable[[int], Sequence[float]] | None = 0,
        retry_jitter_factor: float | None = None,
        retry_condition_fn: Callable[..., bool] | None = None,
        timeout_seconds: float | None = None,
        persist_result: bool | None = None,
        result_storage: Any = None,
        result_storage_key: str | None = None,
        result_serializer: Any = None,
        cache_result_in_memory: bool = True,
        log_prints: bool | None = None,
        on_completion: list[Callable[..., Any]] | None = None,
        on_failure: list[Callable[..., Any]] | None = None,
        viz_return_value: Any = None,
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
        # The policy as given (None with a cache_key_fn alone, which the engine calls as before).
        resolve_policy(cache_policy, self.cache_key_fn, owner)
        self.cache_policy = cache_policy
        self.isolation_level = check_isolation_level(owner, isolation_level)
        self.cache_expiration = check_cache_expiration(owner, cache_expiration)
        self.refresh_cache = refresh_cache
        self.task_run_name = check_run_name(owner, "task_run_name", task_run_name, fn)
        self.retries = check_retries(owner, retries)
        self.retry_delay_seconds = check_task_retry_delay(owner, retry_delay_seconds, self.retries)
        self.retry_jitter_factor = check_jitter_factor(owner, retry_jitter_factor)
        self.retry_condition_fn = check_callable_or_none(owner, "retry_condition_fn", retry_condition_fn)
        self.timeout_seconds = check_timeout(owner, timeout_seconds)
        self.persist_result = persist_result
        self.result_storage = result_storage
        self.result_storage_key = check_storage_key(owner, result_storage_key)
        self.result_serializer = result_serializer
        self.cache_result_in_memory = cache_result_in_memory
        self.log_prints = check_optional_bool(owner, "log_prints", log_prints)
        self.on_completion = check_hooks(owner, "on_completion", on_completion)
        self.on_failure = check_hooks(owner, "on_failure", on_failure)
        # Prefect drew it for a task in `flow.visualize()`; ferroflow keeps it for code that reads it.
        self.viz_return_value = viz_return_value
        # cache_result_in_memory=False with persist_result=False is allowed: the spec makes such a
        # result unavailable downstream (MissingResult on access), not an error at definition.
        check_persistence(
            owner,
            persist_result,
            {"cache_key_fn": cache_key_fn is not None, "cache_policy": _caches(cache_policy)},
        )
        # Identifies the task across runs of a flow (with the call's dynamic key, a task run).
        self.task_key = f"{fn.__module__}.{fn.__qualname__}"
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def with_options(self, **options: Any) -> Task[R]:
        """A copy of this task with some options changed, e.g.
        `my_task.with_options(retries=3, name="load-again")`."""
        check_option_names("with_options()", "task", options, _TASK_OPTIONS)
        current = {option: getattr(self, option) for option in _TASK_OPTIONS}
        # A new cache_key_fn replaces the current cache_policy, and the reverse (a task has one).
        if options.get("cache_key_fn") is not None and "cache_policy" not in options:
            current["cache_policy"] = None
        if options.get("cache_policy") is not None and "cache_key_fn" not in options:
            current["cache_key_fn"] = None
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


def _caches(policy: CachePolicy | None) -> bool:
    return policy is not None and not isinstance(policy, NoCache)


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """Retry delays that double each time, for `retry_delay_seconds` (Prefect 2's): with
    `backoff_factor=10` and 3 retries, 10, 20 and 40 seconds. Pair it with
    `retry_jitter_factor` so that runs failing together do not retry together."""

    def delays(retries: int) -> list[float]:
        return [backoff_factor * 2**retry for retry in range(retries)]

    return delays


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
    "exponential_backoff",
    "task",
    "task_input_hash",
    "task_input_hash_blake3",
    "unmapped",
]
