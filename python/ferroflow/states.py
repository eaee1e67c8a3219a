"""Run states: what a flow or task run is doing, or how it ended, with its result attached.

A `State` has a `type` (the `StateType` the engine reasons with), a `name` users read ("Cached" is
a COMPLETED state, "Retrying" a RUNNING one, "TimedOut" a FAILED one), a `message`, a UTC
`timestamp` and `data`: for a completed run the result object made by the run's `ResultFactory`,
for a failed one the exception. `State.result()` turns that back into the value, or raises the
exception. `state_details` (Prefect 2's) names the runs the state belongs to and its cache entry;
`model_dump()` gives all of it as a dict.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import warnings
from collections.abc import Iterable
from typing import Any, Literal
from uuid import UUID

from ferroflow._asyncutils import in_async_caller
from ferroflow.exceptions import (
    AsyncFetchStateResultWarning,
    CancelledRun,
    CrashedRun,
    FailedRun,
    UnfinishedRun,
)
from ferroflow.results import BaseResult, LiteralResult, UnpersistedResult
from ferroflow.settings import get_current_settings
from ferroflow.state_types import TERMINAL_STATE_TYPES, StateType

_utc = datetime.UTC


# Failures whose result raises: FAILED runs, and runs ended from outside their own code.
_RAISING_STATE_TYPES = frozenset({StateType.FAILED, StateType.CANCELLED, StateType.CRASHED})


class ExceptionResult(BaseResult):
    """The exception of a failed, crashed or cancelled run, held in memory.

    Failures are never persisted: a retry re-runs the failed work anyway, and many exceptions
    (holding locks, sockets, tracebacks) cannot be serialized.
    """

    type = "exception"

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception

    def get(self) -> BaseException:
        return self.exception

    def __repr__(self) -> str:
        return f"ExceptionResult({self.exception!r})"


DumpMode = Literal["python", "json"]


@dataclasses.dataclass(slots=True)
class StateDetails:
    """Prefect 2's `state.state_details`: the flow run and task run a state belongs to, when a
    scheduled run starts, and the cache entry of a task run's result (its key and expiration).

    States a user builds have none of them unless given; the engine's states have the run ids,
    and a cached task's Completed and Cached states the cache key.
    """

    flow_run_id: UUID | None = None
    task_run_id: UUID | None = None
    child_flow_run_id: UUID | None = None
    scheduled_time: datetime.datetime | None = None
    cache_key: str | None = None
    cache_expiration: datetime.datetime | None = None

    def model_dump(self, *, mode: DumpMode = "python") -> dict[str, Any]:
        """The fields as a dict; with `mode="json"`, ids and times as text."""
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return fields if mode == "python" else {name: _json_scalar(value) for name, value in fields.items()}

    def dict(self) -> dict[str, Any]:
        """`model_dump()` under the name Prefect 2's (pydantic v1) models gave it."""
        return self.model_dump()


def _json_scalar(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value


class State:
    """The state of a flow or task run. Build one with the constructors below (`Completed()`,
    `Failed()`, ...); the engine records every state a run goes through in its history."""

    __slots__ = (
        "type",
        "name",
        "message",
        "timestamp",
        "data",
        "run_id",
        "flow_run_id",
        "failure_observed",
        "_state_details",
    )

    def __init__(
        self,
        type: StateType,
        name: str | None = None,
        message: str | None = None,
        data: Any = None,
        timestamp: datetime.datetime | None = None,
        state_details: StateDetails | None = None,
    ) -> None:
        self.type = type if type.__class__ is StateType else StateType(type)
        self.name = name if name is not None else self.type.value.capitalize()
        self.message = message
        self.data = data
        self.timestamp = timestamp if timestamp is not None else datetime.datetime.now(_utc)
        # Set by the engine when the state belongs to a run; None for a state a user built.
        # `flow_run_id` is the flow run's id for its own states and for its task runs' states.
        self.run_id: UUID | None = None
        self.flow_run_id: UUID | None = None
        # Whether a failure was seen by user code (raised to it, or read through `result()`).
        # A flow that returns None fails when one of its task runs failed unseen.
        self.failure_observed = False
        # Made when first read (most states are never asked), unless given.
        self._state_details = state_details

    @property
    def state_details(self) -> StateDetails:
        """The runs this state belongs to and its cache entry (Prefect 2's `state_details`).

        The run ids come from what the engine set when the state was attached to its run, so
        they are filled in when read rather than on every state change.
        """
        details = self._state_details
        if details is None:
            details = self._state_details = StateDetails()
        if details.flow_run_id is None and self.flow_run_id is not None:
            details.flow_run_id = self.flow_run_id
            if self.run_id != self.flow_run_id:
                details.task_run_id = self.run_id
        if details.scheduled_time is None and self.type is StateType.SCHEDULED:
            details.scheduled_time = self.timestamp
        return details

    @state_details.setter
    def state_details(self, details: StateDetails) -> None:
        self._state_details = details

    def model_dump(self, *, mode: DumpMode = "python") -> dict[str, Any]:
        """Prefect 2's fields as a dict: type, name, message, timestamp, data, state_details.

        With `mode="json"` every value is JSON-able: the type and times as text, and `data` as
        the result's reference (a literal inline, a persisted result by storage and key), the
        exception of a failed run as its text, anything else as None.
        """
        if mode == "python":
            return {
                "type": self.type,
                "name": self.name,
                "message": self.message,
                "timestamp": self.timestamp,
                "data": self.data,
                "state_details": self.state_details.model_dump(),
            }
        return {
            "type": self.type.value,
            "name": self.name,
            "message": self.message,
            "timestamp": self.timestamp.isoformat(),
            "data": _data_as_json(self.data),
            "state_details": self.state_details.model_dump(mode="json"),
        }

    def dict(self) -> dict[str, Any]:
        """`model_dump()` under the name Prefect 2's (pydantic v1) models gave it."""
        return self.model_dump()

    # --- predicates -------------------------------------------------------------------------
    def is_scheduled(self) -> bool:
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED

    def is_paused(self) -> bool:
        return self.type is StateType.PAUSED

    def is_final(self) -> bool:
        return self.type in TERMINAL_STATE_TYPES

    # --- result -----------------------------------------------------------------------------
    def result(self, raise_on_failure: bool = True, fetch: bool | None = None) -> Any:
        """The run's return value; for a failed run, raise its exception (or, with
        `raise_on_failure=False`, return it).

        In async code (a running event loop in this thread), `fetch=True` makes this return an
        awaitable. Without `fetch`, async code gets the raw result object (`state.data`) and an
        `AsyncFetchStateResultWarning`, unless the FERROFLOW_ASYNC_FETCH_STATE_RESULT setting is on
        (then it behaves as `fetch=True`). `fetch=False` returns the raw result object silently.
        """
        if fetch is None:
            if in_async_caller():
                if _async_fetch_is_default():
                    return state_value_async(self, raise_on_failure)
                warnings.warn(
                    "State.result() was called from async code without `fetch`, so it returned the "
                    "raw result object (state.data), not the value. Use "
                    "`await state.result(fetch=True)` to get the value, or set "
                    "FERROFLOW_ASYNC_FETCH_STATE_RESULT=true to make that the default; pass "
                    "`fetch=False` to keep the raw result object without this warning.",
                    AsyncFetchStateResultWarning,
                    stacklevel=2,
                )
                return self.data
            fetch = True
        if not fetch:
            return self.data
        if in_async_caller():
            return state_value_async(self, raise_on_failure)
        return state_value(self, raise_on_failure)

    # --- display ----------------------------------------------------------------------------
    def __repr__(self) -> str:
        details = [repr(self.message)] if self.message else []
        if self.name.upper() != self.type.value:
            details.append(f"type={self.type.value}")
        if self.data is not None:
            details.append(f"result={self.data!r}")
        return f"{self.name}({', '.join(details)})"


def _data_as_json(data: Any) -> Any:
    if isinstance(data, ExceptionResult):
        exception = data.exception
        return {"type": data.type, "exception": f"{type(exception).__name__}: {exception}"}
    if isinstance(data, BaseResult):
        try:
            return data.to_reference()
        except NotImplementedError:
            return None
    return None


def _async_fetch_is_default() -> bool:
    return bool(get_current_settings().async_fetch_state_result)


# --- reading a state's value (shared by State.result, TaskFuture.result and plain calls) -------


def state_value(state: State, raise_on_failure: bool = True) -> Any:
    """The value a state holds, raising the run's exception if it failed. Without raising, a
    failed state gives its data: the exception, or for a flow failed by its task runs, their
    states."""
    if state.type in _RAISING_STATE_TYPES:
        state.failure_observed = True
        if raise_on_failure:
            raise get_state_exception(state)
    elif not state.is_final():
        raise UnfinishedRun(
            f"The run is in a {state.name} state and has no result yet. "
            "Wait for it to finish (`future.wait()` or `future.result()`) before reading it."
        )
    data = state.data
    return data.get() if isinstance(data, BaseResult) else data


async def state_value_async(state: State, raise_on_failure: bool) -> Any:
    data = state.data
    # In-memory results are read in place; anything else may touch storage, so it is read in
    # a worker thread to keep the event loop responsive.
    if state.is_final() and isinstance(data, BaseResult) and not _is_in_memory(data):
        return await asyncio.to_thread(state_value, state, raise_on_failure)
    return state_value(state, raise_on_failure)


def _is_in_memory(result: BaseResult) -> bool:
    return isinstance(result, (LiteralResult, UnpersistedResult, ExceptionResult))


def get_state_exception(state: State) -> BaseException:
    """The exception a failed, crashed or cancelled state stands for.

    A flow's failure derived from its task runs holds those states: their first failure's
    exception is used. A failure without an exception gets one naming its message.
    """
    data = state.data
    value = data.get() if isinstance(data, BaseResult) else data
    if isinstance(value, BaseException):
        return value
    if isinstance(value, State):
        return get_state_exception(value)
    if is_state_iterable(value):
        for inner in value:
            if inner.type in _RAISING_STATE_TYPES:
                inner.failure_observed = True
                return get_state_exception(inner)
    message = state.message or f"The run ended in a {state.name} state."
    if state.is_crashed():
        return CrashedRun(message)
    if state.is_cancelled():
        return CancelledRun(message)
    return FailedRun(message)


def is_state_iterable(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple, set, frozenset))
        and bool(value)
        and all(isinstance(item, State) for item in value)
    )


def exception_message(run_kind: str, exception: BaseException) -> str:
    """'Task run encountered an exception: ValueError: bad input' style messages."""
    text = str(exception)
    described = f"{type(exception).__name__}: {text}" if text else type(exception).__name__
    return f"{run_kind} encountered an exception: {described}"


# --- aggregate states -------------------------------------------------------------------------


def aggregate_state_type_and_message(states: Iterable[State]) -> tuple[StateType, str]:
    """Prefect 2's rule for a flow that returns states: completed only if all completed."""
    states = list(states)
    total = len(states)
    cancelled = sum(state.is_cancelled() for state in states)
    paused = sum(state.is_paused() for state in states)
    failed = sum(state.type in (StateType.FAILED, StateType.CRASHED) for state in states)
    not_final = sum(not state.is_final() for state in states)
    if cancelled == 0 and failed == 0 and not_final == 0 and all(s.is_completed() for s in states):
        return StateType.COMPLETED, "All states completed."
    if cancelled:
        return StateType.CANCELLED, f"{cancelled}/{total} states cancelled."
    if paused:
        return StateType.PAUSED, f"{paused}/{total} states paused."
    if failed:
        return StateType.FAILED, f"{failed}/{total} states failed."
    return StateType.FAILED, f"{not_final}/{total} states are not final."


# --- constructors -----------------------------------------------------------------------------


def Scheduled(
    scheduled_time: datetime.datetime | None = None, name: str = "Scheduled", **kwargs: Any
) -> State:
    """A run that will start later (at `scheduled_time`, kept as the state's timestamp)."""
    return State(StateType.SCHEDULED, name=name, timestamp=scheduled_time, **kwargs)


def Pending(name: str = "Pending", **kwargs: Any) -> State:
    return State(StateType.PENDING, name=name, **kwargs)


def Running(name: str = "Running", **kwargs: Any) -> State:
    return State(StateType.RUNNING, name=name, **kwargs)


def Completed(name: str = "Completed", **kwargs: Any) -> State:
    return State(StateType.COMPLETED, name=name, **kwargs)


def Failed(name: str = "Failed", **kwargs: Any) -> State:
    return State(StateType.FAILED, name=name, **kwargs)


def Crashed(name: str = "Crashed", **kwargs: Any) -> State:
    return State(StateType.CRASHED, name=name, **kwargs)


def Cancelled(name: str = "Cancelled", **kwargs: Any) -> State:
    return State(StateType.CANCELLED, name=name, **kwargs)


def Paused(name: str = "Paused", **kwargs: Any) -> State:
    return State(StateType.PAUSED, name=name, **kwargs)


def Cached(name: str = "Cached", **kwargs: Any) -> State:
    """A completed run whose result was reused instead of computed."""
    return State(StateType.COMPLETED, name=name, **kwargs)


def Retrying(name: str = "Retrying", **kwargs: Any) -> State:
    """A run running again after a failed attempt."""
    return State(StateType.RUNNING, name=name, **kwargs)


def AwaitingRetry(
    scheduled_time: datetime.datetime | None = None, name: str = "AwaitingRetry", **kwargs: Any
) -> State:
    """A failed attempt waiting for its retry delay before running again."""
    return Scheduled(scheduled_time=scheduled_time, name=name, **kwargs)


def TimedOut(name: str = "TimedOut", **kwargs: Any) -> State:
    """A run stopped because it exceeded its `timeout_seconds`."""
    return State(StateType.FAILED, name=name, **kwargs)


def NotReady(name: str = "NotReady", **kwargs: Any) -> State:
    """A task run that did not start because an upstream future or state it was given failed.

    Unlike Prefect 2 (a PENDING state that never ends), this is FAILED: the run is over, and
    its `result()` raises `UpstreamTaskError` naming the upstream failure.
    """
    return State(StateType.FAILED, name=name, **kwargs)


def Late(scheduled_time: datetime.datetime | None = None, **kwargs: Any) -> State:
    return Scheduled(scheduled_time=scheduled_time, name="Late", **kwargs)


__all__ = [
    "AwaitingRetry",
    "Cached",
    "Cancelled",
    "Completed",
    "Crashed",
    "ExceptionResult",
    "Failed",
    "Late",
    "NotReady",
    "Paused",
    "Pending",
    "Retrying",
    "Running",
    "Scheduled",
    "State",
    "StateDetails",
    "StateType",
    "TERMINAL_STATE_TYPES",
    "TimedOut",
    "get_state_exception",
]
