"""Threads and event loops: knowing whether the caller is async code, running coroutines from
sync code, and calling a function in a thread under a timeout.

This module sits at the bottom of the package (it imports nothing of ferroflow), so that states
and futures can ask `in_async_caller()` without knowing about the engine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# The flow and task run contexts in progress (`ferroflow.context` defines and sets them). The
# variables live here, at the bottom, so that `in_async_caller` can read whether the innermost
# run's body is async code (its `is_async`) without importing the layers above; a second
# variable set on every task run would cost more than the read.
flow_run_context_var: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "ferroflow_flow_run_context", default=None
)
task_run_context_var: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "ferroflow_task_run_context", default=None
)


def in_async_caller() -> bool:
    """Whether the code calling us is async code, which must get awaitables back.

    That is: an event loop runs in this thread, and we are not inside the body of a sync flow
    or task run (a sync flow called from async code runs inline on the loop's thread, but its
    body is sync code and gets plain values).
    """
    # asyncio has no public "running loop or None" query; _get_running_loop is the fast,
    # exception-free form of get_running_loop() that asyncio itself uses.
    if asyncio._get_running_loop() is None:
        return False
    context = task_run_context_var.get() or flow_run_context_var.get()
    return context is None or bool(context.is_async)


class EventLoopThread:
    """An event loop running in a daemon thread, for the async tasks of one sync flow run."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run_forever, args=(ready,), name=name, daemon=True)
        self._thread.start()
        ready.wait()

    def _run_forever(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    def close(self) -> None:
        """Cancel what is still scheduled, stop the loop and join its thread."""
        if self.loop.is_closed():
            return

        async def cancel_leftovers() -> None:
            current = asyncio.current_task()
            leftovers = [task for task in asyncio.all_tasks() if task is not current]
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_leftovers(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


def run_coroutine_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code and return its result.

    With no loop in this thread, `asyncio.run` does it here. When a loop already runs in this
    thread (sync code called from async code), that loop cannot be re-entered, so the coroutine
    runs on a fresh loop in a helper thread, with this thread's context.
    """
    if asyncio._get_running_loop() is None:
        return asyncio.run(coroutine)
    return call_in_thread(lambda: asyncio.run(coroutine), timeout=None)


class StillRunning(Exception):
    """`call_in_thread` stopped waiting: the function is still running in its thread."""


def call_in_thread(function: Callable[[], T], timeout: float | None) -> T:
    """Call `function` in a new daemon thread with this thread's context, waiting at most
    `timeout` seconds; raises `StillRunning` if it did not finish by then.

    Python cannot stop a thread: a function that times out keeps running in the background
    until it returns; its result is then discarded. The thread is a daemon so that it does not
    keep the interpreter alive.
    """
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    context = contextvars.copy_context()

    def target() -> None:
        try:
            future.set_result(context.run(function))
        except BaseException as exc:  # handed to the waiting thread, which re-raises it
            future.set_exception(exc)

    threading.Thread(target=target, name="ferroflow-timed-call", daemon=True).start()
    done, _ = concurrent.futures.wait([future], timeout=timeout)
    if not done:
        raise StillRunning
    return future.result()


def call_when_all_done(futures: list[concurrent.futures.Future[Any]], callback: Callable[[], None]) -> None:
    """Call `callback` once, on the thread that finishes the last of `futures`. Waiting through
    done-callbacks rather than in a thread never ties up a worker, so a bounded pool cannot
    deadlock on a chain of dependent runs. `futures` must not be empty."""
    remaining = len(futures)
    lock = threading.Lock()

    def on_done(_: concurrent.futures.Future[Any]) -> None:
        nonlocal remaining
        with lock:
            remaining -= 1
            if remaining:
                return
        callback()

    for future in futures:
        future.add_done_callback(on_done)
