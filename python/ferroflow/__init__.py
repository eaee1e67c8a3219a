"""ferroflow: flows and tasks whose results are persisted, cached and fetched fast."""

from ferroflow._core import __version__
from ferroflow.context import get_run_context
from ferroflow.flows import Flow, flow
from ferroflow.futures import TaskFuture
from ferroflow.logging import get_run_logger
from ferroflow.states import State
from ferroflow.tasks import Task, task, unmapped

__all__ = [
    "Flow",
    "State",
    "Task",
    "TaskFuture",
    "__version__",
    "flow",
    "get_run_context",
    "get_run_logger",
    "task",
    "unmapped",
]
