"""The engine behaves the same on every task runner: in the flow's thread, in threads, in worker
processes of this machine and on Dask clusters (a LocalCluster, and a scheduler and worker
started as commands with their own HOME and working folder).

Tasks here count their executions in files (a worker process cannot append to a list of the
test), and the test module travels to the workers by value.
"""

import asyncio
import logging
import os
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from ferroflow import flow, task
from ferroflow.exceptions import UpstreamTaskError
from ferroflow.logging import get_run_logger
from ferroflow.results import PersistedResult
from ferroflow.runstore import default_store_url, open_store
from ferroflow.tasks import unmapped

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)


def count_call(folder: str, name: str) -> int:
    """Append one line to `folder/name`; return how many lines it has now (calls so far)."""
    path = Path(folder, name)
    with open(path, "a") as marks:
        marks.write(f"{os.getpid()}\n")
    return len(path.read_text().splitlines())


@task
def add(x, y):
    return x + y


@task
def total(values):
    return sum(values)


@task
async def add_later(x, y):
    await asyncio.sleep(0.01)
    return x + y


@task
def fails(message="bad input"):
    raise ValueError(message)


@task
def pid():
    return os.getpid()


# --- the spec's submit and future examples ---------------------------------------------------------


def test_submit_returns_a_future_whose_result_wait_and_state_agree(any_runner):
    @flow(task_runner=any_runner)
    def pipeline():
        future = add.submit(1, 2)
        final = future.wait()
        return final, future.state, future.result()

    final, state, value = pipeline()
    assert final.is_completed() and state.is_completed() and value == 3


def test_futures_given_to_tasks_even_nested_become_their_values(any_runner):
    @flow(task_runner=any_runner)
    def pipeline():
        a = add.submit(1, 1)
        b = add.submit(a, 1)
        c = add_later.submit(b, 1)
        return total.submit({"list": [a, b], "tuple": (c,)}["list"] + [c]).result()

    assert pipeline() == 2 + 3 + 4


def test_map_with_unmapped_and_futures_among_the_arguments(any_runner):
    @flow(task_runner=any_runner)
    def pipeline():
        offset = add.submit(5, 5)
        futures = add.map([1, 2, 3], unmapped(offset))
        return [future.result() for future in futures]

    assert pipeline() == [11, 12, 13]


def test_async_tasks_run_on_the_runner(any_runner):
    @flow(task_runner=any_runner)
    async def pipeline():
        futures = [await add_later.submit(i, 1) for i in range(3)]
        return [await future.result() for future in futures]

    assert asyncio.run(pipeline()) == [1, 2, 3]


# --- failures ---------------------------------------------------------------------------------------


def test_a_failure_raises_or_is_returned_and_makes_downstream_runs_not_ready(any_runner):
    @flow(task_runner=any_runner)
    def pipeline():
        failed = fails.submit("no rows")
        downstream = add.submit(failed, 1)
        with pytest.raises(ValueError, match="no rows"):
            failed.result()
        returned = failed.result(raise_on_failure=False)
        with pytest.raises(UpstreamTaskError, match="upstream task run 'fails-0' ended Failed"):
            downstream.result()
        return returned, failed.state, downstream.state

    returned, failed_state, downstream_state = pipeline(return_state=True).result(raise_on_failure=False)
    assert isinstance(returned, ValueError) and str(returned) == "no rows"
    assert failed_state.is_failed() and downstream_state.name == "NotReady"


def test_a_flow_whose_task_failed_unseen_fails(any_runner):
    @flow(task_runner=any_runner)
    def pipeline():
        fails.submit()

    state = pipeline(return_state=True)
    assert state.is_failed()


# --- retries and timeouts on the workers -----------------------------------------------------------


def test_task_retries_run_where_the_task_runs(any_runner, tmp_path):
    @task(retries=2)
    def flaky(folder):
        if count_call(folder, "flaky") < 3:
            raise RuntimeError("not yet")
        return "done"

    @flow(task_runner=any_runner)
    def pipeline():
        return flaky.submit(str(tmp_path)).result()

    assert pipeline() == "done"
    assert len((tmp_path / "flaky").read_text().splitlines()) == 3


def test_a_task_timeout_applies_on_the_worker(any_runner):
    @task(timeout_seconds=0.2)
    def slow():
        time.sleep(1.5)

    @flow(task_runner=any_runner)
    def pipeline():
        return slow.submit().wait().name

    assert pipeline() == "TimedOut"


# --- results, caching, flow retries -----------------------------------------------------------------


def test_a_persisted_result_comes_back_as_a_reference(any_runner):
    @task(persist_result=True)
    def make():
        return b"r" * (1 << 20)

    @flow(task_runner=any_runner)
    def pipeline():
        made = make.submit()
        longer = add.submit(made, b"!").result()
        return made.wait(), longer

    state, longer = pipeline()
    assert isinstance(state.data, PersistedResult) and len(cloudpickle.dumps(state)) < 16 << 10
    assert state.result() == b"r" * (1 << 20) and longer == b"r" * (1 << 20) + b"!"


def test_the_task_cache_is_shared_by_the_workers(any_runner, tmp_path):
    @task(cache_key_fn=lambda context, parameters: f"cache-{parameters['n']}", persist_result=True)
    def square(folder, n):
        count_call(folder, "square")
        return n * n

    @flow(task_runner=any_runner)
    def pipeline():
        return [
            (future.result(), future.state.name) for future in square.map(unmapped(str(tmp_path)), [3, 3])
        ]

    first = pipeline()
    second = pipeline()
    assert [value for value, _ in first + second] == [9, 9, 9, 9]
    assert [name for _, name in second] == ["Cached", "Cached"]
    assert len((tmp_path / "square").read_text().splitlines()) in (1, 2)  # the two first may race


def test_a_flow_retry_reuses_results_computed_on_the_workers(any_runner, tmp_path):
    @task(persist_result=True)
    def expensive(folder):
        count_call(folder, "expensive")
        return "value"

    @flow(retries=1, task_runner=any_runner)
    def pipeline():
        future = expensive.submit(str(tmp_path))
        value, name = future.result(), future.state.name
        if count_call(str(tmp_path), "attempts") == 1:
            raise RuntimeError("the first attempt fails after its task")
        return value, name

    assert pipeline() == ("value", "Cached")
    assert len((tmp_path / "expensive").read_text().splitlines()) == 1


# --- logs and the run store ------------------------------------------------------------------------


def test_run_logger_messages_of_the_workers_reach_the_flows_log(any_runner, caplog):
    @task
    def chatty(n):
        get_run_logger().info("working on %d", n)
        return os.getpid()

    @flow(task_runner=any_runner)
    def pipeline():
        return [future.result() for future in chatty.map([1, 2])]

    with caplog.at_level(logging.INFO, logger="ferroflow"):
        pipeline()
    messages = {(r.getMessage(), r.task_run_name) for r in caplog.records if r.name == "ferroflow.task_runs"}
    assert {("working on 1", "chatty-0"), ("working on 2", "chatty-1")} <= messages


def test_task_runs_and_their_states_are_recorded_in_the_flows_run_store(any_runner, tmp_path):
    @task(retries=1, task_run_name="flaky-{n}")
    def flaky(folder, n):
        if count_call(folder, "flaky") == 1:
            raise RuntimeError("first attempt")
        return n

    @flow(task_runner=any_runner)
    def pipeline():
        return flaky.submit(str(tmp_path), 7).result()

    assert pipeline() == 7
    with open_store(default_store_url()) as store:
        (flow_run,) = store.list_flow_runs()
        (task_run,) = store.list_task_runs(flow_run.id)
        states = [state.name for state in store.list_states(task_run.id)]
    assert task_run.name == "flaky-7"
    assert states == ["Pending", "Running", "AwaitingRetry", "Retrying", "Completed"]


def test_a_persisted_flow_result_may_hold_futures_and_states_of_persisted_task_runs(any_runner):
    @task(persist_result=True)
    def make():
        return b"f" * 1000

    @flow(persist_result=True, task_runner=any_runner)
    def pipeline():
        future = make.submit()
        return {"future": future, "state": future.wait()}

    returned = pipeline()
    assert returned["future"].result() == returned["state"].result() == b"f" * 1000
