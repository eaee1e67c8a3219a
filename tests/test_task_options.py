"""Prefect 2's task options, each doing what Prefect 2 documents: `task_run_name`,
`retry_delay_seconds` as a function (`exponential_backoff`), `retry_jitter_factor`,
`retry_condition_fn`, `result_storage_key`, `log_prints`, `on_completion`, `on_failure`,
`viz_return_value`. Caching, retries, timeouts and the result options have their own tests
(test_tasks.py, test_caching.py, test_spec_*.py)."""

import asyncio
import concurrent.futures
import datetime
import logging
import random
import statistics
import types

import pytest

from ferroflow import flow, get_run_context, get_run_logger, task
from ferroflow._engine import task_engine
from ferroflow._engine.retry_policy import jittered_delay
from ferroflow.filesystems import LocalFileSystem
from ferroflow.results import PersistedResult
from ferroflow.runstore import default_store_url, open_store
from ferroflow.states import StateType
from ferroflow.task_runners import BaseTaskRunner, TaskConcurrencyType
from ferroflow.tasks import Task, exponential_backoff, task_input_hash

# Every option of Prefect 2.20's `@task`, with a value it accepts.
PREFECT_2_TASK_OPTIONS = {
    "name": "named",
    "description": "Described.",
    "tags": {"etl"},
    "version": "1.0",
    "cache_key_fn": task_input_hash,
    "cache_expiration": datetime.timedelta(hours=1),
    "task_run_name": "run-{x}",
    "retries": 2,
    "retry_delay_seconds": [1.0, 2.0],
    "retry_jitter_factor": 0.5,
    "persist_result": True,
    "result_storage": "local-file-system/dev",
    "result_storage_key": "{parameters[x]}.pickle",
    "result_serializer": "json",
    "cache_result_in_memory": False,
    "timeout_seconds": 10,
    "log_prints": True,
    "refresh_cache": True,
    "on_completion": [print],
    "on_failure": [print],
    "retry_condition_fn": callable,
    "viz_return_value": 42,
}


def identity(x):
    return x


# --- every option is accepted -------------------------------------------------------------------


@pytest.mark.parametrize("option", sorted(PREFECT_2_TASK_OPTIONS))
def test_every_prefect_2_task_option_is_accepted_by_the_decorator_and_with_options(option):
    value = PREFECT_2_TASK_OPTIONS[option]
    for made in (task(**{option: value})(identity), task(identity).with_options(**{option: value})):
        assert isinstance(made, Task)
        assert getattr(made, option) == value


def test_with_options_keeps_the_new_options_it_does_not_change():
    original = task(
        identity, task_run_name="r-{x}", retry_jitter_factor=1, result_storage_key="{parameters[x]}"
    )
    changed = original.with_options(retries=1)
    assert (changed.task_run_name, changed.retry_jitter_factor, changed.result_storage_key) == (
        "r-{x}",
        1,
        "{parameters[x]}",
    )


def test_prefect_2_defaults_of_none_for_retries_are_accepted():
    made = task(identity, retries=None, retry_delay_seconds=None)
    assert made.retries == 0 and made.retry_delay_seconds == 0


def test_viz_return_value_is_kept_and_changes_nothing():
    @flow
    def uses():
        return task(identity, viz_return_value="drawn")(5)

    assert uses() == 5


# --- task_run_name ------------------------------------------------------------------------------


def recorded_task_run_names():
    with open_store(default_store_url()) as store:
        (flow_run,) = store.list_flow_runs()
        return sorted(run.name for run in store.list_task_runs(flow_run.id))


def test_task_run_name_template_is_formatted_with_the_parameters_values(task_runner):
    @task
    def upstream():
        return "remote"

    @task(task_run_name="fetch-{source}-{limit}")
    def fetch(source, limit=10):
        return get_run_context().task_run.name

    @flow(task_runner=task_runner)
    def pipeline():
        # A future among the arguments: the name uses its value, as in Prefect 2.
        return fetch("local"), fetch.submit(upstream.submit(), limit=5).result()

    assert pipeline() == ("fetch-local-10", "fetch-remote-5")
    assert recorded_task_run_names() == ["fetch-local-10", "fetch-remote-5", "upstream-0"]


def test_task_run_name_function_is_called_inside_the_run():
    def from_parameters():
        return "day-" + get_run_context().parameters["day"]

    @task(task_run_name=from_parameters)
    def load(day):
        return get_run_context().task_run.name

    @flow
    def pipeline():
        return load("mon")

    assert pipeline() == "day-mon"


def test_task_run_name_appears_on_the_run_logger(caplog):
    @task(task_run_name="say-{word}")
    def say(word):
        get_run_logger().info(word)

    @flow
    def pipeline():
        say("hello")

    with caplog.at_level(logging.INFO, logger="ferroflow"):
        pipeline()
    (record,) = [r for r in caplog.records if r.getMessage() == "hello"]
    assert record.task_run_name == "say-hello"


def test_task_run_name_that_names_no_parameter_is_refused_at_definition():
    with pytest.raises(ValueError, match=r"\{y\}.*not a parameter.*\(x\)"):
        task(identity, task_run_name="t-{y}")


def test_a_cached_run_keeps_its_default_name():
    @task(cache_key_fn=task_input_hash, task_run_name="compute-{x}")
    def compute(x):
        return x

    @flow
    def pipeline():
        first = compute(5, return_state=True)
        second = compute(5, return_state=True)
        return first.name, second.name

    assert pipeline() == ("Completed", "Cached")
    # As in Prefect 2, a run is named when it starts running; a cached one never does.
    assert recorded_task_run_names() == ["compute-1", "compute-5"]


# --- retries: exponential_backoff, retry_jitter_factor, retry_condition_fn --------------------------


def test_exponential_backoff_gives_doubling_delays_one_per_retry():
    made = task(identity, retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=10))
    assert made.retry_delay_seconds == [10, 20, 40]


def test_jittered_delays_stay_below_the_upper_bound_and_keep_the_average():
    random.seed(7)
    delays = [jittered_delay(10.0, 0.5) for _ in range(20_000)]
    assert max(delays) <= 15.0
    assert min(delays) >= 6.0  # the lower cut keeps the mean: about 0.63 * delay for 0.5
    assert statistics.fmean(delays) == pytest.approx(10.0, rel=0.02)
    assert len(set(delays)) > 19_000  # randomized


def test_no_jitter_without_a_delay_or_a_factor():
    assert jittered_delay(0.0, 1.0) == 0.0
    assert jittered_delay(5.0, 0.0) == 5.0


def test_retry_jitter_factor_randomizes_the_scheduled_retry(monkeypatch):
    slept = []
    # The engine's own view of the time module only: nothing else stops sleeping.
    monkeypatch.setattr(task_engine, "time", types.SimpleNamespace(sleep=slept.append))

    @task(retries=3, retry_delay_seconds=100, retry_jitter_factor=1.0)
    def flaky():
        raise ValueError("no")

    @flow
    def pipeline():
        future = flaky.submit()
        future.wait()
        return future.task_run

    task_run = pipeline()
    assert len(slept) == 3
    assert all(0 < delay <= 200 for delay in slept) and len(set(slept)) == 3
    retries = [state for state in task_run.state_history if state.name == "AwaitingRetry"]
    assert len(retries) == 3


def test_a_negative_jitter_factor_is_refused():
    with pytest.raises(ValueError, match="retry_jitter_factor"):
        task(identity, retry_jitter_factor=-1)


def test_retry_condition_fn_false_ends_the_run_failed_without_retrying():
    asked = []

    def only_timeouts(task, task_run, state):
        asked.append((task.name, task_run.run_count, state.type))
        with pytest.raises(Exception) as raised:
            state.result()
        return isinstance(raised.value, TimeoutError)

    @task(retries=3, retry_condition_fn=only_timeouts)
    def refuses():
        raise ValueError("not worth retrying")

    @task(retries=2, retry_condition_fn=only_timeouts)
    def times_out():
        raise TimeoutError("worth it")

    @flow
    def pipeline():
        return refuses.submit(), times_out.submit()

    refused, timed_out = pipeline(return_state=True).result(raise_on_failure=False)
    assert refused.is_failed() and timed_out.is_failed()
    assert asked.count(("refuses", 1, StateType.FAILED)) == 1
    assert [entry for entry in asked if entry[0] == "times_out"] == [
        ("times_out", 1, StateType.FAILED),
        ("times_out", 2, StateType.FAILED),
        ("times_out", 3, StateType.FAILED),
    ]


def test_a_retry_condition_that_raises_is_logged_and_ends_the_run(caplog):
    runs = []

    def broken(task, task_run, state):
        raise RuntimeError("condition broke")

    @task(retries=3, retry_condition_fn=broken)
    def fails():
        runs.append(1)
        raise ValueError("no")

    @flow
    def pipeline():
        return fails(return_state=True).is_failed()

    with caplog.at_level(logging.ERROR, logger="ferroflow"):
        assert pipeline()
    assert runs == [1]
    assert any("retry_condition_fn" in r.getMessage() for r in caplog.records)


# --- result_storage_key -------------------------------------------------------------------------


def test_result_storage_key_names_the_result_file(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))

    @task(
        persist_result=True,
        result_storage=storage,
        result_storage_key="{parameters[name]}-{parameters[n]}.pickle",
    )
    def make(name, n=2):
        return [name] * n

    @flow
    def pipeline():
        return make.submit("a").wait()

    state = pipeline()
    assert isinstance(state.data, PersistedResult)
    assert state.data.storage_key == "a-2.pickle"
    assert (tmp_path / "a-2.pickle").is_file()
    assert state.result() == ["a", "a"]


def test_result_storage_key_can_name_the_runs(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))

    @task(
        persist_result=True, result_storage=storage, result_storage_key="{flow_run.name}/{task_run.name}.bin"
    )
    def make():
        return {"rows": 3}

    @flow(flow_run_name="nightly")
    def pipeline():
        return make(return_state=True), get_run_context().flow_run.id

    state, flow_run_id = pipeline()
    assert state.data.storage_key == "nightly/make-0.bin"
    assert (tmp_path / "nightly" / "make-0.bin").is_file()


def test_result_storage_key_with_an_unknown_field_is_refused_at_definition():
    with pytest.raises(ValueError, match=r"\{params\[x\]\}.*parameters, flow_run, task_run"):
        task(identity, result_storage_key="{params[x]}")


# --- log_prints -----------------------------------------------------------------------------------


def test_a_task_logs_its_prints_in_a_flow_that_does_not(caplog, capsys):
    @task(log_prints=True)
    def talkative(x):
        print("task says", x)

    @task
    def quiet():
        print("plain print")

    @flow
    def pipeline():
        talkative(1)
        talkative.submit(2).wait()
        quiet()

    with caplog.at_level(logging.INFO, logger="ferroflow"):
        pipeline()
    logged = sorted(r.getMessage() for r in caplog.records if r.name == "ferroflow.task_runs")
    assert logged == ["task says 1", "task says 2"]
    assert capsys.readouterr().out == "plain print\n"


def test_an_async_task_inherits_log_prints_from_its_flow(caplog):
    @task
    async def speak():
        print("async task speaking")

    @flow(log_prints=True)
    def pipeline():
        speak()

    with caplog.at_level(logging.INFO, logger="ferroflow"):
        pipeline()
    (record,) = [r for r in caplog.records if r.getMessage() == "async task speaking"]
    assert record.task_name == "speak"


# --- state hooks --------------------------------------------------------------------------------


def test_on_completion_hooks_get_the_task_its_run_and_the_state():
    seen = []

    def done(task, task_run, state):
        seen.append((task.name, task_run.name, state.name, state.result()))

    @task(on_completion=[done])
    def double(x):
        return 2 * x

    @flow
    def pipeline():
        return double(2)

    assert pipeline() == 4
    assert seen == [("double", "double-0", "Completed", 4)]


def test_on_failure_hooks_run_once_after_the_last_retry():
    seen = []

    @task(retries=2, on_failure=[lambda task, task_run, state: seen.append((task_run.run_count, state.name))])
    def flaky():
        raise ValueError("no")

    @flow
    def pipeline():
        return flaky(return_state=True).is_failed()

    assert pipeline()
    assert seen == [(3, "Failed")]


def test_hooks_do_not_run_for_a_cached_run():
    seen = []

    @task(cache_key_fn=task_input_hash, on_completion=[lambda t, r, s: seen.append(s.name)])
    def compute(x):
        return x

    @flow
    def pipeline():
        compute(1)
        compute(1)

    pipeline()
    assert seen == ["Completed"]


def test_a_task_hook_that_raises_is_logged_and_the_state_stays(caplog):
    def broken(task, task_run, state):
        raise RuntimeError("hook broke")

    @task(on_completion=[broken])
    def fine():
        return 7

    @flow
    def pipeline():
        return fine(return_state=True)

    with caplog.at_level(logging.INFO, logger="ferroflow"):
        state = pipeline()
    assert state.is_completed() and state.result() == 7
    assert any(r.levelno == logging.ERROR and "broken" in r.getMessage() for r in caplog.records)


def test_async_task_hooks_are_awaited():
    seen = []

    async def done(task, task_run, state):
        await asyncio.sleep(0)
        seen.append(state.name)

    @task(on_completion=[done])
    async def work():
        return 1

    @flow
    async def pipeline():
        return await work()

    assert asyncio.run(pipeline()) == 1
    assert seen == ["Completed"]


# --- a task run executed from its request (another process, for a runner that takes it) --------


class RequestRunner(BaseTaskRunner):
    """Executes each task run from its picklable request, as a cluster runner would elsewhere."""

    concurrency_type = TaskConcurrencyType.PARALLEL

    def duplicate(self):
        return RequestRunner()

    def submit(self, run):
        future = concurrent.futures.Future()
        future.set_result(run.execute(run.request))
        return future

    def submit_coroutine(self, run, loop):
        raise NotImplementedError


def test_a_run_executed_from_its_request_is_named_and_logs_prints_as_its_flow(caplog):
    @task(task_run_name="remote-{x}")
    def remote(x):
        print("printed remotely")
        return get_run_context().task_run.name

    @flow(task_runner=RequestRunner(), log_prints=True)
    def pipeline():
        return remote.submit(3).result()

    with caplog.at_level(logging.INFO, logger="ferroflow"):
        assert pipeline() == "remote-3"
    assert recorded_task_run_names() == ["remote-3"]
    (record,) = [r for r in caplog.records if r.getMessage() == "printed remotely"]
    assert (record.flow_name, record.task_run_name) == ("pipeline", "remote-3")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"cache_expiration": datetime.timedelta.max}, "cache_expiration=.* is out of range"),
        ({"cache_expiration": datetime.timedelta.min}, "cache_expiration=.* is out of range"),
        ({"retries": 1, "retry_delay_seconds": 1e300}, "retry_delay_seconds=1e\\+300 is not valid"),
        ({"retries": 1, "retry_delay_seconds": [10, 1e12]}, "retry_delay_seconds=.* is not valid"),
        ({"retries": 1, "retry_jitter_factor": 1e300}, "retry_jitter_factor=1e\\+300 is not valid"),
    ],
)
def test_waits_beyond_any_date_are_refused_at_definition(options, message):
    # "now + the wait" must be a date: such options used to fail deep in a run with OverflowError.
    with pytest.raises((ValueError, TypeError), match=message):
        task(**options)(lambda: None)


def test_a_century_long_expiration_with_the_largest_jitter_still_runs():
    from ferroflow._engine.options import LARGEST_JITTER, LONGEST_WAIT

    assert all(
        jittered_delay(LONGEST_WAIT.total_seconds(), LARGEST_JITTER) <= LONGEST_WAIT.total_seconds()
        for _ in range(100)
    )

    @task(cache_key_fn=lambda *args: "a-century", cache_expiration=LONGEST_WAIT)
    def cached():
        return 1

    @flow
    def pipeline():
        return cached(return_state=True)

    state = pipeline()
    assert state.result() == 1 and state.state_details.cache_expiration.year > 2100
