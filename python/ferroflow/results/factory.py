"""`ResultFactory`: how a flow's or task's return value becomes a result, by the spec's
persistence rules (which storage, which serializer, whether to persist at all)."""

from __future__ import annotations

import functools
from typing import Any

from ferroflow.exceptions import PersistenceConfigurationError, StorageNotFoundError
from ferroflow.filesystems import LocalFileSystem, WritableFileSystem, resolve_storage
from ferroflow.results.base import BaseResult, LiteralResult, PersistedResult, UnpersistedResult, is_literal
from ferroflow.serializers import Serializer, resolve_serializer
from ferroflow.settings import get_current_settings


@functools.lru_cache(maxsize=64)
def _default_local_storage(basepath: str) -> LocalFileSystem:
    return LocalFileSystem(basepath=basepath)


def _default_storage() -> WritableFileSystem:
    """The storage of results whose flow and task name none: the saved storage that
    FERROFLOW_DEFAULT_RESULT_STORAGE_BLOCK names, else a folder at FERROFLOW_LOCAL_STORAGE_PATH."""
    settings = get_current_settings()
    slug = settings.default_result_storage_block
    if slug is None:
        return _default_local_storage(str(settings.local_storage_path))
    try:
        return resolve_storage(slug)
    except StorageNotFoundError as error:
        raise StorageNotFoundError(
            f"FERROFLOW_DEFAULT_RESULT_STORAGE_BLOCK={slug!r} names no saved storage: {error} "
            "Save the storage under that name, set the setting to the slug of a saved one, or "
            "unset it to keep results in FERROFLOW_LOCAL_STORAGE_PATH."
        ) from error


class ResultFactory:
    """Decides how a flow's or task's return value becomes a result.

    The engine calls `from_flow` when a flow run starts (with the enclosing flow run's factory for a
    subflow), `from_task` when a task run starts (with its flow run's factory), and
    `create_result(value)` when the run completes. Storage and serializer are resolved lazily, the
    first time a result is persisted, so runs that persist nothing pay nothing for them.
    """

    def __init__(
        self,
        *,
        persist_result: bool,
        cache_result_in_memory: bool = True,
        storage: Any = None,
        serializer: Any = None,
        children_need_persistence: str | None = None,
        owner: str = "",
    ) -> None:
        self.persist_result = persist_result
        self.cache_result_in_memory = cache_result_in_memory
        self._storage_spec = storage
        self._serializer_spec = serializer
        # Why the tasks and subflows of this run must persist ("flow 'x' has retries"), or None.
        self.children_need_persistence = children_need_persistence
        self.owner = owner
        self._resolved_storage: WritableFileSystem | None = None
        self._resolved_serializer: Serializer | None = None

    @property
    def storage(self) -> WritableFileSystem:
        if self._resolved_storage is None:
            if self._storage_spec is None:
                self._resolved_storage = _default_storage()
            else:
                self._resolved_storage = resolve_storage(self._storage_spec)
        return self._resolved_storage

    @property
    def serializer(self) -> Serializer:
        if self._resolved_serializer is None:
            spec = self._serializer_spec
            if spec is None:
                spec = get_current_settings().results_default_serializer
            self._resolved_serializer = resolve_serializer(spec)
        return self._resolved_serializer

    def check_storage(self) -> None:
        """Raise now if a configured result storage cannot be used: a flow calls this at its
        start, so that a missing bucket or refused credentials fail the run before any of its
        tasks runs, not after their work is done. The default local folder needs no check."""
        if self._storage_spec is None and get_current_settings().default_result_storage_block is None:
            return
        try:
            storage = self.storage
        except StorageNotFoundError:
            return  # a slug that names no saved storage fails when a result is first written
        storage.check()

    @classmethod
    def from_flow(cls, flow: Any, parent: ResultFactory | None = None) -> ResultFactory:
        retries = getattr(flow, "retries", 0) or 0
        factory = cls._for_run("flow", flow, parent)
        if retries > 0:
            factory.children_need_persistence = f"{factory.owner} has retries={retries}"
        return factory

    @classmethod
    def from_task(cls, task: Any, flow_factory: ResultFactory | None = None) -> ResultFactory:
        return cls._for_run("task", task, flow_factory)

    @classmethod
    def _for_run(cls, kind: str, definition: Any, parent: ResultFactory | None) -> ResultFactory:
        """A factory for a run of `definition` (a flow or task): its own options, else its parent's
        storage and serializer, and the spec's rules for whether to persist."""
        owner = f"{kind} {getattr(definition, 'name', definition)!r}"
        storage = getattr(definition, "result_storage", None)
        serializer = getattr(definition, "result_serializer", None)
        if parent is not None:
            storage = storage if storage is not None else parent._storage_or_spec()
            serializer = serializer if serializer is not None else parent._serializer_or_spec()
        cache_result_in_memory = getattr(definition, "cache_result_in_memory", True)
        factory = cls(
            persist_result=_decide_persistence(
                owner=owner,
                persist_result=getattr(definition, "persist_result", None),
                required_by=_features_requiring_persistence(definition, parent),
                cache_result_in_memory=cache_result_in_memory,
            ),
            cache_result_in_memory=cache_result_in_memory,
            storage=storage,
            serializer=serializer,
            owner=owner,
        )
        if factory.persist_result and _names_a_saved_storage(storage):
            # A saved storage is read now, when the run starts: a missing or damaged one fails
            # the run before its function runs, not after.
            factory.storage  # noqa: B018
        return factory

    def _storage_or_spec(self) -> Any:
        return self._resolved_storage if self._resolved_storage is not None else self._storage_spec

    def _serializer_or_spec(self) -> Any:
        return self._resolved_serializer if self._resolved_serializer is not None else self._serializer_spec

    def create_result(self, value: Any, *, storage_key: str | None = None) -> BaseResult:
        if is_literal(value):
            return LiteralResult(value)
        if not self.persist_result:
            return UnpersistedResult(value, keep_in_memory=self.cache_result_in_memory)
        return PersistedResult._write(
            value,
            storage=self.storage,
            serializer=self.serializer,
            storage_key=storage_key,
            cache_in_memory=self.cache_result_in_memory,
        )

    def __repr__(self) -> str:
        return (
            f"ResultFactory({self.owner}, persist_result={self.persist_result}, "
            f"cache_result_in_memory={self.cache_result_in_memory})"
        )


def _names_a_saved_storage(storage: Any) -> bool:
    """Whether a run's storage option is a saved storage's slug, or leaves it to the default
    block (FERROFLOW_DEFAULT_RESULT_STORAGE_BLOCK) when one is set."""
    if storage is None:
        return get_current_settings().default_result_storage_block is not None
    return isinstance(storage, str)


def _features_requiring_persistence(run_definition: Any, parent: ResultFactory | None) -> list[str]:
    """Features that cannot work without the result persisted: `persist_result=False` with them is
    an error (Prefect 2 ignored it silently)."""
    features = []
    if getattr(run_definition, "cache_key_fn", None) is not None:
        features.append("a cache key function (cache_key_fn)")
    policy = getattr(run_definition, "cache_policy", None)
    if policy is not None and type(policy).__name__ != "NoCache":
        features.append("a cache policy (cache_policy)")
    if parent is not None and parent.children_need_persistence:
        features.append(f"flow retries ({parent.children_need_persistence})")
    return features


def _decide_persistence(
    *, owner: str, persist_result: bool | None, required_by: list[str], cache_result_in_memory: bool
) -> bool:
    if persist_result is False and required_by:
        raise PersistenceConfigurationError(
            f"{owner} has persist_result=False but uses {' and '.join(required_by)}, which needs "
            "its result persisted. Remove persist_result=False (or set it to True), or stop "
            "using that feature."
        )
    if persist_result is not None:
        return persist_result
    # Dropping the result from memory makes persistence the default: otherwise it would be lost.
    # (With persist_result=False as well, the spec makes the result unavailable, not an error.)
    if required_by or not cache_result_in_memory:
        return True
    return get_current_settings().results_persist_by_default
