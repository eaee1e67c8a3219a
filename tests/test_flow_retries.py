"""Flow retries reuse work: a task or subflow run that completed with a persisted result in an
earlier attempt of the same flow run returns it ("Cached") instead of running again."""

import asyncio
import pickle
from pathlib import Path

import pytest

from ferroflow import _core, flow, task
from ferroflow.exceptions import CachedResultUnavailableWarning
from ferroflow.results import PersistedResult


class Flaky:
    """Fails the first `failures` calls, then succeeds."""

    def __init__(self, failures: int = 1) -> None:
        self.failures = failures

    def __call__(self) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("transient")


def test_a_retry_reuses_persisted_results_and_reruns_the_rest(task_runner):
    ran = []
    flaky_step = Flaky()

    @task
    def load():
        ran.append("load")
        return [1, 2, 3]  # persisted: the flow has retries

    @task
    def notify():
        ran.append("notify")  # returns None: a literal, not persisted -> runs again

    @task
    def step():
        ran.append("step")
        flaky_step()
        return "stepped"

    states = []

    @flow(retries=1, task_runner=task_runner)
    def pipeline():
        attempt = [load(return_state=True), notify(return_state=True), step.submit().wait()]
        states.append(attempt)
        return attempt[0].result() + [attempt[2].result()]

    assert pipeline() == [1, 2, 3, "stepped"]
    assert ran == ["load", "notify", "step", "notify", "step"]
    first_attempt, second_attempt = states
    assert [s.name for s in first_attempt] == ["Completed", "Completed", "Failed"]
    assert [s.name for s in second_attempt] == ["Cached", "Completed", "Completed"]
    assert second_attempt[0].message == "Reused the result of an earlier attempt of this flow run."
    assert isinstance(second_attempt[0].data, PersistedResult)
    assert second_attempt[0].data.storage_key == first_attempt[0].data.storage_key


def test_runs_are_matched_by_task_and_call_order():
    ran = []
    flaky = Flaky()

    @task
    def square(x):
        ran.append(x)
        return x * x

    @flow(retries=1)
    def squares():
        values = [future.result() for future in square.map([1, 2, 3])]
        flaky()
        return values

    assert squares() == [1, 4, 9]  # each call got its own earlier result back, in call order
    # The mapped runs run concurrently, so they start in any order; the retry ran none of them.
    assert sorted(ran) == [1, 2, 3]


def test_a_failed_task_runs_again_on_retry():
    ran = []
    flaky = Flaky()

    @task
    def fetch():
        ran.append("fetch")
        flaky()
        return "data"

    @flow(retries=2)
    def my_flow():
        return fetch()

    assert my_flow() == "data"
    assert ran == ["fetch", "fetch"]


def test_without_retries_nothing_is_reused_across_flow_runs():
    ran = []

    @task(persist_result=True)
    def load():
        ran.append(1)
        return "x"

    @flow
    def my_flow():
        return load()

    my_flow()
    my_flow()
    assert ran == [1, 1]


def test_a_subflow_with_a_persisted_result_is_reused():
    ran = []
    flaky = Flaky()

    @flow
    def child(x):
        ran.append(x)
        return {"child": x}

    @flow(retries=1)
    def parent():
        first = child(1, return_state=True)
        flaky()
        return first

    state = parent(return_state=True)
    assert state.is_completed()
    assert ran == [1]
    assert state.result().name == "Cached"


def test_async_flow_retries_reuse_async_tasks():
    ran = []
    flaky = Flaky()

    @task
    async def fetch(x):
        ran.append(x)
        return x * 10

    @flow(retries=1)
    async def my_flow():
        value = await fetch(2)
        flaky()
        return value

    assert asyncio.run(my_flow()) == 20
    assert ran == [2]


# --- an earlier attempt's result that cannot be read back is computed again --------------------------


def _delete(result: PersistedResult) -> None:
    Path(result.storage.path_of(result.storage_key)).unlink()


def _damage(result: PersistedResult) -> None:
    path = Path(result.storage.path_of(result.storage_key))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the payload: the checksum no longer matches
    path.write_bytes(bytes(data))


def _replace_by_another_serializers(result: PersistedResult) -> None:
    path = Path(result.storage.path_of(result.storage_key))
    path.unlink()
    _core.write_blob(
        str(path), [pickle.dumps("swapped")], serializer='{"type": "pickle", "picklelib": "pickle"}'
    )


@pytest.mark.parametrize(
    "spoil, error",
    [
        (_delete, "missing"),
        (_damage, "checksum|corrupt"),
        (_replace_by_another_serializers, "'pickle' serializer"),
    ],
    ids=["deleted", "damaged", "replaced"],
)
def test_a_retry_whose_earlier_result_cannot_be_read_runs_the_task_again(task_runner, spoil, error):
    ran = []
    flaky = Flaky()

    @task(cache_result_in_memory=False, result_serializer="json")
    def load():
        ran.append("load")
        return [1, 2, len(ran)]

    @flow(retries=1, task_runner=task_runner)
    def pipeline():
        state = load(return_state=True)
        if flaky.failures:
            spoil(state.data)
            flaky()
        return state.result()

    with pytest.warns(
        CachedResultUnavailableWarning, match=rf"task 'load' from an earlier attempt .*({error})"
    ):
        assert pipeline() == [1, 2, 2]
    assert ran == ["load", "load"]


def test_a_retry_whose_earlier_subflow_result_is_missing_runs_the_subflow_again():
    ran = []
    flaky = Flaky()

    @flow(cache_result_in_memory=False)
    def child(x):
        ran.append(x)
        return {"child": x, "run": len(ran)}

    @flow(retries=1)
    def parent():
        state = child(1, return_state=True)
        if flaky.failures:
            _delete(state.data)
            flaky()
        return state.result()

    with pytest.warns(CachedResultUnavailableWarning, match="subflow 'child' from an earlier attempt"):
        assert parent() == {"child": 1, "run": 2}
    assert ran == [1, 1]


def test_a_readable_earlier_result_not_in_memory_is_reused_without_a_warning(recwarn):
    ran = []
    flaky = Flaky()

    @task(cache_result_in_memory=False)
    def load():
        ran.append("load")
        return [1, 2, 3]

    @flow(retries=1)
    def pipeline():
        value = load()
        flaky()
        return value

    assert pipeline() == [1, 2, 3]
    assert ran == ["load"]
    assert not [w for w in recwarn if issubclass(w.category, CachedResultUnavailableWarning)]
