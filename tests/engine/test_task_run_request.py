"""A task run handed to a runner describes itself as a picklable request that runs in another
process and comes back as a small state holding a reference to its persisted result."""

import concurrent.futures
import subprocess
import sys
import threading

import cloudpickle
import pytest

from ferroflow import flow, task
from ferroflow.results import PersistedResult
from ferroflow.task_runners import BaseTaskRunner, TaskConcurrencyType

cloudpickle.register_pickle_by_value(sys.modules[__name__])

# Unpickles a request and its executor from stdin, runs it, and writes the final state back.
CHILD = """
import sys, cloudpickle
execute, request = cloudpickle.loads(sys.stdin.buffer.read())
sys.stdout.buffer.write(cloudpickle.dumps(execute(request)))
"""


def run_in_another_process(execute, request):
    sent = cloudpickle.dumps((execute, request))
    child = subprocess.run(
        [sys.executable, "-c", CHILD], input=sent, capture_output=True, check=True, timeout=120
    )
    return child.stdout


class SubprocessTaskRunner(BaseTaskRunner):
    """Runs each sync task run in a fresh Python process, from its request alone."""

    concurrency_type = TaskConcurrencyType.PARALLEL

    def __init__(self):
        self.returned_sizes = []
        self._lock = threading.Lock()

    def duplicate(self):
        return self  # so that the test can read what happened

    def submit(self, run):
        future = concurrent.futures.Future()
        payload = run_in_another_process(run.execute, run.request)
        with self._lock:
            self.returned_sizes.append(len(payload))
        future.set_result(cloudpickle.loads(payload))
        return future

    def submit_coroutine(self, run, loop):
        raise NotImplementedError


@pytest.mark.timeout(300)
def test_a_task_run_executes_in_another_process_from_its_request_and_returns_a_reference():
    big = b"x" * (1 << 20)

    @task(persist_result=True)
    def make(n: int) -> bytes:
        return big * n

    @task
    def size(data: bytes) -> int:
        return len(data)

    runner = SubprocessTaskRunner()

    @flow(task_runner=runner)
    def pipeline():
        made = make.submit(2)
        return made.result(), size.submit(made).result(), made.state

    value, length, state = pipeline()
    assert value == big * 2
    assert length == 2 << 20
    assert state.is_completed() and isinstance(state.data, PersistedResult)
    # What came back holds the result's reference, not its 2 MiB value.
    assert max(runner.returned_sizes) < 64 << 10


def test_a_persisted_result_pickles_as_its_reference(tmp_path):
    @task(persist_result=True)
    def make() -> bytes:
        return b"y" * (1 << 20)

    @flow
    def pipeline():
        return make(return_state=True)

    state = pipeline()
    payload = cloudpickle.dumps(state)
    assert len(payload) < 64 << 10
    assert cloudpickle.loads(payload).result() == b"y" * (1 << 20)


@pytest.mark.timeout(300)
def test_a_flow_retry_reuses_a_result_computed_in_another_process():
    calls = []

    @task(persist_result=True)
    def once() -> str:
        return "computed"

    runner = SubprocessTaskRunner()

    @flow(retries=1, task_runner=runner)
    def pipeline():
        future = once.submit()
        calls.append((future.result(), future.state.name))
        if len(calls) == 1:
            raise RuntimeError("the first attempt fails after its task")

    pipeline()
    assert calls == [("computed", "Completed"), ("computed", "Cached")]


def test_a_request_parts_with_what_every_run_of_its_task_shares_and_is_made_whole_again():
    requests = []

    class Recording(BaseTaskRunner):
        concurrency_type = TaskConcurrencyType.SEQUENTIAL

        def duplicate(self):
            return self

        def submit(self, run):
            requests.append(run.request)
            future = concurrent.futures.Future()
            future.set_result(run())
            return future

        def submit_coroutine(self, run, loop):
            raise NotImplementedError

    @task
    def double(x):
        return 2 * x

    @flow(task_runner=Recording())
    def pipeline():
        return [double.submit(x).result() for x in range(2)]

    assert pipeline() == [0, 2]
    (commons, first), (commons_again, second) = (request.parted() for request in requests)
    # The same objects for both runs: a runner recognizes them by identity.
    assert [id(part) for part in (commons.task, commons.result_factory, commons.settings)] == [
        id(part) for part in (commons_again.task, commons_again.result_factory, commons_again.settings)
    ]
    assert commons.identity == commons_again.identity  # all but the run's id and dynamic key
    assert first.task is first.result_factory is first.settings is None
    assert len(cloudpickle.dumps(first)) < len(cloudpickle.dumps(requests[0])) // 3
    assert commons.complete(first) == requests[0] and commons.complete(second) == requests[1]
    assert cloudpickle.loads(cloudpickle.dumps(commons)).complete(second).args == (1,)
