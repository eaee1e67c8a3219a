"""Checks of the options given to `@flow` and `@task`, made when the flow or task is defined so
that a mistake shows at the decorator, not in the middle of a run."""

from __future__ import annotations

import datetime
import inspect
import math
import string
from collections.abc import Callable, Sequence
from typing import Any

from ferroflow.exceptions import PersistenceConfigurationError


def check_retries(owner: str, retries: Any) -> int:
    if retries is None:  # Prefect 2's default: no retries
        return 0
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"{owner}: retries={retries!r} is not valid; give a whole number >= 0.")
    return retries


# The longest wait an option may ask for (a retry delay, a cache expiration): a century is
# surely a mistake, and "now + wait" must stay a date Python can represent.
LONGEST_WAIT = datetime.timedelta(days=36_500)
# The largest retry jitter: a delay may grow by at most this factor (and stay under LONGEST_WAIT).
LARGEST_JITTER = 100.0


def _is_delay(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= LONGEST_WAIT.total_seconds()
    )


def check_retry_delay(owner: str, delay: Any) -> float | Sequence[float]:
    if delay is None:  # Prefect 2's default: retry at once
        return 0
    if _is_delay(delay):
        return delay
    if isinstance(delay, (list, tuple)) and all(_is_delay(item) for item in delay):
        return list(delay)
    raise ValueError(
        f"{owner}: retry_delay_seconds={delay!r} is not valid; give a number of seconds from 0 "
        f"to {LONGEST_WAIT.total_seconds():,.0f} (a century), or a list of them (one per retry)."
    )


def check_task_retry_delay(owner: str, delay: Any, retries: int) -> float | Sequence[float]:
    """A task's `retry_delay_seconds`, which may also be a function of the number of retries
    returning the delays (Prefect 2's `exponential_backoff(backoff_factor)`)."""
    if callable(delay):
        delay = delay(retries)
    return check_retry_delay(owner, delay)


def check_jitter_factor(owner: str, factor: Any) -> float | None:
    if factor is None or (_is_delay(factor) and factor <= LARGEST_JITTER):
        return factor
    raise ValueError(
        f"{owner}: retry_jitter_factor={factor!r} is not valid; give a number from 0 to "
        f"{LARGEST_JITTER:g} (0.5 lets a 10 s delay vary up to 15 s), or None for no jitter."
    )


def check_cache_expiration(owner: str, expiration: Any) -> datetime.timedelta | None:
    if expiration is None:
        return None
    if not isinstance(expiration, datetime.timedelta):
        raise TypeError(
            f"{owner}: cache_expiration must be a datetime.timedelta or None, not {expiration!r}."
        )
    if abs(expiration) > LONGEST_WAIT:
        raise ValueError(
            f"{owner}: cache_expiration={expiration!r} is out of range; give at most "
            f"{LONGEST_WAIT.days:,} days (a century), or None for entries that never expire."
        )
    return expiration


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


def check_optional_bool(owner: str, option: str, value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise TypeError(f"{owner}: {option} must be True, False or None, not {value!r}.")


def check_hooks(owner: str, option: str, hooks: Any) -> list[Callable[..., Any]] | None:
    """A list of state hooks (`on_completion=[notify]`): functions called as
    `hook(flow_or_task, run, state)`."""
    if hooks is None:
        return None
    if callable(hooks) or not isinstance(hooks, (list, tuple)):
        raise TypeError(
            f"{owner}: {option} takes a list of functions, e.g. {option}=[{_name_of(hooks)}]; got {hooks!r}."
        )
    for hook in hooks:
        if not callable(hook):
            raise TypeError(
                f"{owner}: {option} holds {hook!r}, which is not a function; give functions only."
            )
    return list(hooks) or None


def _name_of(value: Any) -> str:
    return getattr(value, "__name__", "my_hook")


# The fields a run name template may name are the parameters of the function it names runs of;
# a result storage key template names these instead (`{parameters[x]}`, `{task_run.id}`, ...).
STORAGE_KEY_FIELDS = ("parameters", "flow_run", "task_run", "deployment")


def check_run_name(
    owner: str, option: str, name: Any, fn: Callable[..., Any]
) -> str | Callable[[], str] | None:
    """`flow_run_name` / `task_run_name`: a template formatted with the call's parameters
    ("etl-{day}") or a function without arguments returning the name. A template that names
    something other than a parameter of `fn` is refused here rather than failing every run."""
    if name is None or (callable(name) and not isinstance(name, str)):
        return name
    if not isinstance(name, str):
        raise TypeError(
            f'{owner}: {option} must be a string template such as "load-{{day}}" or a function '
            f"returning a string, not {name!r}."
        )
    parameters = _parameter_names(fn)
    if parameters is not None:
        _check_template_fields(owner, option, name, parameters, "a parameter of the function")
    return name


def check_storage_key(owner: str, key: Any) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str):
        raise TypeError(
            f"{owner}: result_storage_key must be a string template such as "
            f'"{{parameters[x]}}.pickle", not {key!r}.'
        )
    _check_template_fields(owner, "result_storage_key", key, STORAGE_KEY_FIELDS, "one of")
    return key


def _parameter_names(fn: Callable[..., Any]) -> tuple[str, ...] | None:
    """The names a run name template may use (those of `*args` and `**kwargs` hold a tuple and
    a dict: "{kwargs[day]}"), or None when the function has no readable signature."""
    try:
        return tuple(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return None


def _check_template_fields(owner: str, option: str, template: str, allowed: Sequence[str], what: str) -> None:
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as error:
        raise ValueError(f"{owner}: {option}={template!r} is not a valid template ({error}).") from None
    for field in fields:
        root = field.partition(".")[0].partition("[")[0]
        if root not in allowed:
            shown = "{" + field + "}" if field else "{}"
            raise ValueError(
                f"{owner}: {option}={template!r} uses {shown}, which is not {what} "
                f"({', '.join(allowed) or 'it takes none'}); name one of those in the braces."
            )


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
