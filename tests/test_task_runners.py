import asyncio
import concurrent.futures
import threading

import pytest

from ferroflow import flow, task
from ferroflow.task_runners import (
    BaseTaskRunner,
    ConcurrentTaskRunner,
    SequentialTaskRunner,
    TaskConcurrencyType,
)


def test_sequential_runner_finishes_each_run_before_submit_returns():
    order = []

    @task
    def step(name):
        order.append((name, threading.current_thread().name))

    @flow(task_runner=SequentialTaskRunner())
    def my_flow():
        step.submit("a")
        order.append(("between", threading.current_thread().name))
        step.submit("b")
        return threading.current_thread().name

    flow_thread = my_flow()
    assert order == [("a", flow_thread), ("between", flow_thread), ("b", flow_thread)]


def test_concurrent_runner_runs_sync_tasks_at_the_same_time():
    # Both runs must be inside the barrier at once: a sequential runner would break it.
    barrier = threading.Barrier(2, timeout=5)

    @task
    def meet():
        barrier.wait()
        return threading.current_thread().name

    @flow(task_runner=ConcurrentTaskRunner())
    def my_flow():
        return [f.result() for f in [meet.submit(), meet.submit()]]

    names = my_flow()
    assert len(set(names)) == 2 and all(n.startswith("ferroflow-task") for n in names)


def test_concurrent_runner_runs_async_tasks_concurrently_on_one_loop():
    # a waits for an event only b sets: they can only both finish if they overlap.
    @task
    async def waiter(event):
        await asyncio.wait_for(event.wait(), 5)
        return threading.current_thread().name

    @task
    async def setter(event):
        event.set()
        return threading.current_thread().name

    @flow
    async def my_flow():
        event = asyncio.Event()
        first = await waiter.submit(event)
        second = await setter.submit(event)
        return await first.result(), await second.result(), threading.current_thread().name

    first, second, flow_thread = asyncio.run(my_flow())
    assert first == second == flow_thread


def test_async_tasks_of_a_sync_flow_share_one_loop_thread():
    @task
    async def where():
        await asyncio.sleep(0)
        return threading.current_thread().name

    @flow
    def my_flow():
        futures = [where.submit() for _ in range(3)]
        return {f.result() for f in futures} | {where()}, threading.current_thread().name

    threads, flow_thread = my_flow()
    assert len(threads) == 1 and flow_thread not in threads


def test_sequential_runner_in_an_async_flow_awaits_each_submission():
    order = []

    @task
    async def step(name):
        await asyncio.sleep(0)
        order.append(name)

    @flow(task_runner=SequentialTaskRunner())
    async def my_flow():
        await step.submit("a")
        order.append("between")
        await step.submit("b")

    asyncio.run(my_flow())
    assert order == ["a", "between", "b"]


def test_long_chains_do_not_exhaust_a_small_pool():
    @task
    def inc(x):
        return x + 1

    @flow(task_runner=ConcurrentTaskRunner(max_workers=1))
    def my_flow():
        future = inc.submit(0)
        for _ in range(20):
            future = inc.submit(future)
        return future.result()

    assert my_flow() == 21


def test_each_flow_run_gets_its_own_runner():
    runner = ConcurrentTaskRunner(max_workers=3)
    copy = runner.duplicate()
    assert copy is not runner and copy.max_workers == 3
    assert runner.concurrency_type is TaskConcurrencyType.CONCURRENT
    assert SequentialTaskRunner().concurrency_type is TaskConcurrencyType.SEQUENTIAL


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_max_workers_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="max_workers"):
        ConcurrentTaskRunner(max_workers=bad)


class RecordingRunner(BaseTaskRunner):
    """A runner written against the documented interface only."""

    concurrency_type = TaskConcurrencyType.CONCURRENT

    def __init__(self):
        self.events = []
        self._pool = None

    def duplicate(self):
        return self  # so that the test can read what happened

    def start(self):
        self.events.append("start")
        self._pool = concurrent.futures.ThreadPoolExecutor(2)

    def submit(self, run):
        self.events.append("submit")
        return self._pool.submit(run)

    def submit_coroutine(self, run, loop):
        self.events.append("submit_coroutine")
        return asyncio.run_coroutine_threadsafe(run(), loop)

    def shutdown(self):
        self.events.append("shutdown")
        self._pool.shutdown()


def test_a_custom_runner_needs_only_the_documented_interface():
    @task
    def double(x):
        return 2 * x

    @task
    async def triple(x):
        return 3 * x

    runner = RecordingRunner()

    @flow(task_runner=runner)
    def my_flow():
        return double.submit(1).result() + triple.submit(1).result() + double(1)

    assert my_flow() == 7
    assert runner.events == ["start", "submit", "submit_coroutine", "shutdown"]


def test_a_shut_down_concurrent_runner_refuses_new_runs():
    runner = ConcurrentTaskRunner()
    runner.start()
    assert runner.submit(lambda: "ran").result() == "ran"
    runner.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        runner.submit(lambda: "late")


def test_fan_out_and_fan_in(task_runner):
    @task
    def square(x):
        return x * x

    @task
    def add_all(values):
        return sum(values)

    @flow(task_runner=task_runner)
    def my_flow():
        squares = square.map(range(200))
        partial_sums = [add_all.submit(squares[i : i + 20]) for i in range(0, 200, 20)]
        return add_all.submit(partial_sums).result()

    assert my_flow() == sum(x * x for x in range(200))
