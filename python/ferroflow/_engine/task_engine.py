"""Task runs: what `my_task(...)`, `my_task.submit(...)` and `my_task.map(...)` do.

A task run goes Pending -> Running -> (AwaitingRetry -> Retrying ->)* Completed | Failed.
Before its first attempt it gets its result factory, its inputs are resolved (futures and
states replaced by their values) and prior results are looked up to see whether the run can be
skipped: an earlier attempt of the flow run or the task cache may already have its result
(see `_prior_state` and `ferroflow._engine.caching`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import datetime
import functools
import inspect
import pickle
import time
from collections.abc import Callable, Iterable
from typing import Any

import cloudpickle  # type: ignore[import-untyped]

from ferroflow._asyncutils import call_when_all_done, in_async_caller
from ferroflow._engine import caching, prints
from ferroflow._engine.bodies import call_async_body, call_sync_body
from ferroflow._engine.definitions import TaskDefinition
from ferroflow._engine.hooks import call_hooks, call_hooks_async, task_hooks_for
from ferroflow._engine.inputs import (
    UpstreamFailed,
    has_run_values,
    pending_upstream_futures,
    replace_inputs,
    resolve_inputs,
    unmapped,
    upstream_futures,
)
from ferroflow._engine.parameters import LazyParameters, bind_with_defaults
from ferroflow._engine.retry_policy import retry_condition
from ferroflow._engine.run_book import RunBook, book_of
from ferroflow._engine.runs import Attempts, FlowRun, TaskRun, failed_state, run_identity, set_state
from ferroflow._engine.task_run_request import TaskRunIdentity, TaskRunReport, TaskRunRequest, UpstreamInput
from ferroflow._engine.templates import rename, run_name, storage_key
from ferroflow.cache_policies import carry_source_digests
from ferroflow.context import FlowRunContext, TaskRunContext, set_flow_run_context, set_task_run_context
from ferroflow.exceptions import (
    MappingLengthMismatch,
    MappingMissingIterable,
    MissingContextError,
    NestedTaskError,
)
from ferroflow.futures import TaskFuture
from ferroflow.logging import RunRecordCollector, emit_records, run_records_level
from ferroflow.settings import adopted_settings, get_current_settings
from ferroflow.states import (
    Cached,
    Completed,
    Crashed,
    ExceptionResult,
    State,
    StateDetails,
    state_value,
)
from ferroflow.task_runners import (
    BaseTaskRunner,
    SequentialTaskRunner,
    TaskConcurrencyType,
    finished_future,
)

_RUN_KIND = "Task run"


# --- entry points (called by Task) ------------------------------------------------------------


def call_task(task: TaskDefinition, args: tuple[Any, ...], kwargs: dict[str, Any], return_state: bool) -> Any:
    flow_context = _flow_context_for(task, "called")
    if task.isasync:
        if in_async_caller():
            return _call_async(task, flow_context, args, kwargs, return_state)
        book = book_of(flow_context)
        state = book.run_coroutine(
            run_task_async(task, _new_task_run(task, flow_context, args, kwargs), flow_context, args, kwargs)
        )
    else:
        _wait_blocking(pending_upstream_futures(args, kwargs))
        task_run = _new_task_run(task, flow_context, args, kwargs)
        state = run_task_sync(task, task_run, flow_context, args, kwargs)
    return state if return_state else state_value(state)


async def _call_async(
    task: TaskDefinition,
    flow_context: FlowRunContext,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    return_state: bool,
) -> Any:
    task_run = _new_task_run(task, flow_context, args, kwargs)
    state = await run_task_async(task, task_run, flow_context, args, kwargs)
    return state if return_state else state_value(state)


def submit_task(
    task: TaskDefinition, args: tuple[Any, ...], kwargs: dict[str, Any], wait_for: tuple[Any, ...]
) -> Any:
    flow_context = _flow_context_for(task, "submitted")
    if in_async_caller():
        return _submit_from_async(task, flow_context, args, kwargs, wait_for)
    return _submit(task, flow_context, args, kwargs, wait_for)


def map_task(
    task: TaskDefinition, args: tuple[Any, ...], kwargs: dict[str, Any], wait_for: tuple[Any, ...]
) -> Any:
    flow_context = _flow_context_for(task, "mapped")
    if in_async_caller():
        return _map_from_async(task, flow_context, args, kwargs, wait_for)
    calls = _mapped_calls(task, _mapping_values(args), _mapping_values(kwargs))
    return [_submit(task, flow_context, a, k, wait_for) for a, k in calls]


# --- where a task may run ---------------------------------------------------------------------


def _flow_context_for(task: TaskDefinition, verb: str) -> FlowRunContext:
    task_context = TaskRunContext.get()
    if task_context is not None:
        raise NestedTaskError(
            f"Task {task.name!r} was {verb} inside the run of task {task_context.task.name!r}. "
            f"Tasks run only from flows: inside a task, call `{task.fn.__name__}.fn(...)` to use "
            "the plain function, or call both tasks from the flow."
        )
    flow_context = FlowRunContext.get()
    if flow_context is None:
        raise MissingContextError(
            f"Task {task.name!r} was {verb} outside a flow run. Tasks run inside flows: call it "
            f"from a function decorated with @flow, or call `{task.fn.__name__}.fn(...)` to run "
            "the plain function."
        )
    return flow_context


def _new_task_run(
    task: TaskDefinition, flow_context: FlowRunContext, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> TaskRun:
    task_key = task.task_key
    book = book_of(flow_context)
    recorder = flow_context.flow_run.recorder
    task_run = TaskRun(
        task.name,
        task_key,
        book.next_dynamic_key(task_key),
        flow_context.flow_run.id,
        recorder=recorder,
        parameters=None if recorder is None else LazyParameters(task.fn, args, kwargs),
    )
    book.child_runs.append(task_run)
    return task_run


# --- running one task run ---------------------------------------------------------------------


def run_task_sync(
    task: TaskDefinition,
    task_run: TaskRun,
    flow_context: FlowRunContext,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    wait_for: tuple[Any, ...] = (),
) -> State:
    """Run a sync task to its final state (its upstream futures have finished)."""
    task_context = TaskRunContext(
        task, task_run, flow_context, args, kwargs, is_async=False, bind=bind_with_defaults
    )
    leave = set_task_run_context(task_context)
    logs_prints = task.log_prints
    if logs_prints:
        prints.redirect()
    try:
        attempts = _attempts(task, task_run)
        if _prepare(task_context, attempts, wait_for):
            for attempt in attempts:
                with attempt:
                    value = call_sync_body(task, task_context.args, task_context.kwargs)
                    attempt.conclude(_completed_state(task_context, value), retryable=False)
                if attempt.retry_delay:
                    time.sleep(attempt.retry_delay)
            if task.on_completion or task.on_failure:
                hooks = task_hooks_for(task, attempts.final)  # type: ignore[arg-type]
                if hooks:
                    call_hooks(hooks, task, task_run, attempts.final)  # type: ignore[arg-type]
        return attempts.final  # type: ignore[return-value]
    finally:
        caching.finish(task_context)
        if logs_prints:
            prints.restore()
        leave()


async def run_task_async(
    task: TaskDefinition,
    task_run: TaskRun,
    flow_context: FlowRunContext,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    wait_for: tuple[Any, ...] = (),
) -> State:
    """Run an async task to its final state, first awaiting its upstream futures."""
    pending = pending_upstream_futures(args, kwargs, wait_for)
    if pending:
        await asyncio.wait([asyncio.wrap_future(future) for future in pending])
    task_context = TaskRunContext(
        task, task_run, flow_context, args, kwargs, is_async=True, bind=bind_with_defaults
    )
    leave = set_task_run_context(task_context)
    logs_prints = task.log_prints
    if logs_prints:
        prints.redirect()
    try:
        attempts = _attempts(task, task_run)
        if _prepare(task_context, attempts, wait_for):
            for attempt in attempts:
                with attempt:
                    value = await call_async_body(task, task_context.args, task_context.kwargs)
                    attempt.conclude(_completed_state(task_context, value), retryable=False)
                if attempt.retry_delay:
                    await asyncio.sleep(attempt.retry_delay)
            if task.on_completion or task.on_failure:
                hooks = task_hooks_for(task, attempts.final)  # type: ignore[arg-type]
                if hooks:
                    await call_hooks_async(hooks, task, task_run, attempts.final)  # type: ignore[arg-type]
        return attempts.final  # type: ignore[return-value]
    finally:
        caching.finish(task_context)
        if logs_prints:
            prints.restore()
        leave()


def _attempts(task: TaskDefinition, task_run: TaskRun) -> Attempts:
    """The attempts of `task_run`, with the task's jitter and retry condition if it has them."""
    if task.retry_jitter_factor is None and task.retry_condition_fn is None:
        return Attempts(task_run, _RUN_KIND, task.retries, task.retry_delay_seconds)
    return Attempts(
        task_run,
        _RUN_KIND,
        task.retries,
        task.retry_delay_seconds,
        task.retry_jitter_factor,
        retry_condition(task, task_run),
    )


def _prepare(task_context: TaskRunContext, attempts: Attempts, wait_for: tuple[Any, ...]) -> bool:
    """Everything before the first attempt. Returns False when the run ended without running
    its function: its result factory could not be made, an input's run failed, a prior
    result was found, or its `task_run_name` could not be made."""
    try:
        book = book_of(task_context.flow_run_context)
        task_context.result_factory = book.task_result_factory(task_context.task)
        args, kwargs = task_context.args, task_context.kwargs
        if has_run_values((args, kwargs, wait_for)):
            task_context.args = resolve_inputs(args)
            task_context.kwargs = resolve_inputs(kwargs)
            resolve_inputs(wait_for)
        prior = _prior_state(task_context)
        if prior is None and task_context.task.task_run_name is not None:
            _name_run(task_context, args, kwargs)
    except UpstreamFailed as upstream:
        attempts.finish(upstream.state)
        return False
    except Exception as exc:
        attempts.finish(failed_state(_RUN_KIND, exc))
        return False
    if prior is not None:
        attempts.finish(prior)
        return False
    return True


def _name_run(task_context: TaskRunContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Name the run by its task's `task_run_name`, from its parameters with their values (as
    Prefect 2 does when the run starts). The run store records the run again under that name,
    with the arguments as passed (`args`, `kwargs`)."""
    task = task_context.task
    name = run_name("task_run_name", task.task_run_name, task_context.parameters)
    rename(task_context.task_run, name, LazyParameters(task.fn, args, kwargs))


def _prior_state(task_context: TaskRunContext) -> State | None:
    """A Cached state holding a result from before that stands in for running the task: an
    earlier attempt's (flow retries) or the task cache's (`caching.prior_result`), else one from
    the result factory's optional `lookup_prior_result(task_run_context)` hook (for custom
    factories). None runs the task.
    """
    prior = caching.prior_result(task_context)
    if prior is not None:
        result, message = prior
        return Cached(data=result, message=message, state_details=_cache_details(task_context))
    lookup = getattr(task_context.result_factory, "lookup_prior_result", None)
    supplied = None if lookup is None else lookup(task_context)
    return None if supplied is None else Cached(data=supplied, message="Supplied by the result factory.")


def _completed_state(task_context: TaskRunContext, value: Any) -> State:
    """Completed with the result object for `value`; Failed if it could not be made (e.g. the
    serializer refused the value), so that the error reaches the caller."""
    factory = task_context.result_factory
    key_template = task_context.task.result_storage_key
    try:
        if key_template is None:
            result = factory.create_result(value)  # type: ignore[union-attr]
        else:
            key = storage_key(key_template, task_context)
            result = factory.create_result(value, storage_key=key)  # type: ignore[union-attr]
    except Exception as exc:
        return failed_state(_RUN_KIND, exc)
    if task_context.cache_key is not None:
        expiration = caching.remember(task_context, result)
        return Completed(data=result, state_details=_cache_details(task_context, expiration))
    return Completed(data=result)


def _cache_details(
    task_context: TaskRunContext, expiration: datetime.datetime | None = None
) -> StateDetails | None:
    """The state details naming the cache entry of a run with a cache key (the run ids are
    added when the state is set on the run); None without a key."""
    if task_context.cache_key is None:
        return None
    return StateDetails(cache_key=task_context.cache_key, cache_expiration=expiration)


# --- submission -------------------------------------------------------------------------------


def _submit(
    task: TaskDefinition,
    flow_context: FlowRunContext,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    wait_for: tuple[Any, ...],
) -> TaskFuture:
    task_run = _new_task_run(task, flow_context, args, kwargs)
    runner = flow_context.task_runner
    if runner.executes_requests:
        # The run executes elsewhere from its request, sync or async alike.
        call = LocalTaskRunCall(task, task_run, flow_context, args, kwargs, wait_for)
        if runner.schedules_upstream:
            future = _submitted(runner, call)  # the runner makes the upstream runs dependencies
        else:
            future = _submit_when_ready(runner, call, pending_upstream_futures(args, kwargs, wait_for))
    elif task.isasync:
        run_async = functools.partial(run_task_async, task, task_run, flow_context, args, kwargs, wait_for)
        book = book_of(flow_context)
        future = runner.submit_coroutine(run_async, book.event_loop())
    else:
        call = LocalTaskRunCall(task, task_run, flow_context, args, kwargs, wait_for)
        future = _submit_when_ready(runner, call, pending_upstream_futures(args, kwargs, wait_for))
    return _tracked(flow_context, TaskFuture(task_run, future))


async def _submit_from_async(
    task: TaskDefinition,
    flow_context: FlowRunContext,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    wait_for: tuple[Any, ...],
) -> TaskFuture:
    runner = flow_context.task_runner
    if task.isasync and runner.concurrency_type is TaskConcurrencyType.SEQUENTIAL:
        # A sequential runner finishes each run before the next; on the flow's own loop that
        # means awaiting it here.
        task_run = _new_task_run(task, flow_context, args, kwargs)
        state = await run_task_async(task, task_run, flow_context, args, kwargs, wait_for)
        return _tracked(flow_context, TaskFuture(task_run, finished_future(state)))
    return _submit(task, flow_context, args, kwargs, wait_for)


def _tracked(flow_context: FlowRunContext, future: TaskFuture) -> TaskFuture:
    """Register a future with its flow run, which waits for it before ending."""
    book = book_of(flow_context)
    book.futures.append(future)
    return future


def _submit_when_ready(
    runner: BaseTaskRunner,
    run: LocalTaskRunCall,
    upstream: list[concurrent.futures.Future[State]],
) -> concurrent.futures.Future[State]:
    """Submit `run` once every upstream future has finished. Waiting this way, rather than in a
    worker thread, never ties up a worker (so a bounded pool cannot deadlock on a chain)."""
    if not upstream:
        return _submitted(runner, run)
    outer: concurrent.futures.Future[State] = concurrent.futures.Future()

    def submit() -> None:
        try:
            inner = _submitted(runner, run)
        except BaseException as exc:
            outer.set_exception(exc)
            return
        inner.add_done_callback(functools.partial(_copy_outcome, outer))

    call_when_all_done(upstream, submit)
    return outer


def _submitted(runner: BaseTaskRunner, call: LocalTaskRunCall) -> concurrent.futures.Future[State]:
    """Hand `call` to the runner. A run the runner sent elsewhere (it took the call's `request`)
    changed states there, not in this process's record of it: what it reports (its states, name
    and log records) is set on the record (and so recorded) and emitted here before the future
    given back to the flow finishes."""
    future: concurrent.futures.Future[Any] = runner.submit(call)
    if not call.sent_elsewhere:
        return future
    outer: concurrent.futures.Future[State] = concurrent.futures.Future()

    def on_done(inner: concurrent.futures.Future[Any]) -> None:
        try:
            _adopt_outcome(call, inner, outer)
        except BaseException as exc:  # never leave the flow waiting on this run
            if not outer.done():
                outer.set_exception(exc)

    future.add_done_callback(on_done)
    return outer


def _adopt_outcome(
    call: LocalTaskRunCall,
    inner: concurrent.futures.Future[Any],
    outer: concurrent.futures.Future[State],
) -> None:
    task_run = call.task_run
    exception = _failure_of(inner)
    if exception is not None:
        # The run could not report (its worker died, the runner failed to run it): this
        # process's record ends Crashed, which the future reports.
        if not task_run.state.is_final():
            set_state(
                task_run,
                Crashed(
                    message=f"Task run {task_run.name!r} crashed: {exception!r}",
                    data=ExceptionResult(exception),
                ),
            )
        outer.set_exception(exception)
        return
    outcome = inner.result()
    if isinstance(outcome, TaskRunReport):
        if outcome.name != task_run.name:
            rename(task_run, outcome.name, LazyParameters(call.task.fn, call.args, call.kwargs))
        for state in outcome.history:
            set_state(task_run, state)
        emit_records(outcome.logs)
        outcome = outcome.state
    if outcome is not task_run.state:
        set_state(task_run, outcome)
    outer.set_result(outcome)


def _failure_of(future: concurrent.futures.Future[Any]) -> BaseException | None:
    if future.cancelled():
        return concurrent.futures.CancelledError("the task runner cancelled the run")
    return future.exception()


def _copy_outcome(target: concurrent.futures.Future[State], source: concurrent.futures.Future[State]) -> None:
    exception = source.exception()
    if exception is not None:
        target.set_exception(exception)
    else:
        target.set_result(source.result())


def _wait_blocking(futures: list[concurrent.futures.Future[State]]) -> None:
    if futures:
        concurrent.futures.wait(futures)


# --- a task run as a call for a task runner ---------------------------------------------------


class LocalTaskRunCall:
    """A submitted sync task run, as a task runner receives it (`ferroflow.task_runners.
    TaskRunCall`): calling it runs the task run here, with the context of the moment it was
    submitted (the flow run's); `request` describes it for another process, where
    `execute_task_run` runs it."""

    __slots__ = (
        "task",
        "task_run",
        "flow_context",
        "args",
        "kwargs",
        "wait_for",
        "sent_elsewhere",
        "_context",
    )

    def __init__(
        self,
        task: TaskDefinition,
        task_run: TaskRun,
        flow_context: FlowRunContext,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        wait_for: tuple[Any, ...],
    ) -> None:
        self.task = task
        self.task_run = task_run
        self.flow_context = flow_context
        self.args = args
        self.kwargs = kwargs
        self.wait_for = wait_for
        # Set when a runner takes the request to execute the run in another process.
        self.sent_elsewhere = False
        self._context = contextvars.copy_context()

    def __call__(self) -> State:
        return self._context.run(
            run_task_sync,
            self.task,
            self.task_run,
            self.flow_context,
            self.args,
            self.kwargs,
            self.wait_for,
        )

    @property
    def execute(self) -> Callable[[TaskRunRequest], State]:
        return execute_task_run

    @property
    def report(self) -> Callable[..., TaskRunReport]:
        """`report_task_run`: executes a request like `execute` and hands back the run's
        `TaskRunReport` (states, name, log records) for the flow's process to record."""
        return report_task_run

    @property
    def upstream(self) -> list[TaskFuture]:
        """The futures among the run's inputs and `wait_for`, each once, in order."""
        return upstream_futures(self.args, self.kwargs, self.wait_for)

    @property
    def request(self) -> TaskRunRequest:
        """The run, described for another process. Its upstream runs have finished (runners
        get a run only then); their values replace the futures and states among its inputs."""
        self.sent_elsewhere = True
        resolve_inputs(self.wait_for)  # an upstream failure raises UpstreamFailed here
        args, kwargs = resolve_inputs(self.args), resolve_inputs(self.kwargs)
        template = self.task.task_run_name
        if isinstance(template, str):
            self._name_here(template, args, kwargs)
        return self._described(args, kwargs, ())

    def deferred_request(self, upstream: list[TaskFuture]) -> TaskRunRequest:
        """The run, described for a process that gets the final states of `upstream` (the
        futures among its inputs, `self.upstream`) alongside the request: each future is an
        `UpstreamInput` marker naming its position in that list. For runners that let their
        cluster schedule the dependencies instead of waiting for them here."""
        self.sent_elsewhere = True
        positions = {id(future): index for index, future in enumerate(upstream)}

        def marker(future: TaskFuture) -> UpstreamInput:
            return UpstreamInput(positions[id(future)], future.task_run.name)

        args = replace_inputs(self.args, TaskFuture, marker)
        kwargs = replace_inputs(self.kwargs, TaskFuture, marker)
        wait_for = tuple(replace_inputs(list(self.wait_for), TaskFuture, marker))
        return self._described(args, kwargs, wait_for)

    def _described(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], wait_for: tuple[Any, ...]
    ) -> TaskRunRequest:
        book = book_of(self.flow_context)
        task_run = self.task_run
        if self.task.cache_key_fn is not None or getattr(self.task, "cache_policy", None) is not None:
            # The cache key is made where the run executes, which may not read the source.
            carry_source_digests(inspect.unwrap(self.task.fn))
        return TaskRunRequest(
            task=self.task,
            args=args,
            kwargs=kwargs,
            identity=TaskRunIdentity(
                task_run_id=task_run.id,
                task_name=task_run.task_name,
                task_key=task_run.task_key,
                dynamic_key=task_run.dynamic_key,
                flow_run_id=task_run.flow_run_id,
                flow_name=self.flow_context.flow_run.flow_name,
                flow_run_name=self.flow_context.flow_run.name,
            ),
            result_factory=book.task_result_factory(self.task),
            earlier_result=book.earlier_attempt_result(run_identity(task_run)),
            refresh_cache=book.refresh_cache_by_default(),
            settings=get_current_settings(),
            log_prints=book.log_prints,
            wait_for=wait_for,
            log_level=run_records_level(),
        )

    def _name_here(self, template: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Name this process's record of the run by its `task_run_name` template, as the
        process executing it will (a name function can only run there, in the run's context)."""
        fn = self.task.fn
        try:
            name = run_name("task_run_name", template, bind_with_defaults(fn, args, kwargs))
        except Exception:
            return  # the run fails with this error where it executes, which reports it
        rename(self.task_run, name, LazyParameters(fn, self.args, self.kwargs))


def execute_task_run(request: TaskRunRequest, upstream_states: tuple[State, ...] = ()) -> State:
    """Run the task run `request` describes, in this process, outside its flow run, and return
    its final state (a persisted result in it pickles as its reference only).

    The run has the identity the flow run gave it, the result factory and settings of the flow
    run's process, and reuses an earlier attempt's result or a cache entry as it would there.
    Its states are not recorded here: the flow's process records the final state it gets back.
    `upstream_states` are the final states the request's `UpstreamInput` markers stand for.
    """
    return _execute(request, upstream_states).state


def report_task_run(request: TaskRunRequest, upstream_states: tuple[State, ...] = ()) -> TaskRunReport:
    """`execute_task_run`, handing back the run's `TaskRunReport`: its final state, the states
    before it, its name and the records it logged, each in a form that pickles (an exception
    that does not pickle travels as a `RuntimeError` with its text)."""
    collector = RunRecordCollector(str(request.identity.task_run_id), request.log_level)
    with collector:
        task_run = _execute(request, upstream_states)
    history = task_run.state_history
    for state in history:
        _make_exception_portable(state)
    return TaskRunReport(
        state=task_run.state, history=history[1:-1], name=task_run.name, logs=collector.records
    )


def _make_exception_portable(state: State) -> None:
    data = state.data
    if not isinstance(data, ExceptionResult):
        return
    try:
        pickle.loads(cloudpickle.dumps(data.exception))
    except Exception:
        exception = data.exception
        stand_in = RuntimeError(f"{type(exception).__qualname__}: {exception}")
        stand_in.__cause__ = None
        state.data = ExceptionResult(stand_in)


def _execute(request: TaskRunRequest, upstream_states: tuple[State, ...]) -> TaskRun:
    identity = request.identity
    args, kwargs, wait_for = request.args, request.kwargs, request.wait_for
    if upstream_states:

        def upstream(marker: UpstreamInput) -> TaskFuture:
            return TaskFuture.finished(marker.name, upstream_states[marker.index])

        args = replace_inputs(args, UpstreamInput, upstream)
        kwargs = replace_inputs(kwargs, UpstreamInput, upstream)
        wait_for = tuple(replace_inputs(list(wait_for), UpstreamInput, upstream))
    with adopted_settings(request.settings):
        flow_run = FlowRun(identity.flow_name, None, run_id=identity.flow_run_id)
        if identity.flow_run_name is not None:
            flow_run.name = identity.flow_run_name
        book = RunBook(flow_run, request.result_factory, loop=None)
        book.adopt(
            request.task,
            request.result_factory,
            request.earlier_result,
            request.refresh_cache,
            (identity.task_key, identity.dynamic_key),
        )
        flow_context = FlowRunContext(
            _FlowOfARequest(identity.flow_name),
            flow_run,
            request.result_factory,
            SequentialTaskRunner(),
            is_async=False,
            engine=book,
        )
        task_run = TaskRun(
            identity.task_name,
            identity.task_key,
            identity.dynamic_key,
            identity.flow_run_id,
            run_id=identity.task_run_id,
        )
        book.child_runs.append(task_run)
        book.log_prints = request.log_prints
        leave = set_flow_run_context(flow_context)
        if request.log_prints:
            prints.redirect()
        try:
            if request.task.isasync:
                asyncio.run(run_task_async(request.task, task_run, flow_context, args, kwargs, wait_for))
            else:
                run_task_sync(request.task, task_run, flow_context, args, kwargs, wait_for)
            return task_run
        finally:
            if request.log_prints:
                prints.restore()
            leave()
            try:
                book.commit_run_store()  # the cache entry is visible before the report
            finally:
                book.close()


class _FlowOfARequest:
    """What a task run executing from its request knows of its flow: the name (the run
    logger's records carry it)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


# --- mapping ----------------------------------------------------------------------------------


async def _map_from_async(
    task: TaskDefinition,
    flow_context: FlowRunContext,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    wait_for: tuple[Any, ...],
) -> list[TaskFuture]:
    pending = pending_upstream_futures(args, kwargs)
    if pending:
        await asyncio.wait([asyncio.wrap_future(future) for future in pending])
    calls = _mapped_calls(task, _mapping_values(args), _mapping_values(kwargs))
    return [await _submit_from_async(task, flow_context, a, k, wait_for) for a, k in calls]


def _mapping_values(arguments: Any) -> Any:
    """Map arguments with futures and states replaced by their values (a failed one raises)."""
    if isinstance(arguments, dict):
        return {key: _mapping_value(value) for key, value in arguments.items()}
    return tuple(_mapping_value(value) for value in arguments)


def _mapping_value(value: Any) -> Any:
    if isinstance(value, TaskFuture):
        _wait_blocking([value.concurrent_future])
        return state_value(value.state)
    if isinstance(value, State):
        return state_value(value)
    return value


def _is_mapped(value: Any) -> bool:
    if isinstance(value, (str, bytes, bytearray)):
        return False
    if isinstance(value, unmapped):
        return False
    return isinstance(value, Iterable)


def _mapped_calls(
    task: TaskDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """One (args, kwargs) per run of `task.map(...)`."""
    mapped = {where: list(value) for where, value in [*enumerate(args), *kwargs.items()] if _is_mapped(value)}
    if not mapped:
        raise MappingMissingIterable(
            f"{task.name}.map() got no iterable argument to map over. Pass a list (or another "
            "iterable) for the argument that varies, or call the task directly for a single run."
        )
    lengths = {len(values) for values in mapped.values()}
    if len(lengths) > 1:
        described = ", ".join(
            f"{'argument ' + str(where) if isinstance(where, int) else where}: {len(values)}"
            for where, values in mapped.items()
        )
        raise MappingLengthMismatch(
            f"{task.name}.map() got iterables of different lengths ({described}). Give them the "
            "same length, or wrap the argument that should go whole to every run in unmapped()."
        )

    def fixed(value: Any) -> Any:
        return value.value if isinstance(value, unmapped) else value

    calls = []
    for index in range(lengths.pop()):
        call_args = tuple(
            mapped[position][index] if position in mapped else fixed(value)
            for position, value in enumerate(args)
        )
        call_kwargs = {
            key: mapped[key][index] if key in mapped else fixed(value) for key, value in kwargs.items()
        }
        calls.append((call_args, call_kwargs))
    return calls
