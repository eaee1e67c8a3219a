"""Checks of the options given to `@flow` and `@task`, made when the flow or task is defined so
that a mistake shows at the decorator, not in the middle of a run."""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Sequence
from typing import Any

from ferroflow.exceptions import PersistenceConfigurationError


def check_retries(owner: str, retries: Any) -> int:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"{owner}: retries={retries!r} is not valid; give a whole number >= 0.")
    return retries


def _is_delay(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def check_retry_delay(owner: str, delay: Any) -> float | Sequence[float]:
    if _is_delay(delay):
        return delay
    if isinstance(delay, (list, tuple)) and all(_is_delay(item) for item in delay):
        return list(delay)
    raise ValueError(
        f"{owner}: retry_delay_seconds={delay!r} is not valid; give a number of seconds >= 0, "
        "or a list of them (one per retry)."
    )


def check_timeout(owner: str, timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, datetime.timedelta):
        timeout = timeout.total_seconds()
    if _is_delay(timeout) and timeout > 0:
        return timeout
    raise ValueError(
        f"{owner}: timeout_seconds={timeout!r} is not valid; give a number of seconds > 0, "
        "or None for no timeout."
    )


def check_callable_or_none(owner: str, option: str, value: Any) -> Callable[..., Any] | None:
    if value is not None and not callable(value):
        raise TypeError(f"{owner}: {option} must be a function or None, not {value!r}.")
    return value


def check_persistence(owner: str, persist_result: bool | None, needs_persistence: dict[str, bool]) -> None:
    """Refuse `persist_result=False` together with a feature that only works on persisted
    results (Prefect 2 accepted it silently and the feature then did not work)."""
    if persist_result is not False:
        return
    for feature, used in needs_persistence.items():
        if used:
            raise PersistenceConfigurationError(
                f"{owner} sets persist_result=False but uses {feature}, which needs its result "
                f"persisted. Remove persist_result=False (or set it to True) to keep {feature}, "
                f"or drop {feature}."
            )


def check_option_names(where: str, kind: str, options: dict[str, Any], known: Sequence[str]) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(
            f"{where} got unknown option(s) {', '.join(unknown)}; "
            f"the options of a {kind} are: {', '.join(known)}."
        )


def describe(kind: str, name: str) -> str:
    """'Task 'load'' — how errors name the flow or task they are about."""
    return f"{kind} {name!r}"
