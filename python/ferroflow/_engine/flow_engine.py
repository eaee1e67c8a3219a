"""Flow runs: what calling a `@flow` function does.

A flow run goes Pending -> Running -> (AwaitingRetry -> Retrying ->)* Completed | Failed. Each
attempt runs the function, waits for every task run it submitted, then derives the final state
from what the function returned (`final_state_from_return`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import types
from typing import Any

from ferroflow._asyncutils import in_async_caller, run_coroutine_blocking
from ferroflow._engine import caching, flow_options, prints
from ferroflow._engine.bodies import call_async_body, call_sync_body
from ferroflow._engine.definitions import FlowDefinition
from ferroflow._engine.parameters import LazyParameters
from ferroflow._engine.recording import recorder_for_flow_run
from ferroflow._engine.run_book import RunBook, book_of
from ferroflow._engine.runs import (
    Attempts,
    FlowRun,
    RunRecorder,
    failed_state,
    run_identity,
    set_state,
    subflow_key,
)
from ferroflow.context import FlowRunContext, TaskRunContext, set_flow_run_context
from ferroflow.exceptions import RunTimeoutError
from ferroflow.futures import TaskFuture
from ferroflow.results import BaseResult, ResultFactory, UnpersistedResult
from ferroflow.settings import profile_checked_once
from ferroflow.states import (
    Cached,
    Completed,
    State,
    StateType,
    aggregate_state_type_and_message,
    is_state_iterable,
    state_value,
    state_value_async,
)

_RUN_KIND = "Flow run"
_FAILED_TYPES = (StateType.FAILED, StateType.CRASHED)


def call_flow(flow: FlowDefinition, args: tuple[Any, ...], kwargs: dict[str, Any], return_state: bool) -> Any:
    if flow.isasync:
        coroutine = _call_async(flow, args, kwargs, return_state)
        # Like any async function, an async flow returns an awaitable — except as a subflow of
        # a sync flow, whose sync code cannot await: there it runs to completion.
        if in_async_caller() or (TaskRunContext.get() or FlowRunContext.get()) is None:
            return coroutine
        return run_coroutine_blocking(coroutine)
    with profile_checked_once():
        state = run_flow_sync(flow, args, kwargs)
    return state if return_state else state_value(state)


async def _call_async(
    flow: FlowDefinition, args: tuple[Any, ...], kwargs: dict[str, Any], return_state: bool
) -> Any:
    with profile_checked_once():
        state = await run_flow_async(flow, args, kwargs)
    return state if return_state else await state_value_async(state, True)


# --- one flow run -----------------------------------------------------------------------------


def _begin(
    flow: FlowDefinition,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    loop: asyncio.AbstractEventLoop | None,
) -> FlowRunContext | FlowRun:
    """A new flow run with its context — or the run alone, already ended, if its result
    factory could not be made (Failed) or, as a subflow of a retried flow run, it completed
    with a persisted result in an earlier attempt (Cached)."""
    parent = TaskRunContext.get() or FlowRunContext.get()
    parent_flow = parent.flow_run_context if isinstance(parent, TaskRunContext) else parent
    flow_run = _new_flow_run(flow, parent_flow, args, kwargs)
    if parent_flow is not None:
        parent_book = book_of(parent_flow)
        parent_book.child_runs.append(flow_run)  # a subflow counts among its parent's runs
        earlier = caching.earlier_attempt_result(
            parent_book, run_identity(flow_run), f"subflow {flow.name!r}"
        )
        if earlier is not None:
            set_state(flow_run, Cached(data=earlier, message=caching.REUSED_FROM_EARLIER_ATTEMPT))
            return flow_run
    try:
        factory = ResultFactory.from_flow(flow, parent_flow.result_factory if parent_flow else None)
        factory.check_storage()
    except Exception as exc:
        set_state(flow_run, failed_state(_RUN_KIND, exc))
        return flow_run
    return FlowRunContext(
        flow,
        flow_run,
        factory,
        flow.task_runner.duplicate(),
        is_async=loop is not None,
        engine=RunBook(flow_run, factory, loop),
    )


def _new_flow_run(
    flow: FlowDefinition,
    parent_flow: FlowRunContext | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> FlowRun:
    """The run record. A subflow run is numbered among its parent's runs of the same flow and
    shares its parent's recorder; an outermost run decides whether to record (and opens the
    run store) now."""
    recorder: RunRecorder | None
    if parent_flow is None:
        recorder, dynamic_key, parent_id = recorder_for_flow_run(), None, None
    else:
        recorder = parent_flow.flow_run.recorder
        parent_book = book_of(parent_flow)
        dynamic_key = parent_book.next_dynamic_key(subflow_key(flow.name))
        parent_id = parent_flow.flow_run.id
    return FlowRun(
        flow.name,
        parent_id,
        dynamic_key=dynamic_key,
        recorder=recorder,
        parameters=LazyParameters(flow.fn, args, kwargs),
    )


def run_flow_sync(flow: FlowDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]) -> State:
    context = _begin(flow, args, kwargs, loop=None)
    if isinstance(context, FlowRun):
        flow_options.call_state_hooks(flow, context)
        _commit_records(context)
        return context.state
    attempts = Attempts(context.flow_run, _RUN_KIND, flow.retries, flow.retry_delay_seconds)
    logs_prints = flow_options.start_logging_prints(flow, context)
    leave = set_flow_run_context(context)
    try:
        context.task_runner.start()
        context.task_runner.check_result_storage(context.result_factory)
        arguments = flow_options.arguments_for_run(flow, context, args, kwargs)
        if isinstance(arguments, State):
            attempts.finish(arguments)
        else:
            args, kwargs = arguments
        for attempt in attempts:
            if attempt.run.run_count == 1:
                flow_options.call_state_hooks(flow, context.flow_run)  # on_running
            book_of(context).start_attempt()
            with attempt:
                returned = _call_and_wait_for_task_runs(flow, context, args, kwargs)
                attempt.conclude(final_state_from_return(returned, context))
            if attempt.retry_delay:
                time.sleep(attempt.retry_delay)
        return attempts.final  # type: ignore[return-value]
    finally:
        try:
            if attempts.final is not None:
                flow_options.call_state_hooks(flow, context.flow_run)
        finally:
            if logs_prints:
                prints.restore()
            _end(context, leave)
            _commit_records(context.flow_run)


async def run_flow_async(flow: FlowDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]) -> State:
    context = _begin(flow, args, kwargs, loop=asyncio.get_running_loop())
    if isinstance(context, FlowRun):
        await flow_options.call_state_hooks_async(flow, context)
        await _commit_records_async(context)
        return context.state
    attempts = Attempts(context.flow_run, _RUN_KIND, flow.retries, flow.retry_delay_seconds)
    logs_prints = flow_options.start_logging_prints(flow, context)
    leave = set_flow_run_context(context)
    try:
        context.task_runner.start()
        context.task_runner.check_result_storage(context.result_factory)
        arguments = flow_options.arguments_for_run(flow, context, args, kwargs)
        if isinstance(arguments, State):
            attempts.finish(arguments)
        else:
            args, kwargs = arguments
        for attempt in attempts:
            if attempt.run.run_count == 1:
                await flow_options.call_state_hooks_async(flow, context.flow_run)  # on_running
            book_of(context).start_attempt()
            with attempt:
                returned = await _call_and_wait_for_task_runs_async(flow, context, args, kwargs)
                attempt.conclude(final_state_from_return(returned, context))
            if attempt.retry_delay:
                await asyncio.sleep(attempt.retry_delay)
        return attempts.final  # type: ignore[return-value]
    finally:
        try:
            if attempts.final is not None:
                await flow_options.call_state_hooks_async(flow, context.flow_run)
        finally:
            if logs_prints:
                prints.restore()
            _end(context, leave)
            await _commit_records_async(context.flow_run)


def _end(context: FlowRunContext, leave: Any) -> None:
    try:
        context.task_runner.shutdown()
        book_of(context).close()
    finally:
        leave()


def _commit_records(flow_run: FlowRun) -> None:
    """When an outermost flow run ends, wait until its records are committed: other
    processes (`ferroflow runs ls`) see the run at once, and nothing is left to the exit hook."""
    recorder = _outermost_recorder(flow_run)
    if recorder is not None:
        recorder.finish()


async def _commit_records_async(flow_run: FlowRun) -> None:
    """`_commit_records`, waiting in a worker thread so that the event loop keeps running."""
    recorder = _outermost_recorder(flow_run)
    if recorder is not None:
        await asyncio.to_thread(recorder.finish)


def _outermost_recorder(flow_run: FlowRun) -> RunRecorder | None:
    """The recorder an outermost flow run took when it started (subflows share it)."""
    return flow_run.recorder if flow_run.parent_flow_run_id is None else None


# An attempt ends only after every task run it submitted, whether the function returned or
# raised — but not after a timeout (the function may still be running, and submitting) or an
# interrupt.


def _call_and_wait_for_task_runs(
    flow: FlowDefinition, context: FlowRunContext, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    try:
        returned = call_sync_body(flow, args, kwargs)
    except RunTimeoutError:
        raise
    except Exception:
        _wait_for_task_runs(context)
        raise
    _wait_for_task_runs(context)
    return returned


async def _call_and_wait_for_task_runs_async(
    flow: FlowDefinition, context: FlowRunContext, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    try:
        returned = await call_async_body(flow, args, kwargs)
    except RunTimeoutError:
        raise
    except Exception:
        await _wait_for_task_runs_async(context)
        raise
    await _wait_for_task_runs_async(context)
    return returned


def _unfinished_task_runs(context: FlowRunContext) -> list[concurrent.futures.Future[State]]:
    return [future.concurrent_future for future in context.futures if not future.done()]


def _wait_for_task_runs(context: FlowRunContext) -> None:
    unfinished = _unfinished_task_runs(context)
    if unfinished:
        concurrent.futures.wait(unfinished)


async def _wait_for_task_runs_async(context: FlowRunContext) -> None:
    unfinished = _unfinished_task_runs(context)
    if unfinished:
        await asyncio.wait([asyncio.wrap_future(future) for future in unfinished])


# --- the final state ----------------------------------------------------------------------------


def final_state_from_return(returned: Any, context: FlowRunContext) -> State:
    """The flow run's final state from its function's return value (Prefect 2's rules).

    - A state built by the user (not one of a run) is the final state, its data made a result.
    - Futures and states of runs (alone, or in a list, tuple or set): Completed if all
      completed, else Failed/Cancelled/Paused, with a "1/3 states failed." style message; the
      result is those states.
    - None: Completed, unless task runs of this attempt failed and the failure was never seen
      by the flow (raised to it, or read with `result()`): then Failed, counting them.
    - Any other value: Completed with that value as the result.
    """
    factory = context.result_factory
    returned = _futures_to_states(returned)
    if type(returned) is State and returned.run_id is None:
        if not isinstance(returned.data, BaseResult):
            try:
                returned.data = factory.create_result(returned.data)
            except Exception as exc:
                return failed_state(_RUN_KIND, exc)
        return returned
    if type(returned) is State or is_state_iterable(returned):
        states = [returned] if type(returned) is State else list(returned)
        state_type, message = aggregate_state_type_and_message(states)
        if state_type is StateType.COMPLETED:
            return _completed(factory, returned, message)
        return State(state_type, message=message, data=UnpersistedResult(returned))
    if returned is None:
        unseen = _unseen_failures(context)
        if unseen:
            total = len(context.child_runs)
            return State(
                StateType.FAILED,
                message=f"{len(unseen)}/{total} states failed.",
                data=UnpersistedResult(unseen),
            )
    if isinstance(returned, types.GeneratorType):  # generators cannot be kept: keep their items
        returned = list(returned)
    return _completed(factory, returned, None)


def _completed(factory: ResultFactory, value: Any, message: str | None) -> State:
    try:
        result = factory.create_result(value)
    except Exception as exc:
        return failed_state(_RUN_KIND, exc)
    return Completed(message=message, data=result)


def _unseen_failures(context: FlowRunContext) -> list[State]:
    return [
        run.state
        for run in context.child_runs
        if run.state.type in _FAILED_TYPES and not run.state.failure_observed
    ]


def _futures_to_states(returned: Any) -> Any:
    """Returned futures stand for their runs' final states."""
    if type(returned) is TaskFuture:
        return returned.state
    if type(returned) in (list, tuple, set) and any(type(i) is TaskFuture for i in returned):
        return type(returned)(i.state if type(i) is TaskFuture else i for i in returned)
    return returned
