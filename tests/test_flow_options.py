"""Prefect 2's flow options, each doing what Prefect 2 documents: `flow_run_name`,
`validate_parameters`, `log_prints`, and the state hooks (`on_running`, `on_completion`,
`on_failure`, `on_cancellation`, `on_crashed`). Retries, timeouts, task runners and the result
options have their own tests (test_flows.py, test_flow_retries.py, test_spec_*.py)."""

import asyncio
import builtins
import datetime
import logging
import threading

import pydantic
import pytest

from ferroflow import flow, get_run_context, task
from ferroflow.exceptions import ParameterTypeError
from ferroflow.flows import Flow
from ferroflow.runstore import default_store_url, open_store
from ferroflow.states import StateType
from ferroflow.task_runners import SequentialTaskRunner

# Every option of Prefect 2.20's `@flow`, with a value it accepts.
PREFECT_2_FLOW_OPTIONS = {
    "name": "named",
    "version": "1.0",
    "flow_run_name": "run-{x}",
    "retries": 1,
    "retry_delay_seconds": 0.5,
    "task_runner": SequentialTaskRunner,
    "description": "Described.",
    "timeout_seconds": 10,
    "validate_parameters": False,
    "persist_result": True,
    "result_storage": "local-file-system/dev",
    "result_serializer": "json",
    "cache_result_in_memory": False,
    "log_prints": True,
    "on_completion": [print],
    "on_failure": [print],
    "on_cancellation": [print],
    "on_crashed": [print],
    "on_running": [print],
}


PYTHON_PRINT = builtins.print


def identity(x):
    return x


def recorded_flow_runs():
    with open_store(default_store_url()) as store:
        return store.list_flow_runs()


# --- every option is accepted -------------------------------------------------------------------


@pytest.mark.parametrize("option", sorted(PREFECT_2_FLOW_OPTIONS))
def test_every_prefect_2_flow_option_is_accepted_by_the_decorator_and_with_options(option):
    value = PREFECT_2_FLOW_OPTIONS[option]
    decorated = flow(**{option: value})(identity)
    changed = flow(identity).with_options(**{option: value})
    for made in (decorated, changed):
        assert isinstance(made, Flow)
        kept = made.should_validate_parameters if option == "validate_parameters" else getattr(made, option)
        if option == "task_runner":
            assert isinstance(kept, SequentialTaskRunner)
        else:
            assert kept == value


def test_with_options_keeps_the_options_it_does_not_change():
    def hook(flow, flow_run, state):
        pass

    original = flow(
        identity, flow_run_name="r-{x}", log_prints=True, on_failure=[hook], validate_parameters=False
    )
    changed = original.with_options(retries=2)
    assert changed.flow_run_name == "r-{x}"
    assert changed.log_prints is True
    assert changed.on_failure == [hook]
    assert changed.should_validate_parameters is False


def test_prefect_2_defaults_of_none_for_retries_are_accepted():
    made = flow(identity, retries=None, retry_delay_seconds=None)
    assert made.retries == 0 and made.retry_delay_seconds == 0


# --- flow_run_name ------------------------------------------------------------------------------


def test_flow_run_name_template_is_formatted_with_the_parameters_defaults_included():
    @flow(flow_run_name="etl-{day}-{region}")
    def etl(day, region="eu"):
        return get_run_context().flow_run.name

    assert etl("monday") == "etl-monday-eu"
    (run,) = recorded_flow_runs()
    assert run.name == "etl-monday-eu"


def test_flow_run_name_function_is_called_without_arguments_inside_the_run():
    def name_from_context():
        context = get_run_context()
        return f"{context.flow.name}-run"

    @flow(flow_run_name=name_from_context)
    def report():
        return get_run_context().flow_run.name

    assert report() == "report-run"


def test_flow_run_name_function_returning_a_non_string_fails_the_run():
    @flow(flow_run_name=lambda: 42)
    def report():
        return "ran"

    state = report(return_state=True)
    assert state.is_failed()
    with pytest.raises(TypeError, match="must return a string"):
        state.result()


def test_flow_run_name_that_names_no_parameter_is_refused_at_definition():
    with pytest.raises(ValueError, match=r"\{dya\}.*not a parameter"):

        @flow(flow_run_name="etl-{dya}")
        def etl(day):
            pass


def test_flow_run_name_reads_variadic_parameters_by_their_own_names():
    @flow(flow_run_name="run-{kwargs[region]}-{args[0]}")
    def loose(*args, **kwargs):
        return get_run_context().flow_run.name

    assert loose(1, region="eu") == "run-eu-1"


def test_flow_run_name_must_be_a_string_or_function():
    with pytest.raises(TypeError, match="flow_run_name"):
        flow(identity, flow_run_name=3)


# --- validate_parameters ------------------------------------------------------------------------


class Point(pydantic.BaseModel):
    x: int
    y: int


def test_parameters_are_converted_to_their_type_hints():
    @flow
    def typed(count: int, day: datetime.date, point: Point, tags: list[str], free):
        return count, day, point, tags, free

    count, day, point, tags, free = typed("3", "2024-01-02", {"x": 1, "y": "2"}, ("a",), "untouched")
    assert count == 3
    assert day == datetime.date(2024, 1, 2)
    assert point == Point(x=1, y=2)
    assert tags == ["a"]
    assert free == "untouched"


def test_variadic_parameters_are_converted_too():
    @flow
    def variadic(*numbers: int, **named: float):
        return numbers, named

    assert variadic("1", 2, rate="0.5") == ((1, 2), {"rate": 0.5})


def test_invalid_parameters_fail_the_run_before_the_function_runs():
    calls = []

    @flow
    def typed(count: int, name: str = "x"):
        calls.append(count)

    state = typed("many", return_state=True)
    assert state.is_failed()
    assert calls == []
    assert [s.type for s in get_history(state)] == [StateType.PENDING, StateType.FAILED]
    with pytest.raises(ParameterTypeError, match=r"count: Input should be a valid integer.*'many'"):
        state.result()


def get_history(state):
    (run,) = recorded_flow_runs()
    with open_store(default_store_url()) as store:
        return store.list_states(run.id)


def test_a_parameter_type_error_is_a_type_error_naming_the_flow():
    @flow(name="load")
    def load(rows: int):
        pass

    with pytest.raises(TypeError, match="Flow 'load' received invalid parameters"):
        load([1])


def test_validate_parameters_false_passes_values_unchanged():
    @flow(validate_parameters=False)
    def typed(count: int):
        return count

    assert typed("3") == "3"


def test_arguments_of_a_function_without_annotations_are_passed_as_they_are():
    given = [1, 2]

    @flow
    def plain(values):
        return values

    assert plain(given) is given


def test_the_validate_parameters_method_returns_converted_parameters():
    @flow
    def typed(count: int, label):
        pass

    assert typed.validate_parameters({"count": "4", "label": 5}) == {"count": 4, "label": 5}
    with pytest.raises(ParameterTypeError, match="count"):
        typed.validate_parameters({"count": "four"})


def test_a_subflow_validates_its_parameters_too():
    @flow
    def child(n: int):
        return n * 2

    @flow
    def parent():
        return child("21")

    assert parent() == 42


# --- log_prints -----------------------------------------------------------------------------------


def test_log_prints_sends_prints_of_the_flow_and_its_tasks_to_the_run_loggers(caplog, capsys):
    @task
    def inherits():
        print("from the task")

    @task(log_prints=False)
    def opts_out():
        print("kept on stdout")

    @flow(log_prints=True)
    def talkative():
        print("from the flow", 1)
        inherits()
        opts_out()

    with caplog.at_level(logging.INFO, logger="ferroflow"):
        talkative()
    logged = [(r.name, r.levelno, r.getMessage()) for r in caplog.records if "from" in r.getMessage()]
    assert logged == [
        ("ferroflow.flow_runs", logging.INFO, "from the flow 1"),
        ("ferroflow.task_runs", logging.INFO, "from the task"),
    ]
    out = capsys.readouterr().out
    assert "kept on stdout" in out and "from the" not in out
    assert builtins.print is PYTHON_PRINT  # put back when the run ended


def test_prints_are_not_logged_by_default(caplog, capsys):
    @flow
    def quiet():
        print("plain")

    with caplog.at_level(logging.INFO, logger="ferroflow"):
        quiet()
    assert capsys.readouterr().out == "plain\n"
    assert not [r for r in caplog.records if r.getMessage() == "plain"]


def test_log_prints_leaves_other_threads_and_files_alone(caplog, capsys, tmp_path):
    started, release = threading.Event(), threading.Event()

    def outside_any_run():
        started.wait()
        print("outside")
        release.set()

    worker = threading.Thread(target=outside_any_run)
    worker.start()
    path = tmp_path / "out.txt"

    @flow(log_prints=True)
    def talkative():
        started.set()
        release.wait(5)
        with open(path, "w") as file:
            print("to a file", file=file)

    with caplog.at_level(logging.INFO, logger="ferroflow"):
        talkative()
    worker.join()
    assert capsys.readouterr().out == "outside\n"
    assert path.read_text() == "to a file\n"


def test_a_subflow_inherits_log_prints_from_its_parent(caplog):
    @flow
    def child():
        print("child speaking")

    @flow(log_prints=True)
    def parent():
        child()

    with caplog.at_level(logging.INFO, logger="ferroflow"):
        parent()
    (record,) = [r for r in caplog.records if r.getMessage() == "child speaking"]
    assert record.flow_name == "child"


def test_log_prints_must_be_a_bool_or_none():
    with pytest.raises(TypeError, match="log_prints"):
        flow(identity, log_prints="yes")


# --- state hooks --------------------------------------------------------------------------------


class Calls:
    def __init__(self):
        self.seen = []

    def hook(self, label):
        def record(flow, flow_run, state):
            self.seen.append((label, flow.name, flow_run.name, state.name))

        record.__name__ = f"record_{label}"
        return record


def test_on_running_and_on_completion_hooks_get_the_flow_its_run_and_the_state():
    calls = Calls()

    @flow(flow_run_name="nightly", on_running=[calls.hook("running")], on_completion=[calls.hook("done")])
    def nightly():
        return 1

    assert nightly() == 1
    assert calls.seen == [
        ("running", "nightly", "nightly", "Running"),
        ("done", "nightly", "nightly", "Completed"),
    ]


def test_on_failure_hooks_run_once_when_retries_are_exhausted():
    calls = Calls()

    @flow(retries=2, on_failure=[calls.hook("failed")], on_running=[calls.hook("running")])
    def flaky():
        raise ValueError("no")

    assert flaky(return_state=True).is_failed()
    assert [label for label, *_ in calls.seen] == ["running", "failed"]


def test_invalid_parameters_run_the_on_failure_hooks():
    calls = Calls()

    @flow(on_failure=[calls.hook("failed")], on_running=[calls.hook("running")])
    def typed(n: int):
        pass

    typed("x", return_state=True)
    assert [label for label, *_ in calls.seen] == ["failed"]


def test_a_hook_that_raises_is_logged_and_the_state_stays(caplog):
    def broken(flow, flow_run, state):
        raise RuntimeError("hook broke")

    after = Calls()

    @flow(on_completion=[broken, after.hook("after")])
    def fine():
        return "value"

    with caplog.at_level(logging.INFO, logger="ferroflow"):
        state = fine(return_state=True)
    assert state.is_completed() and state.result() == "value"
    assert len(after.seen) == 1  # the next hook still runs
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "broken" in error.getMessage() and error.exc_info[1].args == ("hook broke",)


def test_on_crashed_hooks_run_when_the_run_is_interrupted():
    calls = Calls()

    @flow(on_crashed=[calls.hook("crashed")], on_failure=[calls.hook("failed")])
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert [(label, state) for label, _, _, state in calls.seen] == [("crashed", "Crashed")]


def test_on_cancellation_hooks_run_when_an_async_run_is_cancelled():
    calls = Calls()

    @flow(on_cancellation=[calls.hook("cancelled")])
    async def cancelled():
        raise asyncio.CancelledError

    async def main():
        with pytest.raises(asyncio.CancelledError):
            await cancelled()

    asyncio.run(main())
    assert [(label, state) for label, _, _, state in calls.seen] == [("cancelled", "Cancelled")]


def test_async_hooks_are_awaited_in_sync_and_async_flows():
    seen = []

    async def note(flow, flow_run, state):
        await asyncio.sleep(0)
        seen.append(flow.name)

    @flow(on_completion=[note])
    def sync_flow():
        pass

    @flow(on_completion=[note])
    async def async_flow():
        pass

    sync_flow()
    asyncio.run(async_flow())
    assert seen == ["sync-flow", "async-flow"]


def test_hooks_must_be_a_list_of_functions():
    with pytest.raises(TypeError, match="on_completion takes a list of functions"):
        flow(identity, on_completion=print)
    with pytest.raises(TypeError, match="not a function"):
        flow(identity, on_failure=["print"])
