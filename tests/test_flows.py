import asyncio
import threading
import time

import pytest

from ferroflow import flow, get_run_context, get_run_logger, task
from ferroflow.context import FlowRunContext
from ferroflow.exceptions import (
    FlowRunTimeoutError,
    MissingContextError,
    PersistenceConfigurationError,
)
from ferroflow.flows import Flow
from ferroflow.results import ResultFactory
from ferroflow.states import Completed, Failed, State
from ferroflow.task_runners import ConcurrentTaskRunner, SequentialTaskRunner


@task
def one():
    return 1


@task
def fails():
    raise ValueError("task failed")


# --- definition ----------------------------------------------------------------------------------


def test_decorator_without_arguments_uses_prefect_default_name():
    @flow
    def my_etl_flow():
        """Moves data."""
        return 1

    assert isinstance(my_etl_flow, Flow)
    assert my_etl_flow.name == "my-etl-flow"
    assert my_etl_flow.description == "Moves data."
    assert my_etl_flow.fn() == 1
    assert isinstance(my_etl_flow.task_runner, ConcurrentTaskRunner)


def test_decorator_with_arguments_stores_every_option():
    runner = SequentialTaskRunner()

    @flow(
        name="etl",
        description="d",
        version="2",
        task_runner=runner,
        retries=2,
        retry_delay_seconds=3,
        timeout_seconds=60,
        persist_result=True,
        result_storage="local-file-system/dev",
        result_serializer="compressed/pickle",
        cache_result_in_memory=False,
    )
    def etl():
        return 1

    assert (etl.name, etl.description, etl.version, etl.task_runner) == ("etl", "d", "2", runner)
    assert (etl.retries, etl.retry_delay_seconds, etl.timeout_seconds) == (2, 3, 60)
    assert etl.persist_result is True and etl.cache_result_in_memory is False
    assert etl.result_storage == "local-file-system/dev"
    assert etl.result_serializer == "compressed/pickle"


def test_task_runner_class_is_instantiated_and_junk_refused():
    given_a_class = Flow(lambda: 1, task_runner=SequentialTaskRunner)
    assert isinstance(given_a_class.task_runner, SequentialTaskRunner)
    with pytest.raises(TypeError, match="not a task runner"):
        Flow(lambda: 1, task_runner="threads")


def test_with_options_returns_a_changed_copy():
    @flow
    def my_flow():
        return 1

    changed = my_flow.with_options(name="renamed", retries=1, result_storage="x/y")
    assert (changed.name, changed.retries, changed.result_storage) == ("renamed", 1, "x/y")
    assert (my_flow.name, my_flow.retries, my_flow.result_storage) == ("my-flow", 0, None)
    assert changed() == 1
    with pytest.raises(TypeError, match="unknown option"):
        my_flow.with_options(cache_key_fn=None)


def test_persist_result_false_without_memory_cache_fails_at_definition():
    with pytest.raises(PersistenceConfigurationError, match="'big'"):

        @flow(name="big", persist_result=False, cache_result_in_memory=False)
        def big():
            return 1


# --- calling -----------------------------------------------------------------------------------


def test_flow_exception_reaches_the_caller_as_the_same_object():
    error = LookupError("flow failed")

    @flow
    def my_flow():
        raise error

    with pytest.raises(LookupError) as raised:
        my_flow()
    assert raised.value is error
    state = my_flow(return_state=True)
    assert state.is_failed() and state.result(raise_on_failure=False) is error
    assert state.message == "Flow run encountered an exception: LookupError: flow failed"


def test_async_flow_called_from_sync_code_returns_a_coroutine():
    @flow
    async def my_flow():
        return 1

    coroutine = my_flow()
    assert asyncio.iscoroutine(coroutine)
    assert asyncio.run(coroutine) == 1


def test_subflows_of_every_colour(task_runner):
    @flow
    def sync_child(x):
        return one() + x

    @flow
    async def async_child(x):
        return one() + x

    @flow(task_runner=task_runner)
    def sync_parent():
        return sync_child(10) + async_child(100)

    @flow(task_runner=task_runner)
    async def async_parent():
        return sync_child(10) + await async_child(100)

    assert sync_parent() == 112
    assert asyncio.run(async_parent()) == 112


def test_subflow_run_records_its_parent():
    seen = {}

    @flow
    def child():
        seen["child"] = get_run_context().flow_run

    @flow
    def parent():
        seen["parent"] = get_run_context().flow_run
        child()

    parent()
    assert seen["child"].parent_flow_run_id == seen["parent"].id
    assert seen["parent"].parent_flow_run_id is None


def test_subflow_gets_the_parent_result_factory(monkeypatch):
    parents = []
    original = ResultFactory.from_flow.__func__

    def recording(cls, flow, parent=None):
        parents.append(parent)
        return original(cls, flow, parent)

    monkeypatch.setattr(ResultFactory, "from_flow", classmethod(recording))

    @flow
    def child():
        return get_run_context().result_factory

    @flow
    def parent():
        return get_run_context().result_factory, child()

    parent_factory, child_factory = parent()
    assert parents == [None, parent_factory]


# --- final state rules ---------------------------------------------------------------------------


def test_flow_returning_a_plain_value_is_completed():
    @flow
    def my_flow():
        return {"a": 1}

    state = my_flow(return_state=True)
    assert state.is_completed() and state.result() == {"a": 1}


def test_flow_returning_none_with_an_unseen_task_failure_fails_and_counts_them(task_runner):
    @flow(task_runner=task_runner)
    def my_flow():
        one()
        fails(return_state=True)
        one.submit()

    state = my_flow(return_state=True)
    assert state.is_failed()
    assert state.message == "1/3 states failed."
    with pytest.raises(ValueError, match="task failed"):
        state.result()


def test_unseen_submitted_failures_are_counted_too():
    @flow
    def my_flow():
        fails.submit()
        fails.submit()

    assert my_flow(return_state=True).message == "2/2 states failed."


def test_an_unseen_failed_subflow_counts_like_a_task_run():
    @flow
    def broken_child():
        raise ValueError("child failed")

    @flow
    def parent():
        one()
        broken_child(return_state=True)

    state = parent(return_state=True)
    assert state.message == "1/2 states failed."
    with pytest.raises(ValueError, match="child failed"):
        state.result()


def test_flow_returning_none_after_handling_the_failure_is_completed():
    @flow
    def handled():
        try:
            fails()
        except ValueError:
            pass

    @flow
    def read():
        fails.submit().result(raise_on_failure=False)

    assert handled(return_state=True).is_completed()
    assert read(return_state=True).is_completed()


def test_flow_returning_a_value_is_completed_despite_failed_tasks():
    @flow
    def my_flow():
        fails(return_state=True)
        return "fine"

    assert my_flow() == "fine"


def test_flow_returning_states_is_derived_from_them():
    @flow
    def all_good():
        return [one(return_state=True), one.submit()]

    @flow
    def one_bad():
        return one(return_state=True), fails.submit(), one.submit()

    good = all_good(return_state=True)
    assert good.is_completed() and good.message == "All states completed."
    assert [s.result() for s in good.result()] == [1, 1]
    bad = one_bad(return_state=True)
    assert bad.is_failed() and bad.message == "1/3 states failed."
    with pytest.raises(ValueError, match="task failed"):
        bad.result()
    names = [s.name for s in bad.result(raise_on_failure=False)]
    assert names == ["Completed", "Failed", "Completed"]


def test_flow_returning_a_state_it_built_ends_in_that_state():
    @flow
    def my_flow():
        return Failed(message="gave up")

    @flow
    def completes():
        return Completed(message="done early", data=5)

    state = my_flow(return_state=True)
    assert state.is_failed() and state.message == "gave up"
    assert completes() == 5


def test_flow_waits_for_unfinished_task_runs():
    finished = []

    @task
    def slow():
        time.sleep(0.05)
        finished.append(True)

    @flow
    def my_flow():
        slow.submit()

    my_flow()
    assert finished == [True]


# --- retries and timeouts ---------------------------------------------------------------------


def test_flow_retries_rerun_the_function_with_the_same_task_identities():
    attempts = []
    identities = []
    flow_runs = []

    @task
    def record():
        identities.append(get_run_context().identity)

    @flow(retries=2)
    def my_flow():
        record()
        flow_runs.append(get_run_context().flow_run)
        attempts.append(flow_runs[-1].run_count)
        if len(attempts) < 3:
            raise RuntimeError("again")
        return "done"

    state = my_flow(return_state=True)
    assert state.result() == "done" and attempts == [1, 2, 3]
    assert len(set(identities)) == 1  # each retry's task run has the identity of the first
    assert all(run is flow_runs[0] for run in flow_runs)  # one flow run, three attempts
    names = [s.name for s in flow_runs[0].state_history]
    assert names == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Retrying",
        "AwaitingRetry",
        "Retrying",
        "Completed",
    ]


def test_flow_retries_also_follow_failures_derived_from_tasks():
    calls = []

    @flow(retries=1)
    def my_flow():
        calls.append(1)
        fails.submit()

    assert my_flow(return_state=True).is_failed() and len(calls) == 2


def test_sync_flow_timeout():
    release = threading.Event()

    @flow(timeout_seconds=0.05)
    def stuck():
        release.wait(5)

    try:
        state = stuck(return_state=True)
    finally:
        release.set()
    assert state.name == "TimedOut" and state.is_failed()
    with pytest.raises(FlowRunTimeoutError, match="Python cannot stop a thread"):
        state.result()


def test_async_flow_timeout():
    @flow(timeout_seconds=0.05)
    async def stuck():
        await asyncio.sleep(5)

    with pytest.raises(FlowRunTimeoutError):
        asyncio.run(stuck())


def test_failing_result_factory_fails_the_flow(monkeypatch):
    def refuse(cls, flow, parent=None):
        raise PersistenceConfigurationError("no storage")

    monkeypatch.setattr(ResultFactory, "from_flow", classmethod(refuse))

    @flow
    def my_flow():
        return 1

    with pytest.raises(PersistenceConfigurationError, match="no storage"):
        my_flow()


# --- context and logging -------------------------------------------------------------------------


def test_flow_run_context_and_run_record():
    @flow
    def my_flow():
        context = get_run_context()
        assert isinstance(context, FlowRunContext)
        return context.flow_run.name, context.flow_run.run_count, context.flow

    name, run_count, the_flow = my_flow()
    assert name.startswith("my-flow-") and run_count == 1 and the_flow is my_flow


def test_run_context_outside_a_run_is_a_clear_error():
    with pytest.raises(MissingContextError, match="inside a @flow or @task"):
        get_run_context()
    with pytest.raises(MissingContextError, match="outside a flow or task run"):
        get_run_logger()


def test_flow_run_logger(caplog):
    import logging

    caplog.set_level(logging.INFO, logger="ferroflow")

    @flow
    def my_flow():
        logger = get_run_logger()
        assert get_run_logger() is logger  # made once per run
        logger.info("hello", extra={"custom": 1})

    my_flow()
    (record,) = [r for r in caplog.records if r.getMessage() == "hello"]
    assert record.name == "ferroflow.flow_runs"
    assert record.flow_name == "my-flow" and record.flow_run_name.startswith("my-flow-")
    assert record.custom == 1
    assert not hasattr(record, "task_run_name")


def test_state_types_are_states():
    @flow
    def my_flow():
        return 1

    assert isinstance(my_flow(return_state=True), State)


def test_run_logs_reach_the_console_when_logging_is_not_configured():
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        from ferroflow import flow, get_run_logger, task

        @task
        def talk():
            get_run_logger().info("from the task")

        @flow
        def chatty():
            get_run_logger().warning("from the flow")
            talk()

        chatty()
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    lines = completed.stderr.splitlines()
    assert any("| WARNING | Flow run 'chatty-" in ln and "from the flow" in ln for ln in lines)
    assert any("| INFO    | Task run 'talk-0' - from the task" in line for line in lines)


def test_states_of_runs_can_be_pickled():
    import pickle

    @flow
    def my_flow():
        return [one(return_state=True)]

    state = my_flow(return_state=True)
    copy = pickle.loads(pickle.dumps(state))
    assert copy.is_completed() and copy.result()[0].result() == 1


def test_keyboard_interrupt_crashes_the_flow_run_and_keeps_going_up():
    flow_runs = []

    @flow
    def interrupted():
        flow_runs.append(get_run_context().flow_run)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert flow_runs[0].state.is_crashed()
