"""Result types and the factory that makes them. Minimal in-memory placeholder with the
stable interface the engine uses; persistence (storage, serializers, PersistedResult)
replaces the internals without changing these names."""

from __future__ import annotations

from typing import Any

from ferroflow.exceptions import MissingResult


class BaseResult:
    """What `State.data` holds. `get()` returns the value (loading it if needed)."""

    type: str = "base"

    def get(self) -> Any:
        raise NotImplementedError


class LiteralResult(BaseResult):
    """None/True/False, kept inline in the state and never written to storage."""

    type = "literal"

    def __init__(self, value: Any) -> None:
        self.value = value

    def get(self) -> Any:
        return self.value


class UnpersistedResult(BaseResult):
    """A value kept only in memory (or, with `cache_result_in_memory=False`, not at all)."""

    type = "unpersisted"

    def __init__(self, value: Any, *, keep_in_memory: bool = True) -> None:
        self._has_value = keep_in_memory
        self._value = value if keep_in_memory else None

    def get(self) -> Any:
        if not self._has_value:
            raise MissingResult(
                "The result was not kept in memory (cache_result_in_memory=False) and was not "
                "persisted (persist_result=False); enable one of them to read it downstream."
            )
        return self._value


class ResultFactory:
    """Decides how a flow's or task's return value becomes a result.

    The engine calls `from_flow` when a flow run starts (with the enclosing flow's factory for a
    subflow), `from_task` when a task run starts (with the flow run's factory), and
    `create_result(value)` when the run completes.
    """

    def __init__(self, *, persist_result: bool = False, cache_result_in_memory: bool = True) -> None:
        self.persist_result = persist_result
        self.cache_result_in_memory = cache_result_in_memory

    @classmethod
    def from_flow(cls, flow: Any, parent: ResultFactory | None = None) -> ResultFactory:
        return cls(
            persist_result=bool(getattr(flow, "persist_result", False)),
            cache_result_in_memory=getattr(flow, "cache_result_in_memory", True),
        )

    @classmethod
    def from_task(cls, task: Any, flow_factory: ResultFactory | None = None) -> ResultFactory:
        return cls(
            persist_result=bool(getattr(task, "persist_result", False)),
            cache_result_in_memory=getattr(task, "cache_result_in_memory", True),
        )

    def create_result(self, value: Any) -> BaseResult:
        if value is None or value is True or value is False:
            return LiteralResult(value)
        return UnpersistedResult(value, keep_in_memory=self.cache_result_in_memory)
