"""Run records (`FlowRun`, `TaskRun`), the one place where a run changes state, and the retry
rules shared by flows and tasks."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol

from ferroflow._engine.retry_policy import jittered_delay
from ferroflow.exceptions import RunTimeoutError
from ferroflow.ids import clock_ordered_uuid, clock_ordered_uuid_and_text
from ferroflow.states import (
    AwaitingRetry,
    Cancelled,
    Crashed,
    ExceptionResult,
    Failed,
    Pending,
    Retrying,
    Running,
    State,
    TimedOut,
    exception_message,
)


class RunRecorder(Protocol):
    """What a run tells the run store (`ferroflow._engine.recording.RunRecorder`)."""

    store: Any

    def flow_run_created(self, run: FlowRun, parameters: Mapping[str, Any] | None, first: State) -> None: ...
    def task_run_created(self, run: TaskRun, parameters: Mapping[str, Any] | None, first: State) -> None: ...
    def state_changed(self, run: TaskRun | FlowRun, state: State) -> None: ...
    def finish(self) -> None: ...


class TaskRun:
    """One run of a task: identity, name, state history and attempt count.

    With a `recorder`, the run and each of its states are recorded in the run store.
    """

    __slots__ = (
        "id",
        "id_text",
        "recorder",
        "name",
        "task_name",
        "task_key",
        "dynamic_key",
        "flow_run_id",
        "state",
        "state_history",
        "run_count",
    )
    state: State

    def __init__(
        self,
        task_name: str,
        task_key: str,
        dynamic_key: int,
        flow_run_id: uuid.UUID,
        *,
        recorder: RunRecorder | None = None,
        parameters: Mapping[str, Any] | None = None,
        run_id: uuid.UUID | None = None,
    ):
        # A run executing in another process keeps the id its flow run gave it. The text is
        # the id as the run store knows it: every state record names it.
        if run_id is None:
            self.id, self.id_text = clock_ordered_uuid_and_text()
        else:
            self.id, self.id_text = run_id, str(run_id)
        self.recorder = recorder
        self.name = f"{task_name}-{dynamic_key}"
        self.task_name = task_name
        self.task_key = task_key
        self.dynamic_key = dynamic_key
        self.flow_run_id = flow_run_id
        self.state_history: list[State] = []
        self.run_count = 0
        pending = _begin(self, Pending())
        if recorder is not None:
            recorder.task_run_created(self, parameters, pending)

    def __repr__(self) -> str:
        return f"TaskRun(name={self.name!r}, id={self.id}, state={self.state!r})"


class FlowRun:
    """One run of a flow: identity, name, parent, state history and attempt count.

    A subflow run has a `dynamic_key` like a task run's (0, 1, ... for the calls of that flow in
    its parent's attempt), so that a retry of the parent can find its result. With a
    `recorder`, the run and each of its states are recorded in the run store.
    """

    __slots__ = (
        "id",
        "id_text",
        "recorder",
        "name",
        "flow_name",
        "parent_flow_run_id",
        "dynamic_key",
        "state",
        "state_history",
        "run_count",
        "parameters",
    )
    state: State

    def __init__(
        self,
        flow_name: str,
        parent_flow_run_id: uuid.UUID | None,
        *,
        dynamic_key: int | None = None,
        recorder: RunRecorder | None = None,
        parameters: Mapping[str, Any] | None = None,
        run_id: uuid.UUID | None = None,
    ) -> None:
        self.id = clock_ordered_uuid() if run_id is None else run_id
        self.id_text = str(self.id)  # as the run store knows it; every state record names it
        self.recorder = recorder
        self.name = f"{flow_name}-{self.id.hex[:8]}"
        self.flow_name = flow_name
        self.parent_flow_run_id = parent_flow_run_id
        self.dynamic_key = dynamic_key
        self.state_history: list[State] = []
        self.run_count = 0
        # The call's arguments by name (the FLOW_PARAMETERS cache policy reads them); None
        # where they are not known (a task run executing from its request elsewhere).
        self.parameters = parameters
        pending = _begin(self, Pending())
        if recorder is not None:
            recorder.flow_run_created(self, parameters, pending)

    def __repr__(self) -> str:
        return f"FlowRun(name={self.name!r}, id={self.id}, state={self.state!r})"


def set_state(run: TaskRun | FlowRun, state: State) -> State:
    """Move `run` to `state`. Every state change of every run after its first goes through
    here: this is where the run store records it."""
    _begin(run, state)
    if run.recorder is not None:
        run.recorder.state_changed(run, state)
    return state


def _begin(run: TaskRun | FlowRun, state: State) -> State:
    """Put `run` in `state` without recording it: a new run's first state, which the run store
    records with the run itself."""
    state.run_id = run.id
    # What `state.state_details` reads its run ids from, when asked (nothing is built here).
    state.flow_run_id = run.flow_run_id if type(run) is TaskRun else run.id
    run.state = state
    run.state_history.append(state)
    return state


def run_identity(run: TaskRun | FlowRun) -> tuple[str, int]:
    """What identifies a task or subflow run within its flow run, the same in every attempt:
    (task key, dynamic key) for a task run, ("flow:" + name, dynamic key) for a subflow run.
    A flow retry finds an earlier attempt's result under it."""
    if isinstance(run, TaskRun):
        return (run.task_key, run.dynamic_key)
    return (subflow_key(run.flow_name), -1 if run.dynamic_key is None else run.dynamic_key)


def subflow_key(flow_name: str) -> str:
    """The counterpart of a task key for the subflow runs of a flow (their dynamic keys count
    apart from any task's)."""
    return f"flow:{flow_name}"


def failed_state(run_kind: str, exception: BaseException, **kwargs: Any) -> State:
    """The Failed state of a run whose code (or whose start) raised `exception`."""
    data = ExceptionResult(exception)
    if isinstance(exception, RunTimeoutError):
        return TimedOut(message=str(exception), data=data, **kwargs)
    return Failed(message=exception_message(run_kind, exception), data=data, **kwargs)


def retry_delay(
    retries: int, retry_delay_seconds: float | Sequence[float], attempts_made: int
) -> float | None:
    """Seconds to wait before the next attempt, or None when no retry is left.

    A list of delays gives one per retry; when there are more retries than delays, the last
    delay repeats.
    """
    if attempts_made > retries:
        return None
    if isinstance(retry_delay_seconds, (int, float)):
        return float(retry_delay_seconds)
    if not retry_delay_seconds:
        return 0.0
    index = min(attempts_made - 1, len(retry_delay_seconds) - 1)
    return float(retry_delay_seconds[index])


class Attempts:
    """The attempts of one run, without their I/O.

    Iterating starts each attempt (Running, then Retrying) until the run has a final state;
    each attempt is a context manager around the call of the run's function that turns what it
    raises into states, so the sync and async drivers stay a few lines each:

        for attempt in Attempts(run, "Task run", retries, delays):
            with attempt:
                attempt.conclude(completed_state(call_function()), retryable=False)
            if attempt.retry_delay:
                time.sleep(attempt.retry_delay)

    An `Exception` ends the attempt Failed (or TimedOut), and the run goes AwaitingRetry while
    retries are left. A `BaseException` that is not an `Exception` (an interrupt, a
    cancellation) ends the run Crashed or Cancelled and keeps going up.
    """

    __slots__ = (
        "run",
        "run_kind",
        "retries",
        "retry_delay_seconds",
        "jitter_factor",
        "retry_condition",
        "final",
        "retry_delay",
    )

    def __init__(
        self,
        run: TaskRun | FlowRun,
        run_kind: str,
        retries: int,
        retry_delay_seconds: float | Sequence[float],
        jitter_factor: float | None = None,
        retry_condition: Callable[[State], bool] | None = None,
    ) -> None:
        self.run = run
        self.run_kind = run_kind
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        # A task's `retry_jitter_factor` and `retry_condition_fn` (`_engine.retry_policy`).
        self.jitter_factor = jitter_factor
        self.retry_condition = retry_condition
        self.final: State | None = None
        # Seconds to wait before the next attempt; None when the attempt did not ask for one.
        self.retry_delay: float | None = None

    def __iter__(self) -> Iterator[Attempts]:
        while self.final is None:
            run = self.run
            run.run_count += 1
            set_state(run, Running() if run.run_count == 1 else Retrying())
            self.retry_delay = None
            yield self

    def __enter__(self) -> Attempts:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if exception is None:
            return False
        if isinstance(exception, Exception):
            self.conclude(failed_state(self.run_kind, exception))
            return True  # recorded in the run's state; the caller reads it from there
        self.finish(_interrupted_state(self.run_kind, exception))
        return False

    def conclude(self, state: State, *, retryable: bool = True) -> None:
        """End the attempt in `state`. If it failed, a retry is left and the retry condition
        (if any) allows it, record AwaitingRetry and set `retry_delay`; otherwise `state` is
        final."""
        delay = None
        if retryable and state.is_failed() and (self.retry_condition is None or self.retry_condition(state)):
            delay = retry_delay(self.retries, self.retry_delay_seconds, self.run.run_count)
            if delay is not None and self.jitter_factor:
                delay = jittered_delay(delay, self.jitter_factor)
        if delay is None:
            self.finish(state)
            return
        retry_at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=delay)
        set_state(self.run, AwaitingRetry(scheduled_time=retry_at, message=state.message))
        self.retry_delay = delay

    def finish(self, state: State) -> State:
        """End the run in `state`, without a (further) attempt."""
        self.final = set_state(self.run, state)
        return self.final


def _interrupted_state(run_kind: str, exception: BaseException) -> State:
    data = ExceptionResult(exception)
    if isinstance(exception, asyncio.CancelledError):
        return Cancelled(message=f"{run_kind} was cancelled.", data=data)
    return Crashed(message=exception_message(run_kind, exception), data=data)
