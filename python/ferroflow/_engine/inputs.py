"""Task inputs that are futures or states: finding them, waiting for them, and replacing them
with their values.

They are found at the top level of the arguments and inside (nested) lists, tuples, sets,
frozensets and dict keys and values — the exact built-in types; other objects are passed as
they are.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from typing import Any

from ferroflow.exceptions import UpstreamTaskError
from ferroflow.futures import TaskFuture
from ferroflow.states import ExceptionResult, NotReady, State, get_state_exception, state_value


class unmapped:
    """Marks an argument of `Task.map` to pass whole to every run instead of mapping over it."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"unmapped({self.value!r})"


# Values that can never hold a future or a state: skipped without a closer look.
_ATOMIC_TYPES = frozenset({int, float, str, bytes, bool, type(None), complex})
_SEQUENCE_TYPES = (list, tuple, set, frozenset)


def _walk(value: Any) -> Iterator[TaskFuture | State]:
    kind = type(value)
    if kind in _ATOMIC_TYPES:
        return
    if kind is TaskFuture or kind is State:
        yield value
    elif kind in _SEQUENCE_TYPES:
        for item in value:
            yield from _walk(item)
    elif kind is dict:
        for key, item in value.items():
            yield from _walk(key)
            yield from _walk(item)


def has_run_values(value: Any) -> bool:
    """Whether `value` holds a future or a state (searched as described above). The common
    case, plain arguments, is answered without building anything."""
    kind = type(value)
    if kind in _ATOMIC_TYPES:
        return False
    if kind is TaskFuture or kind is State:
        return True
    if kind in _SEQUENCE_TYPES:
        return _any_run_values(value)
    if kind is dict:
        return _any_run_values(value) or _any_run_values(value.values())
    return False


def _any_run_values(items: Any) -> bool:
    # Atomic items are skipped here rather than in a call each: arguments are mostly plain
    # lists of numbers and strings, and this runs for every task call.
    atomic = _ATOMIC_TYPES
    for item in items:
        if type(item) not in atomic and has_run_values(item):
            return True
    return False


def pending_upstream_futures(*values: Any) -> list[concurrent.futures.Future[State]]:
    """The futures among `values` (searched as described above) that have not finished."""
    if not has_run_values(values):
        return []
    return [
        found.concurrent_future for found in _walk(values) if type(found) is TaskFuture and not found.done()
    ]


class UpstreamFailed(Exception):
    """Internal: an input's run failed; carries the NotReady state for the downstream run."""

    def __init__(self, state: State) -> None:
        self.state = state


def resolve_inputs(value: Any) -> Any:
    """`value` with every future and state replaced by its run's value (futures must have
    finished). Raises `UpstreamFailed` if one of them failed. Returns `value` itself when
    nothing needed replacing, so plain arguments are never copied."""
    kind = type(value)
    if kind in _ATOMIC_TYPES:
        return value
    if kind is TaskFuture:
        return _upstream_value(value.state, value.task_run.name)
    if kind is State:
        return _upstream_value(value, None)
    if kind in _SEQUENCE_TYPES:
        items = [resolve_inputs(item) for item in value]
        if all(new is old for new, old in zip(items, value)):
            return value
        return kind(items)
    if kind is dict:
        pairs = [(resolve_inputs(key), resolve_inputs(item)) for key, item in value.items()]
        if all(k is ok and v is ov for (k, v), (ok, ov) in zip(pairs, value.items())):
            return value
        return dict(pairs)
    return value


def _upstream_value(state: State, run_name: str | None) -> Any:
    if state.is_completed():
        return state_value(state)
    upstream = f"upstream task run {run_name!r}" if run_name else "an upstream state"
    if state.is_final():
        cause = get_state_exception(state)
        error = UpstreamTaskError(
            f"This task run did not start because {upstream} ended {state.name}: "
            f"{state.message or type(cause).__name__}. Handle that failure in the flow (check "
            "`.state` or call `.result(raise_on_failure=False)`) before passing it on."
        )
    else:
        error = UpstreamTaskError(
            f"This task run did not start because {upstream} is {state.name}, not finished."
        )
        cause = None
    error.__cause__ = cause
    raise UpstreamFailed(NotReady(message=str(error), data=ExceptionResult(error)))


def replace_inputs(value: Any, kind: type, replace: Any) -> Any:
    """`value` with every object of type `kind` (searched as described above) replaced by
    `replace(obj)`; `value` itself when there is none. Used to send a run before its upstream
    runs finished: futures become markers in the flow's process, and the markers become the
    upstream states where the run executes."""
    found = type(value)
    if found is kind:
        return replace(value)
    if found in _ATOMIC_TYPES:
        return value
    if found in _SEQUENCE_TYPES:
        items = [replace_inputs(item, kind, replace) for item in value]
        if all(new is old for new, old in zip(items, value)):
            return value
        return found(items)
    if found is dict:
        pairs = [
            (replace_inputs(k, kind, replace), replace_inputs(v, kind, replace)) for k, v in value.items()
        ]
        if all(k is ok and v is ov for (k, v), (ok, ov) in zip(pairs, value.items())):
            return value
        return dict(pairs)
    return value


def upstream_futures(*values: Any) -> list[TaskFuture]:
    """The futures among `values` (searched as described above), each once, in order."""
    if not has_run_values(values):
        return []
    seen: dict[int, TaskFuture] = {}
    for found in _walk(values):
        if type(found) is TaskFuture:
            seen.setdefault(id(found), found)
    return list(seen.values())
