"""Times and runs the run store tests record."""

from datetime import UTC, datetime, timedelta

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def record_task(store, flow_run_id, run_id, *, states=("RUNNING", "COMPLETED"), result=None):
    """A task run (which begins Pending) and the states that follow."""
    store.record_task_run(run_id, f"{run_id}-name", "load", flow_run_id=flow_run_id, task_key="etl.load")
    for state_type in states:
        store.record_state(
            run_id, state_type, state_type.title(), result=result if state_type == "COMPLETED" else None
        )
