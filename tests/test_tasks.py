import asyncio
import datetime
import logging
import threading
import time

import pytest

from ferroflow import flow, get_run_context, get_run_logger, task, unmapped
from ferroflow.context import TaskRunContext
from ferroflow.exceptions import (
    MappingLengthMismatch,
    MappingMissingIterable,
    MissingContextError,
    NestedTaskError,
    PersistenceConfigurationError,
    SerializationError,
    TaskRunTimeoutError,
)
from ferroflow.results import ResultFactory, UnpersistedResult
from ferroflow.tasks import Task

# --- definition ----------------------------------------------------------------------------------


def test_decorator_without_arguments_keeps_the_function():
    @task
    def double(x):
        """Twice x."""
        return 2 * x

    assert isinstance(double, Task)
    assert double.name == "double"
    assert double.description == "Twice x."
    assert double.fn(4) == 8
    assert double.__name__ == "double"


def test_decorator_with_arguments_stores_every_option():
    def key(context, parameters):
        return "k"

    @task(
        name="load",
        description="Loads.",
        version="1.2",
        retries=3,
        retry_delay_seconds=[1, 2],
        timeout_seconds=5,
        persist_result=True,
        result_storage="local-file-system/dev",
        result_serializer="json",
        cache_result_in_memory=False,
        cache_key_fn=key,
        cache_expiration=datetime.timedelta(minutes=1),
        refresh_cache=True,
    )
    def load():
        return 1

    assert (load.name, load.description, load.version) == ("load", "Loads.", "1.2")
    assert (load.retries, load.retry_delay_seconds, load.timeout_seconds) == (3, [1, 2], 5)
    assert load.persist_result is True
    assert load.result_storage == "local-file-system/dev"
    assert load.result_serializer == "json"
    assert load.cache_result_in_memory is False
    assert load.cache_key_fn is key
    assert load.cache_expiration == datetime.timedelta(minutes=1)
    assert load.refresh_cache is True


def test_with_options_returns_a_changed_copy():
    @task(retries=1)
    def work():
        return 1

    changed = work.with_options(name="other", retries=4, persist_result=True)
    assert (changed.name, changed.retries, changed.persist_result) == ("other", 4, True)
    assert (work.name, work.retries, work.persist_result) == ("work", 1, None)
    assert changed.fn is work.fn


def test_with_options_rejects_unknown_options():
    @task
    def work():
        return 1

    with pytest.raises(TypeError, match="retrys"):
        work.with_options(retrys=2)


def test_decorator_rejects_unknown_options():
    with pytest.raises(TypeError, match="unknown option"):
        task(retrys=2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "retries=-1"),
        ({"retry_delay_seconds": "soon"}, "retry_delay_seconds"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"cache_key_fn": "key"}, "cache_key_fn"),
        ({"cache_expiration": 60}, "cache_expiration"),
    ],
)
def test_invalid_options_are_refused_at_definition(options, message):
    with pytest.raises((TypeError, ValueError), match=message):

        @task(**options)
        def work():
            return 1


@pytest.mark.parametrize(
    ("options", "feature"),
    [
        ({"cache_key_fn": lambda context, parameters: "k"}, "cache_key_fn"),
    ],
)
def test_persist_result_false_with_a_feature_needing_persistence_fails_at_definition(options, feature):
    with pytest.raises(PersistenceConfigurationError) as raised:

        @task(persist_result=False, **options)
        def big():
            return 1

    message = str(raised.value)
    assert "'big'" in message and feature in message and "persist_result=False" in message


def test_with_options_checks_persistence_too():
    @task(persist_result=False)
    def work():
        return 1

    with pytest.raises(PersistenceConfigurationError, match="cache_key_fn"):
        work.with_options(cache_key_fn=lambda context, parameters: "k")


def test_persist_false_without_memory_cache_is_allowed_at_definition():
    # The spec's example: such a result is unavailable downstream, which is not a definition error.
    @task(persist_result=False, cache_result_in_memory=False)
    def bar():
        return "big"

    assert bar.persist_result is False and bar.cache_result_in_memory is False


# --- where tasks run -----------------------------------------------------------------------------


def test_calling_a_task_outside_a_flow_says_what_to_do():
    @task
    def lonely():
        return 1

    with pytest.raises(MissingContextError, match=r"outside a flow run.*lonely\.fn\(\.\.\.\)"):
        lonely()
    with pytest.raises(MissingContextError):
        lonely.submit()
    assert lonely.fn() == 1


def test_calling_a_task_inside_a_task_is_refused():
    @task
    def inner():
        return 1

    @task
    def outer():
        return inner()

    @flow
    def my_flow():
        return outer()

    with pytest.raises(NestedTaskError, match=r"inner\.fn\(\.\.\.\)"):
        my_flow()


def test_async_task_in_a_sync_flow_returns_its_value():
    @task
    async def add_one(x):
        await asyncio.sleep(0)
        return x + 1

    @flow
    def my_flow():
        return add_one(1) + add_one.submit(2).result()

    assert my_flow() == 5


def test_sync_task_in_an_async_flow_returns_its_value():
    @task
    def add_one(x):
        return x + 1

    @flow
    async def my_flow():
        future = await add_one.submit(2)
        return add_one(1) + await future.result()

    assert asyncio.run(my_flow()) == 5


def test_exception_reaches_the_caller_as_the_same_object():
    error = RuntimeError("exact")

    @task
    def fails():
        raise error

    @flow
    def my_flow():
        with pytest.raises(RuntimeError) as raised:
            fails()
        return raised.value

    assert my_flow() is error


# --- retries ---------------------------------------------------------------------------------


def test_task_retries_record_retrying_and_awaiting_retry_states():
    attempts = []

    @task(retries=2)
    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "ok"

    @flow
    def my_flow():
        state = flaky(return_state=True)
        run = get_run_context().child_runs[0]
        return state.result(), run.run_count, [s.name for s in run.state_history]

    value, run_count, history = my_flow()
    assert value == "ok" and run_count == 3
    assert history == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Retrying",
        "AwaitingRetry",
        "Retrying",
        "Completed",
    ]


def test_task_fails_after_its_last_retry():
    runs = []

    @task(retries=1)
    def always_fails():
        raise ValueError("no")

    @flow
    def my_flow():
        state = always_fails(return_state=True)
        runs.append(get_run_context().child_runs[0])
        return state.result(raise_on_failure=False)

    assert isinstance(my_flow(), ValueError)
    assert runs[0].run_count == 2 and runs[0].state.is_failed()


def test_retry_delay_list_gives_one_delay_per_retry(monkeypatch):
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)

    @task(retries=3, retry_delay_seconds=[0.5, 2])
    def always_fails():
        raise ValueError("no")

    @flow
    def my_flow():
        always_fails(return_state=True).result(raise_on_failure=False)

    my_flow()
    assert slept == [0.5, 2, 2]


# --- timeouts ----------------------------------------------------------------------------------


def test_sync_task_timeout_ends_in_timed_out_state():
    release = threading.Event()

    @task(timeout_seconds=0.05)
    def stuck():
        release.wait(5)

    @flow
    def my_flow():
        return stuck(return_state=True)

    try:
        state = my_flow(return_state=True).result(raise_on_failure=False)
    finally:
        release.set()
    assert state.is_failed() and state.name == "TimedOut"
    with pytest.raises(TaskRunTimeoutError, match="timeout of 0.05 seconds") as raised:
        state.result()
    assert isinstance(raised.value, TimeoutError)


def test_async_task_timeout_cancels_it():
    cancelled = []

    @task(timeout_seconds=0.05)
    async def stuck():
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    @flow
    async def my_flow():
        return await stuck(return_state=True)

    state = asyncio.run(my_flow(return_state=True)).result(raise_on_failure=False)
    assert state.name == "TimedOut" and cancelled == [True]


def test_timeout_error_raised_by_the_task_itself_is_not_a_timeout():
    @task(timeout_seconds=5)
    async def raises_timeout():
        raise TimeoutError("my own")

    @flow
    async def my_flow():
        return await raises_timeout(return_state=True)

    state = asyncio.run(my_flow(return_state=True)).result(raise_on_failure=False)
    assert state.name == "Failed"


# --- map ----------------------------------------------------------------------------------------


def test_map_submits_one_run_per_item_with_unmapped_and_static_arguments(task_runner):
    @task
    def combine(x, factor, suffix, *, offset):
        return f"{x * factor + offset}{suffix}"

    @flow(task_runner=task_runner)
    def my_flow():
        futures = combine.map([1, 2, 3], unmapped(10), "!", offset=[0, 1, 2])
        return [future.result() for future in futures]

    assert my_flow() == ["10!", "21!", "32!"]


def test_map_over_a_future_maps_over_its_value():
    @task
    def numbers():
        return [1, 2, 3]

    @task
    def square(x):
        return x * x

    @flow
    def my_flow():
        return [f.result() for f in square.map(numbers.submit())]

    assert my_flow() == [1, 4, 9]


def test_map_in_an_async_flow_is_awaited():
    @task
    async def square(x):
        return x * x

    @flow
    async def my_flow():
        futures = await square.map([1, 2, 3])
        return [await f.result() for f in futures]

    assert asyncio.run(my_flow()) == [1, 4, 9]


def test_map_refuses_iterables_of_different_lengths():
    @task
    def add(x, y):
        return x + y

    @flow
    def my_flow():
        add.map([1, 2], [1, 2, 3])

    with pytest.raises(MappingLengthMismatch, match="argument 0: 2, argument 1: 3"):
        my_flow()


def test_map_needs_an_iterable():
    @task
    def add(x, y):
        return x + y

    @flow
    def my_flow():
        add.map(1, unmapped([2]))

    with pytest.raises(MappingMissingIterable, match="no iterable"):
        my_flow()


# --- the run: identity, context, results --------------------------------------------------------


def test_task_run_context_carries_identity_and_parameters():
    @task
    def inspect_run(x, y=2):
        context = get_run_context()
        assert isinstance(context, TaskRunContext)
        return context.identity, context.parameters, context.task_run.name

    @flow
    def my_flow():
        return [inspect_run(1), inspect_run.submit(3).result()]

    (first_id, first_params, first_name), (second_id, second_params, second_name) = my_flow()
    assert first_id[0] == second_id[0]  # the same flow run
    assert first_id[1] == second_id[1] == inspect_run.task_key
    assert (first_id[2], second_id[2]) == (0, 1)
    assert first_params == {"x": 1, "y": 2} and second_params == {"x": 3, "y": 2}
    assert (first_name, second_name) == ("inspect_run-0", "inspect_run-1")


def test_result_factory_errors_fail_the_run_and_reach_the_caller(monkeypatch):
    def refuse(cls, task, flow_factory=None):
        raise PersistenceConfigurationError(f"task {task.name!r} cannot persist")

    monkeypatch.setattr(ResultFactory, "from_task", classmethod(refuse))

    @task
    def work():
        return 1

    @flow
    def my_flow():
        work()

    with pytest.raises(PersistenceConfigurationError, match="'work' cannot persist"):
        my_flow()


def test_create_result_errors_fail_the_run_without_retrying(monkeypatch):
    def refuse(self, value):
        raise SerializationError("cannot serialize")

    monkeypatch.setattr(ResultFactory, "create_result", refuse)
    calls = []

    @task(retries=2)
    def work():
        calls.append(1)
        return object()

    states = []

    @flow
    def my_flow():
        states.append(work(return_state=True))

    my_flow(return_state=True)
    (state,) = states
    assert state.is_failed() and len(calls) == 1
    with pytest.raises(SerializationError):
        state.result()


def test_prior_result_hook_short_circuits_the_run(monkeypatch):
    seen = []

    def lookup_prior_result(self, task_run_context):
        seen.append(task_run_context.parameters)
        return UnpersistedResult("from before") if task_run_context.parameters["x"] == 1 else None

    monkeypatch.setattr(ResultFactory, "lookup_prior_result", lookup_prior_result, raising=False)
    calls = []

    @task
    def work(x):
        calls.append(x)
        return "computed"

    @flow
    def my_flow():
        return work(1, return_state=True), work(2)

    cached, computed = my_flow()
    assert cached.name == "Cached" and cached.is_completed()
    assert cached.result() == "from before" and computed == "computed"
    assert calls == [2] and seen == [{"x": 1}, {"x": 2}]


# --- logging ---------------------------------------------------------------------------------


def test_run_logger_names_the_task_run(caplog):
    caplog.set_level(logging.INFO, logger="ferroflow")

    @task
    def talk():
        get_run_logger().info("working")

    @flow
    def my_flow():
        talk()

    my_flow()
    (record,) = [r for r in caplog.records if r.getMessage() == "working"]
    assert record.name == "ferroflow.task_runs"
    assert record.task_run_name == "talk-0"
    assert record.flow_name == "my-flow"
    assert record.task_run_id and record.flow_run_id


# --- interrupts ------------------------------------------------------------------------------


def test_keyboard_interrupt_crashes_the_run_and_keeps_going_up():
    runs = []

    @task
    def interrupted():
        runs.append(get_run_context().task_run)
        raise KeyboardInterrupt

    @flow
    def my_flow():
        interrupted()

    with pytest.raises(KeyboardInterrupt):
        my_flow()
    assert runs[0].state.is_crashed()
    assert runs[0].state.message == "Task run encountered an exception: KeyboardInterrupt"


def test_cancelled_async_task_ends_cancelled():
    runs = []

    @task
    async def cancelled():
        runs.append(get_run_context().task_run)
        raise asyncio.CancelledError

    @flow
    async def my_flow():
        with pytest.raises(asyncio.CancelledError):
            await cancelled()

    asyncio.run(my_flow())
    assert runs[0].state.is_cancelled() and runs[0].state.name == "Cancelled"
