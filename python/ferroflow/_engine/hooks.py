"""State hooks: the functions a flow or task names in `on_completion`, `on_failure`,
`on_cancellation`, `on_crashed` and `on_running`, called as `hook(flow_or_task, run, state)`
when its run enters that state.

As in Prefect 2, a hook that raises is logged on the run's logger and changes nothing: the
run's state stays what it was. Async hooks are awaited (run on a loop of their own when the
run is sync).
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any

from ferroflow._asyncutils import run_coroutine_blocking
from ferroflow._engine.definitions import FlowDefinition, Hook, TaskDefinition
from ferroflow.exceptions import MissingContextError
from ferroflow.logging import FLOW_RUN_LOGGER, get_run_logger
from ferroflow.states import State, StateType


def flow_hooks_for(flow: FlowDefinition, state: State) -> list[Hook] | None:
    """The hooks of `flow` for a flow run that entered `state`. A subflow run that reused an
    earlier attempt's result (Cached) did not run: no hook."""
    kind = state.type
    if kind is StateType.RUNNING:
        return flow.on_running
    if kind is StateType.COMPLETED:
        return None if state.name == "Cached" else flow.on_completion
    if kind is StateType.FAILED:
        return flow.on_failure
    if kind is StateType.CRASHED:
        return flow.on_crashed
    if kind is StateType.CANCELLED:
        return flow.on_cancellation
    return None


def task_hooks_for(task: TaskDefinition, state: State) -> list[Hook] | None:
    """The hooks of `task` for a task run that ran and ended in `state`."""
    if state.type is StateType.COMPLETED:
        return task.on_completion
    if state.type is StateType.FAILED:
        return task.on_failure
    return None


def call_hooks(hooks: list[Hook], definition: Any, run: Any, state: State) -> None:
    """Call each hook in turn from sync code."""
    for hook in hooks:
        with _reported(hook, state):
            returned = hook(definition, run, state)
            if inspect.isawaitable(returned):
                run_coroutine_blocking(_awaited(returned))


async def call_hooks_async(hooks: list[Hook], definition: Any, run: Any, state: State) -> None:
    """Call each hook in turn from async code (async hooks are awaited on this loop)."""
    for hook in hooks:
        with _reported(hook, state):
            returned = hook(definition, run, state)
            if inspect.isawaitable(returned):
                await returned


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class _reported:
    """Logs a hook's start and end, and its exception instead of raising it."""

    __slots__ = ("name", "state", "logger")

    def __init__(self, hook: Hook, state: State) -> None:
        self.name = _hook_name(hook)
        self.state = state
        self.logger = _logger()

    def __enter__(self) -> None:
        self.logger.info("Running hook %r in response to entering state %r", self.name, self.state.name)

    def __exit__(self, kind: Any, exception: BaseException | None, traceback: Any) -> bool:
        if exception is None:
            self.logger.info("Hook %r finished running successfully", self.name)
            return False
        if not isinstance(exception, Exception):
            return False  # an interrupt goes on up
        self.logger.error(
            "Hook %r raised an exception; the run's state stays %r.",
            self.name,
            self.state.name,
            exc_info=exception,
        )
        return True


def _hook_name(hook: Hook) -> str:
    if isinstance(hook, functools.partial):
        hook = hook.func
    return getattr(hook, "__name__", type(hook).__name__)


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run's logger; a flow run that ended before its context existed (its result
    factory could not be made) logs on the flow runs' logger without run fields."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(FLOW_RUN_LOGGER)
