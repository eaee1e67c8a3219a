"""Calling the user's function of a flow or task run, under its `timeout_seconds`."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from ferroflow._asyncutils import StillRunning, call_in_thread
from ferroflow._engine.definitions import Runnable
from ferroflow.exceptions import RunTimeoutError


def _timed_out(runnable: Runnable, note: str) -> RunTimeoutError:
    return runnable._timeout_error(
        f"{runnable._run_kind} of {runnable.name!r} exceeded its timeout of "
        f"{runnable.timeout_seconds} seconds{note}. Raise timeout_seconds if the work needs "
        "longer."
    )


def call_sync_body(runnable: Runnable, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call a sync function; with a timeout, in a worker thread that we stop waiting for."""
    timeout = runnable.timeout_seconds
    if timeout is None:
        return runnable.fn(*args, **kwargs)
    try:
        return call_in_thread(functools.partial(runnable.fn, *args, **kwargs), timeout)
    except StillRunning:
        note = " (Python cannot stop a thread: the call goes on in the background)"
        raise _timed_out(runnable, note) from None


async def call_async_body(runnable: Runnable, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Await an async function; with a timeout, it is cancelled when the time is up."""
    timeout = runnable.timeout_seconds
    if timeout is None:
        return await runnable.fn(*args, **kwargs)
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            return await runnable.fn(*args, **kwargs)
    except TimeoutError:
        if scope.expired():  # our timeout, not a TimeoutError raised by the function itself
            raise _timed_out(runnable, "") from None
        raise
