"""Trimming the history: flow runs deleted by id or by age, with what belongs to them, on every backend."""

import pytest

from ferroflow.runstore import ResultRef

from .sample_runs import at, record_task


def record_flow(store, flow_run_id, created, *, parent=None, tasks=2):
    store.record_flow_run(
        flow_run_id, f"{flow_run_id}-name", "etl", parent_flow_run_id=parent, created=created
    )
    store.record_state(flow_run_id, "RUNNING", "Running", timestamp=created)
    for index in range(tasks):
        record_task(store, flow_run_id, f"{flow_run_id}-task-{index}")
    store.record_state(flow_run_id, "COMPLETED", "Completed", timestamp=created)


def test_deleting_a_flow_run_takes_its_task_runs_states_and_subflows_and_nothing_else(store):
    record_flow(store, "old", at(0))
    record_flow(store, "old-child", at(1), parent="old")
    record_flow(store, "old-grandchild", at(2), parent="old-child")
    record_flow(store, "kept", at(3))
    store.put_cache_entry("k", "load", ResultRef.literal(True))

    assert store.delete_flow_runs(["old"]) == 3
    assert [run.id for run in store.list_flow_runs()] == ["kept"]
    for gone in ("old-task-0", "old-child-task-1", "old-grandchild-task-0"):
        assert [state.type for state in store.list_states(gone)] == []
    assert store.list_states("old") == []
    assert len(store.list_task_runs("kept")) == 2
    assert [state.type for state in store.list_states("kept-task-0")] == ["PENDING", "RUNNING", "COMPLETED"]
    assert store.get_cache_entry("k") is not None  # the cache is not history
    assert store.delete_flow_runs(["old"]) == 0


def test_deleting_by_age_takes_the_runs_created_before_the_cutoff(store):
    record_flow(store, "first", at(0))
    record_flow(store, "second", at(10))
    record_flow(store, "third", at(20))
    store.record_task_run("lone-old", "t", "t", created=at(5))
    store.record_task_run("lone-new", "t", "t", created=at(25))

    assert store.delete_flow_runs(created_before=at(10)) == 1
    assert [run.id for run in store.list_flow_runs()] == ["third", "second"]
    with pytest.raises(LookupError):
        store.get_task_run("lone-old")
    assert store.get_task_run("lone-new").id == "lone-new"
    assert store.delete_flow_runs(created_before=at(100)) == 2
    assert store.list_flow_runs() == []


def test_delete_takes_ids_or_a_time_not_both(store):
    with pytest.raises(ValueError, match="run_ids or created_before"):
        store.delete_flow_runs(["a"], created_before=at(0))
    with pytest.raises(ValueError, match="run_ids or created_before"):
        store.delete_flow_runs()
    assert store.delete_flow_runs([]) == 0
