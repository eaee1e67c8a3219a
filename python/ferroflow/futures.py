"""`TaskFuture`: the handle `Task.submit()` and `Task.map()` return for a task run that runs
on the flow's task runner."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, Protocol

from ferroflow._asyncutils import in_async_caller
from ferroflow.exceptions import CancelledRun
from ferroflow.states import Crashed, ExceptionResult, State, state_value, state_value_async


class RunRecord(Protocol):
    """What a future needs of its run's record (the engine's `TaskRun`)."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> State: ...


class TaskFuture:
    """A submitted task run. In sync code `result()` and `wait()` block; in async code they
    return awaitables (`await future.result()`)."""

    __slots__ = ("task_run", "_future")

    def __init__(self, task_run: RunRecord, future: concurrent.futures.Future[State]) -> None:
        self.task_run = task_run
        self._future = future

    @property
    def concurrent_future(self) -> concurrent.futures.Future[State]:
        """The `concurrent.futures.Future` of the run's final state (what waiting uses)."""
        return self._future

    @property
    def state(self) -> State:
        """The run's current state: its final state once finished."""
        if self._future.done():
            return self._final_state()
        return self.task_run.state

    def done(self) -> bool:
        return self._future.done()

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for the run to finish; return its final state, or None if `timeout` seconds
        passed first (the run goes on)."""
        if in_async_caller():
            return self._wait_async(timeout)
        if not self._future.done():
            # Future.exception() waits on the future's own condition: cheaper than
            # concurrent.futures.wait, which builds a waiter per call.
            try:
                self._future.exception(timeout)
            except concurrent.futures.TimeoutError:
                return None
            except concurrent.futures.CancelledError:
                pass
        return self._final_state()

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        """Wait for the run and return its value. A failed run raises its exception, or with
        `raise_on_failure=False` returns it. Raises `TimeoutError` if `timeout` seconds pass
        first."""
        if in_async_caller():
            return self._result_async(timeout, raise_on_failure)
        return state_value(self._state_within(self.wait(timeout), timeout), raise_on_failure)

    async def _wait_async(self, timeout: float | None) -> State | None:
        # asyncio.wait, unlike wait_for, does not cancel the run when the timeout passes.
        done, _ = await asyncio.wait([asyncio.wrap_future(self._future)], timeout=timeout)
        return self._final_state() if done else None

    async def _result_async(self, timeout: float | None, raise_on_failure: bool) -> Any:
        state = self._state_within(await self._wait_async(timeout), timeout)
        return await state_value_async(state, raise_on_failure)

    def _state_within(self, state: State | None, timeout: float | None) -> State:
        if state is None:
            raise TimeoutError(
                f"Task run {self.task_run.name!r} did not finish within {timeout} seconds; it is "
                "still running. Wait longer, or call result() without a timeout."
            )
        return state

    def _final_state(self) -> State:
        if self._future.cancelled():
            exception: BaseException | None = CancelledRun(
                f"Task run {self.task_run.name!r} was cancelled before it started: its flow run "
                "ended first (for example by a timeout)."
            )
        else:
            exception = self._future.exception()
        if exception is None:
            return self._future.result()
        # The run could not report a state of its own (it was interrupted, or the task runner
        # failed to run it): report it as crashed.
        state = self.task_run.state
        if state.is_final():
            return state
        return Crashed(
            message=f"Task run {self.task_run.name!r} crashed: {exception!r}",
            data=ExceptionResult(exception),
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # A future pickles as the finished run it stands for (its name and final state): what
        # a flow that returns futures, or a state holding them, hands to another process.
        if not self._future.done():
            try:
                self._future.exception()
            except concurrent.futures.CancelledError:
                pass
        return (TaskFuture.finished, (self.task_run.name, self._final_state()))

    @classmethod
    def finished(cls, name: str, state: State) -> TaskFuture:
        """A future of a run that finished elsewhere: its name and final state."""
        future: concurrent.futures.Future[State] = concurrent.futures.Future()
        future.set_result(state)
        return cls(_FinishedRun(name, state), future)

    def __repr__(self) -> str:
        return f"TaskFuture(task_run={self.task_run.name!r}, state={self.state!r})"


class _FinishedRun:
    """The record of a run a future was unpickled from: its name and final state."""

    __slots__ = ("name", "state")

    def __init__(self, name: str, state: State) -> None:
        self.name = name
        self.state = state


__all__ = ["TaskFuture"]
