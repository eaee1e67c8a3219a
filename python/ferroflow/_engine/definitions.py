"""What the engine reads of a flow or task definition (`ferroflow.flows.Flow`,
`ferroflow.tasks.Task`), as protocols: the engine sits below the modules that define them."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ferroflow.exceptions import RunTimeoutError
from ferroflow.task_runners import BaseTaskRunner


class Runnable(Protocol):
    """What a flow and a task have in common for running their function."""

    @property
    def fn(self) -> Any: ...
    @property
    def name(self) -> str: ...
    @property
    def isasync(self) -> bool: ...
    @property
    def retries(self) -> int: ...
    @property
    def retry_delay_seconds(self) -> float | Sequence[float]: ...
    @property
    def timeout_seconds(self) -> float | None: ...
    @property
    def _run_kind(self) -> str: ...
    @property
    def _timeout_error(self) -> type[RunTimeoutError]: ...


class TaskDefinition(Runnable, Protocol):
    @property
    def task_key(self) -> str: ...
    @property
    def cache_key_fn(self) -> Callable[..., str | None] | None: ...
    @property
    def cache_expiration(self) -> datetime.timedelta | None: ...
    @property
    def refresh_cache(self) -> bool | None: ...
    def __hash__(self) -> int: ...


class FlowDefinition(Runnable, Protocol):
    @property
    def task_runner(self) -> BaseTaskRunner: ...
