import asyncio
import threading

import pytest

from ferroflow import flow, task
from ferroflow.exceptions import UpstreamTaskError
from ferroflow.futures import TaskFuture


@task
def add(x, y):
    return x + y


@task
def total(values):
    return sum(values)


@task
def fails():
    raise ValueError("upstream broke")


def test_submit_returns_a_future_with_state_and_result(task_runner):
    @flow(task_runner=task_runner)
    def my_flow():
        future = add.submit(1, 2)
        assert isinstance(future, TaskFuture)
        final = future.wait()
        return final, future.state, future.result()

    final, state, value = my_flow()
    assert final.is_completed() and state is final and value == 3


def test_futures_passed_to_tasks_are_resolved_even_when_nested(task_runner):
    @flow(task_runner=task_runner)
    def my_flow():
        a = add.submit(1, 1)
        b = add.submit(a, 1)
        c = add(b, 1)  # a plain call waits for its future inputs
        mixed = {"list": [a, b], "tuple": (c,), "set": {a}}
        return total.submit(mixed["list"] + list(mixed["tuple"]) + list(mixed["set"])).result()

    assert my_flow() == 2 + 3 + 4 + 2


def test_states_passed_to_tasks_are_resolved():
    @task
    def describe(mapping):
        return sorted(mapping.items())

    @flow
    def my_flow():
        state = add(1, 2, return_state=True)
        return describe({"sum": state, "nested": (state,)})

    assert my_flow() == [("nested", (3,)), ("sum", 3)]


def test_failed_upstream_makes_the_downstream_not_ready(task_runner):
    ran = []

    @task
    def downstream(value):
        ran.append(value)

    @flow(task_runner=task_runner)
    def my_flow():
        future = downstream.submit([fails.submit()])
        state = future.wait()
        expected = r"upstream task run 'fails-0' ended Failed"
        with pytest.raises(UpstreamTaskError, match=expected) as err:
            future.result()
        return state, err.value

    state, error = my_flow()
    assert state.is_failed() and state.name == "NotReady"
    assert isinstance(error.__cause__, ValueError)
    assert ran == []


def test_wait_for_orders_runs_without_passing_data():
    order = []

    @task
    def first():
        order.append("first")

    @task
    def second():
        order.append("second")

    @flow
    def my_flow():
        gate = threading.Event()

        @task
        def blocked():
            gate.wait(5)
            order.append("blocked")

        b = blocked.submit()
        s = second.submit(wait_for=[b])
        first()
        gate.set()
        s.wait()

    my_flow()
    assert order == ["first", "blocked", "second"]


def test_wait_with_timeout_returns_none_and_result_raises_timeout_error():
    gate = threading.Event()

    @task
    def blocked():
        gate.wait(5)
        return "late"

    @flow
    def my_flow():
        future = blocked.submit()
        waited = future.wait(timeout=0.01)
        with pytest.raises(TimeoutError, match="did not finish within 0.01 seconds"):
            future.result(timeout=0.01)
        running = future.state
        gate.set()
        return waited, running, future.result()

    waited, running, value = my_flow()
    assert waited is None and not running.is_final() and value == "late"


def test_async_futures():
    @task
    async def double(x):
        await asyncio.sleep(0)
        return 2 * x

    @flow
    async def my_flow():
        a = await double.submit(1)
        b = await double.submit(a)  # an async task waits for its future input
        state = await b.wait()
        assert await a.wait(timeout=1) is not None
        return state.is_completed(), await b.result(), await a.result(timeout=1)

    assert asyncio.run(my_flow()) == (True, 4, 2)


def test_async_future_of_a_failed_run_raises():
    @task
    async def broken():
        raise KeyError("k")

    @flow
    async def my_flow():
        future = await broken.submit()
        with pytest.raises(KeyError):
            await future.result()
        return isinstance(await future.result(raise_on_failure=False), KeyError)

    assert asyncio.run(my_flow()) is True
