import asyncio
import datetime
import warnings

import pytest

from ferroflow import flow, task
from ferroflow.exceptions import AsyncFetchStateResultWarning, FailedRun, UnfinishedRun
from ferroflow.results import BaseResult
from ferroflow.settings import temporary_settings
from ferroflow.states import (
    AwaitingRetry,
    Cached,
    Cancelled,
    Completed,
    Crashed,
    Failed,
    Paused,
    Pending,
    Retrying,
    Running,
    Scheduled,
    State,
    StateType,
    TimedOut,
)


@pytest.mark.parametrize(
    ("constructor", "state_type", "name"),
    [
        (Scheduled, StateType.SCHEDULED, "Scheduled"),
        (Pending, StateType.PENDING, "Pending"),
        (Running, StateType.RUNNING, "Running"),
        (Completed, StateType.COMPLETED, "Completed"),
        (Failed, StateType.FAILED, "Failed"),
        (Cancelled, StateType.CANCELLED, "Cancelled"),
        (Crashed, StateType.CRASHED, "Crashed"),
        (Paused, StateType.PAUSED, "Paused"),
        (Cached, StateType.COMPLETED, "Cached"),
        (Retrying, StateType.RUNNING, "Retrying"),
        (AwaitingRetry, StateType.SCHEDULED, "AwaitingRetry"),
        (TimedOut, StateType.FAILED, "TimedOut"),
    ],
)
def test_constructors_give_prefect_types_and_names(constructor, state_type, name):
    state = constructor()
    assert state.type is state_type
    assert state.name == name


def test_predicates_follow_the_type():
    assert Completed().is_completed() and Completed().is_final()
    assert Cached().is_completed()
    assert Failed().is_failed() and Failed().is_final()
    assert Crashed().is_crashed() and Crashed().is_final()
    assert Cancelled().is_cancelled() and Cancelled().is_final()
    assert Pending().is_pending() and not Pending().is_final()
    assert Running().is_running() and not Running().is_final()
    assert Retrying().is_running()
    assert Scheduled().is_scheduled() and AwaitingRetry().is_scheduled()
    assert Paused().is_paused() and not Paused().is_final()
    assert TimedOut().is_failed()


def test_timestamp_is_timezone_aware_utc():
    before = datetime.datetime.now(datetime.UTC)
    state = Completed()
    assert state.timestamp.tzinfo is datetime.UTC
    assert before <= state.timestamp <= datetime.datetime.now(datetime.UTC)


def test_message_is_kept():
    assert Failed(message="it broke").message == "it broke"


def test_result_of_a_user_built_completed_state_is_its_data():
    assert Completed(data=5).result() == 5


def test_failed_state_result_raises_the_original_exception_object():
    @task
    def fails():
        raise KeyError("missing")

    states = []

    @flow
    def my_flow():
        states.append(fails(return_state=True))
        return True

    my_flow()
    (task_state,) = states
    assert isinstance(task_state, State) and task_state.is_failed()
    with pytest.raises(KeyError) as raised:
        task_state.result()
    assert task_state.result(raise_on_failure=False) is raised.value
    assert "KeyError" in task_state.message


def test_failed_state_without_an_exception_raises_failed_run():
    with pytest.raises(FailedRun, match="custom failure"):
        Failed(message="custom failure").result()


def test_unfinished_state_result_raises_unfinished_run():
    with pytest.raises(UnfinishedRun, match="Running"):
        Running().result()


def test_completed_task_state_holds_the_result_object():
    @task
    def one():
        return 1

    @flow
    def my_flow():
        return one(return_state=True)

    task_state = my_flow()
    assert isinstance(task_state.data, BaseResult)
    assert task_state.data.get() == 1
    assert task_state.result() == 1


def test_sync_fetch_false_returns_the_raw_result_object():
    state = Completed(data=BaseResultOf(7))
    assert state.result(fetch=False) is state.data
    assert state.result() == 7


class BaseResultOf(BaseResult):
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


# --- the spec's "Resolving results" box: State.result() in async code --------------------------


async def test_async_result_without_fetch_warns_and_returns_the_raw_result_object():
    state = Completed(data=BaseResultOf(7))
    with temporary_settings(async_fetch_state_result=False):
        with pytest.warns(AsyncFetchStateResultWarning, match="fetch=True"):
            raw = state.result()
    assert raw is state.data


async def test_async_result_with_fetch_true_is_awaitable():
    state = Completed(data=BaseResultOf(7))
    assert await state.result(fetch=True) == 7


async def test_async_result_with_fetch_false_is_silent():
    state = Completed(data=BaseResultOf(7))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert state.result(fetch=False) is state.data


async def test_async_fetch_setting_makes_result_awaitable_by_default():
    state = Completed(data=BaseResultOf(7))
    with temporary_settings(async_fetch_state_result=True):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert await state.result() == 7


async def test_async_fetch_raises_failures():
    with pytest.raises(FailedRun):
        await Failed(message="nope").result(fetch=True)


def test_warning_class_is_a_user_warning_so_it_is_shown_by_default():
    assert issubclass(AsyncFetchStateResultWarning, UserWarning)


def test_result_inside_a_sync_flow_called_from_async_code_is_not_async():
    @task
    def one():
        return 1

    @flow
    def sync_flow():
        return one(return_state=True).result() + 1

    async def main():
        return sync_flow()

    assert asyncio.run(main()) == 2
