"""`log_prints`: `print()` inside a flow or task run goes to the run's logger, at INFO.

While at least one run that logs its prints is in progress, `builtins.print` is replaced by a
function that asks the run context of the calling thread (or asyncio task) whether its prints
are logged: the task run's own `log_prints` if it set one, else its flow run's. Code outside
any run, runs that do not log their prints, and prints to a file other than stdout or stderr
print as usual. The original `print` is put back when the last such run ends (unless someone
replaced `builtins.print` in the meantime: then theirs stays).
"""

from __future__ import annotations

import builtins
import io
import sys
import threading
from typing import Any

from ferroflow._engine.run_book import book_of
from ferroflow.context import FlowRunContext, TaskRunContext
from ferroflow.logging import get_run_logger

_lock = threading.Lock()
_runs_logging_prints = 0
_print = builtins.print  # the print in force before the redirect
_inside = threading.local()  # a print made while logging one (by a handler) prints as usual


def redirect() -> None:
    """A run that logs its prints starts (pair with `restore()`)."""
    global _runs_logging_prints, _print
    with _lock:
        if _runs_logging_prints == 0 and builtins.print is not _print_to_run_log:
            _print = builtins.print
            builtins.print = _print_to_run_log
        _runs_logging_prints += 1


def restore() -> None:
    """A run that logs its prints ends."""
    global _runs_logging_prints
    with _lock:
        _runs_logging_prints -= 1
        if _runs_logging_prints == 0 and builtins.print is _print_to_run_log:
            builtins.print = _print


def _print_to_run_log(*args: Any, **kwargs: Any) -> None:
    file = kwargs.get("file")
    to_console = file is None or file is sys.stdout or file is sys.stderr
    if not (to_console and _prints_are_logged()) or getattr(_inside, "logging", False):
        _print(*args, **kwargs)
        return
    text = io.StringIO()
    _print(*args, **{**kwargs, "file": text})
    _inside.logging = True
    try:
        get_run_logger().info(text.getvalue().rstrip())
    finally:
        _inside.logging = False


def _prints_are_logged() -> bool:
    task_context = TaskRunContext.get()
    if task_context is not None:
        own = task_context.task.log_prints
        return bool(own) if own is not None else book_of(task_context.flow_run_context).log_prints
    flow_context = FlowRunContext.get()
    return flow_context is not None and book_of(flow_context).log_prints
