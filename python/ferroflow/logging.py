"""Run loggers: `get_run_logger()` inside a flow or task run returns a logger whose records
name the run.

Records go to the stdlib loggers `ferroflow.flow_runs` and `ferroflow.task_runs` and carry the
extra fields `flow_run_name`, `flow_run_id`, `flow_name` (and for task runs `task_run_name`,
`task_run_id`, `task_name`), plus `run_label` ("Task run 'load-0'"), so any handler or formatter
can use them. If the program has not configured logging at all (the root logger has no handler),
the first run logger installs a console handler on the `ferroflow` logger showing INFO and
above; configure logging yourself to replace it.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import MutableMapping
from typing import Any

from ferroflow.context import FlowRunContext, TaskRunContext
from ferroflow.exceptions import MissingContextError

FLOW_RUN_LOGGER = "ferroflow.flow_runs"
TASK_RUN_LOGGER = "ferroflow.task_runs"


class RunLoggerAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Adds the run's fields to every record, keeping fields the call passes in `extra`."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        run_fields = self.extra or {}
        kwargs["extra"] = {**run_fields, **kwargs["extra"]} if "extra" in kwargs else run_fields
        return msg, kwargs


def get_run_logger() -> logging.LoggerAdapter:  # type: ignore[type-arg]
    """The logger of the task run or flow run in progress (made once per run)."""
    task_context = TaskRunContext.get()
    if task_context is not None:
        if task_context.logger is None:
            task_context.logger = _run_logger(TASK_RUN_LOGGER, _task_run_fields(task_context))
        return task_context.logger
    flow_context = FlowRunContext.get()
    if flow_context is not None:
        if flow_context.logger is None:
            flow_context.logger = _run_logger(FLOW_RUN_LOGGER, _flow_run_fields(flow_context))
        return flow_context.logger
    raise MissingContextError(
        "get_run_logger() was called outside a flow or task run. Call it inside a @flow or "
        "@task function; elsewhere use a standard logger, logging.getLogger(__name__)."
    )


def _flow_run_fields(context: FlowRunContext) -> dict[str, Any]:
    run = context.flow_run
    return {
        "flow_run_name": run.name,
        "flow_run_id": str(run.id),
        "flow_name": context.flow.name,
        "run_label": f"Flow run {run.name!r}",
    }


def _task_run_fields(context: TaskRunContext) -> dict[str, Any]:
    run = context.task_run
    return {
        **_flow_run_fields(context.flow_run_context),
        "task_run_name": run.name,
        "task_run_id": str(run.id),
        "task_name": context.task.name,
        "run_label": f"Task run {run.name!r}",
    }


def _run_logger(name: str, fields: dict[str, Any]) -> RunLoggerAdapter:
    _install_console_handler_once()
    return RunLoggerAdapter(logging.getLogger(name), fields)


_console_handler_checked = False
_console_handler_lock = threading.Lock()


class _RunFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "run_label"):
            record.run_label = record.name
        return super().format(record)


def _install_console_handler_once() -> None:
    global _console_handler_checked
    if _console_handler_checked:
        return
    with _console_handler_lock:
        if _console_handler_checked:
            return
        _console_handler_checked = True
        package_logger = logging.getLogger("ferroflow")
        if logging.getLogger().handlers or package_logger.handlers:
            return  # the program configured logging: leave it alone
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            _RunFormatter(
                "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(run_label)s - %(message)s",
                datefmt="%H:%M:%S",
            )
        )
        package_logger.addHandler(handler)
        if package_logger.level == logging.NOTSET:
            package_logger.setLevel(logging.INFO)


def run_records_level() -> int:
    """The lowest level at which this process emits run records (after the default console
    handler is set up): a run executing in another process is told to hand back the records
    at this level and above."""
    _install_console_handler_once()
    return logging.getLogger(TASK_RUN_LOGGER).getEffectiveLevel()


def emit_records(records: list[logging.LogRecord]) -> None:
    """Emit here records that a run logged in another process (a task run on a worker), on the
    loggers they were logged on, so that they reach this process's handlers like its own."""
    if not records:
        return
    _install_console_handler_once()
    for record in records:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


class RunRecordCollector(logging.Handler):
    """Collects, while installed (`with collector:`), the records logged for one run in this
    process, in a form that pickles (message formatted, traceback as text)."""

    def __init__(self, run_id: str, level: int) -> None:
        super().__init__(logging.NOTSET)
        self.run_id = run_id
        self.wanted_level = level
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "task_run_id", None) != self.run_id or record.levelno < self.wanted_level:
            return
        portable = logging.makeLogRecord(record.__dict__)
        portable.msg = record.getMessage()
        portable.args = None
        if record.exc_info:
            portable.exc_text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            portable.exc_info = None
        self.records.append(portable)

    def __enter__(self) -> RunRecordCollector:
        package_logger = logging.getLogger("ferroflow")
        if self.wanted_level and package_logger.getEffectiveLevel() > self.wanted_level:
            # A worker that never configured logging would drop the records the flow wants.
            package_logger.setLevel(self.wanted_level)
        package_logger.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logging.getLogger("ferroflow").removeHandler(self)


__all__ = [
    "FLOW_RUN_LOGGER",
    "TASK_RUN_LOGGER",
    "RunLoggerAdapter",
    "RunRecordCollector",
    "emit_records",
    "get_run_logger",
    "run_records_level",
]
