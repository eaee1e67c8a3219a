"""A task's say in its retries: `retry_jitter_factor` (randomized delays) and
`retry_condition_fn` (whether a failure is worth retrying at all)."""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Callable
from typing import Any

from ferroflow._asyncutils import run_coroutine_blocking
from ferroflow._engine.definitions import TaskDefinition
from ferroflow._engine.options import LONGEST_WAIT
from ferroflow.logging import get_run_logger
from ferroflow.states import State


def jittered_delay(delay: float, factor: float) -> float:
    """A random retry delay around `delay`, as Prefect 2's `retry_jitter_factor` documents it:
    at most `delay * (1 + factor)`, and `delay` on average, so that many runs failing together
    do not all retry at the same moment.

    The delay is drawn from the exponential distribution of mean `delay`, cut to
    [`low * delay`, `(1 + factor) * delay`], where `low` is chosen so that the cut keeps the
    mean at `delay`: for the exponential, the mean of the part between `a` and `b` (in units
    of `delay`) equals the whole mean exactly when `a * e**-a == b * e**-b`.
    """
    if delay <= 0 or factor <= 0:
        return delay
    high = 1.0 + factor
    low = _partner_below_one(high * math.exp(-high))
    # Inverse of the distribution function on [F(low), F(high)], F(t) = 1 - e**-t.
    drawn = random.uniform(math.exp(-high), math.exp(-low))
    # Options keep delays under LONGEST_WAIT; jitter must not carry one past a representable date.
    return min(-math.log(drawn) * delay, LONGEST_WAIT.total_seconds())


def _partner_below_one(level: float) -> float:
    """The `t` in (0, 1) where `t * e**-t == level` (which rises on that interval)."""
    lower, upper = 0.0, 1.0
    for _ in range(60):  # bisection to double precision
        middle = (lower + upper) / 2
        if middle * math.exp(-middle) < level:
            lower = middle
        else:
            upper = middle
    return (lower + upper) / 2


def retry_condition(task: TaskDefinition, task_run: Any) -> Callable[[State], bool] | None:
    """Whether a failed attempt of `task_run` may be retried: `task.retry_condition_fn(task,
    task_run, state)`, or None (always) when the task has none. A condition that raises is
    logged and counts as False, as in Prefect 2: the run ends failed."""
    condition = task.retry_condition_fn
    if condition is None:
        return None

    def may_retry(state: State) -> bool:
        try:
            answer = condition(task, task_run, state)
            if inspect.isawaitable(answer):
                answer = run_coroutine_blocking(_awaited(answer))
            return bool(answer)
        except Exception:
            get_run_logger().error(
                "retry_condition_fn %r of task %r raised; the run is not retried.",
                condition,
                task.name,
                exc_info=True,
            )
            return False

    return may_retry


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
