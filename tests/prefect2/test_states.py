"""Prefect 2 code reading states: `state_details` (the runs a state belongs to, its cache entry)
and the state's fields as a dict."""

import asyncio
import datetime
import uuid

from ferroflow import flow, task
from ferroflow.context import get_run_context
from ferroflow.states import Completed, Failed, Scheduled, State, StateDetails, StateType
from ferroflow.tasks import task_input_hash

seen_ids = {}


@task
def add(x, y):
    seen_ids["task_run"] = get_run_context().task_run.id
    return x + y


@flow
def adding_flow():
    seen_ids["flow_run"] = get_run_context().flow_run.id
    return add(1, 2, return_state=True)


def test_a_task_run_s_state_names_its_flow_run_and_task_run():
    task_state = adding_flow()
    details = task_state.state_details
    assert details.flow_run_id == seen_ids["flow_run"]
    assert details.task_run_id == seen_ids["task_run"]
    assert isinstance(details.flow_run_id, uuid.UUID)
    assert details.cache_key is None and details.cache_expiration is None


def test_a_flow_run_s_state_names_its_flow_run_only():
    flow_state = adding_flow(return_state=True)
    assert flow_state.state_details.flow_run_id == seen_ids["flow_run"]
    assert flow_state.state_details.task_run_id is None


def test_submitted_and_async_task_runs_have_their_ids_too():
    @task
    async def double(x):
        return 2 * x

    @flow
    async def my_flow():
        future = await add.submit(2, 3)
        state = await double(4, return_state=True)
        return await future.wait(), state, get_run_context().flow_run.id

    submitted, awaited, flow_run_id = asyncio.run(my_flow())
    assert submitted.state_details.flow_run_id == flow_run_id
    assert awaited.state_details.flow_run_id == flow_run_id
    assert submitted.state_details.task_run_id != awaited.state_details.task_run_id


def test_a_cached_task_s_states_carry_the_cache_key_and_expiration():
    @task(cache_key_fn=task_input_hash, cache_expiration=datetime.timedelta(hours=1))
    def cached_add(x, y):
        return x + y

    @flow
    def my_flow():
        return cached_add(40, 2, return_state=True)

    before = datetime.datetime.now(datetime.UTC)
    completed = my_flow()
    cached = my_flow()
    assert (completed.name, cached.name) == ("Completed", "Cached")
    assert completed.state_details.cache_key is not None
    assert cached.state_details.cache_key == completed.state_details.cache_key
    expiration = completed.state_details.cache_expiration
    assert (
        before + datetime.timedelta(hours=1)
        <= expiration
        <= datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    )
    assert cached.state_details.task_run_id != completed.state_details.task_run_id


def test_states_have_prefect_2_s_fields():
    state = Completed(message="All done", data=None)
    assert state.type == StateType.COMPLETED
    assert state.name == "Completed"
    assert state.message == "All done"
    assert state.timestamp.tzinfo is not None
    assert state.data is None
    assert state.state_details == StateDetails()


def test_a_user_built_state_keeps_the_details_it_was_given():
    details = StateDetails(cache_key="my-key")
    state = Completed(state_details=details)
    assert state.state_details is details
    state.state_details.cache_key = "changed"
    assert state.state_details.cache_key == "changed"
    assert State(StateType.FAILED, state_details=StateDetails(cache_key="k")).state_details.cache_key == "k"


def test_a_scheduled_state_has_its_scheduled_time_in_its_details():
    when = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    assert Scheduled(scheduled_time=when).state_details.scheduled_time == when


def test_a_state_dumps_to_a_dict():
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    state = Completed(message="done", timestamp=when, state_details=StateDetails(cache_key="k"))
    dumped = state.dict()
    assert dumped == state.model_dump()
    assert dumped["type"] is StateType.COMPLETED
    assert dumped["timestamp"] == when
    assert dumped["state_details"]["cache_key"] == "k"
    assert set(dumped) == {"type", "name", "message", "timestamp", "data", "state_details"}
    assert set(dumped["state_details"]) >= {"flow_run_id", "task_run_id", "cache_key", "cache_expiration"}


def test_a_run_s_state_dumps_to_json_able_values():
    import json

    task_state = adding_flow()
    dumped = task_state.model_dump(mode="json")
    assert json.loads(json.dumps(dumped)) == dumped
    assert dumped["type"] == "COMPLETED"
    assert dumped["state_details"]["task_run_id"] == str(seen_ids["task_run"])
    assert dumped["data"] == {"type": "unpersisted"}  # kept in memory only: no storage to name

    @flow
    def failing_flow():
        raise ValueError("bad input")

    failed = failing_flow(return_state=True).model_dump(mode="json")
    assert failed["type"] == "FAILED"
    assert failed["data"] == {"type": "exception", "exception": "ValueError: bad input"}
    assert Failed(data=None).model_dump(mode="json")["data"] is None


def test_state_details_travel_with_a_pickled_state():
    import pickle

    task_state = adding_flow()
    copied = pickle.loads(pickle.dumps(task_state))
    assert copied.state_details == task_state.state_details
    assert copied.state_details.task_run_id == seen_ids["task_run"]
