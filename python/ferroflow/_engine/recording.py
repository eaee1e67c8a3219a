"""Recording runs in the run store: every flow run, task run and state change, with the state's
result reference.

The process shares one store per URL, opened the first time a flow run needs it (`stores`). An
outermost flow run decides once, when it starts, whether it is recorded
(`recorder_for_flow_run`); its task runs and subflow runs use the same `RunRecorder`, so the hot
path reads no settings. The store queues every call and commits on a background thread, so
recording a task run costs a few microseconds of the caller's time.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
from collections.abc import Callable, ItemsView, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ferroflow.exceptions import RunStoreError
from ferroflow.results import LiteralResult, PersistedResult
from ferroflow.runstore import ResultRef, RunStore, default_store_url, open_store
from ferroflow.settings import get_current_settings

if TYPE_CHECKING:
    from ferroflow._engine.runs import FlowRun, TaskRun
    from ferroflow.filesystems import WritableFileSystem
    from ferroflow.states import State

logger = logging.getLogger("ferroflow.runstore")

T = TypeVar("T")


class _StorePool:
    """The run stores of this process: one per URL, shared by every flow run using that URL.

    Flow runs take a store with `acquire()` and give it back with `release()` when they end.
    When a flow run starts with another URL in force (tests give every test its own
    FERROFLOW_HOME), stores for other URLs that no flow run is using are closed — flushed, their
    writer thread stopped — so a process that moves between stores does not keep one open per
    URL it ever used. Stores still open at exit are flushed and closed by the store's exit hook.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stores: dict[str, RunStore] = {}
        self._users: dict[str, int] = {}

    def acquire(self) -> RunStore:
        """The store for the URL in force (`FERROFLOW_RUNSTORE_URL`, else the database in
        `FERROFLOW_HOME`), opened on first use. A locked or newer-version database raises the
        store's `RunStoreError`, whose message says what to do."""
        url = default_store_url()
        with self._lock:
            store = self._stores.get(url)
            if store is None:
                store = self._stores[url] = open_store(url)
            self._users[url] = self._users.get(url, 0) + 1
            idle = [other for other, users in self._users.items() if users == 0 and other != url]
            retired = [self._stores.pop(other) for other in idle]
            for other in idle:
                del self._users[other]
        for old in retired:
            _close_quietly(old)
        return store

    def release(self, store: RunStore) -> None:
        with self._lock:
            if store.url in self._users:
                self._users[store.url] -= 1


def _close_quietly(store: RunStore) -> None:
    try:
        store.close()
    except RunStoreError as error:
        logger.warning("ferroflow could not record some runs in %s: %s", store.url, error)


stores = _StorePool()


class RunRecorder:
    """Writes the runs of one flow run tree, and their states, to a run store."""

    __slots__ = ("store", "_flow_run_ids")

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._flow_run_ids: dict[Any, str] = {}

    def flow_run_created(self, run: FlowRun, parameters: Mapping[str, Any] | None, first: State) -> None:
        """Record a new flow run with its first state (Pending), which the store keeps with it."""
        parent = run.parent_flow_run_id
        try:
            self.store.record_flow_run(
                run.id_text,
                run.name,
                run.flow_name,
                parameters=parameters,
                parent_flow_run_id=None if parent is None else self._id_text(parent),
                created=first.timestamp,
            )
        except RunStoreError as error:
            _not_recorded(run, error)
        self._flow_run_ids[run.id] = run.id_text

    def task_run_created(self, run: TaskRun, parameters: Mapping[str, Any] | None, first: State) -> None:
        """Record a new task run with its first state (Pending), which the store keeps with it."""
        try:
            self.store.record_task_run(
                run.id_text,
                run.name,
                run.task_name,
                flow_run_id=self._id_text(run.flow_run_id),
                task_key=run.task_key,
                dynamic_key=str(run.dynamic_key),
                parameters=parameters,
                created=first.timestamp,
            )
        except RunStoreError as error:
            _not_recorded(run, error)

    def _id_text(self, flow_run_id: Any) -> str:
        """A flow run's id as the store knows it: known for the flow runs this recorder made
        (turning a UUID into text costs more than the rest of recording a task run's creation)."""
        text = self._flow_run_ids.get(flow_run_id)
        return str(flow_run_id) if text is None else text

    def state_changed(self, run: TaskRun | FlowRun, state: State) -> None:
        try:
            self.store.record_state(
                run.id_text,
                state.type,  # a str enum: the store takes its value on its own thread
                state.name,
                timestamp=state.timestamp,
                message=state.message,
                result=result_reference(state.data),
            )
        except RunStoreError as error:
            _not_recorded(run, error)

    def finish(self) -> None:
        """Commit what was recorded and give the store back. Called when the outermost flow run
        ends, so that other processes (`ferroflow runs ls`) see it at once; a store error is
        logged, not raised — the flow's own outcome stands."""
        try:
            self.store.flush()
        except RunStoreError as error:
            logger.warning("ferroflow could not record some runs in %s: %s", self.store.url, error)
        finally:
            stores.release(self.store)


def _not_recorded(run: TaskRun | FlowRun, error: RunStoreError) -> None:
    """Recording must never break a run: a store closed under a run that outlived its flow
    (a timed-out task's thread goes on) loses that run's late records, with a warning."""
    logger.warning("ferroflow could not record run %s: %s", run.name, error)


def recorder_for_flow_run() -> RunRecorder | None:
    """The recorder for an outermost flow run starting now (`finish()` it when the run ends),
    or None when recording is turned off (`FERROFLOW_RUNSTORE_RECORD_RUNS=false`)."""
    if not get_current_settings().runstore_record_runs:
        return None
    return RunRecorder(stores.acquire())


# --- result references ---------------------------------------------------------------------------

_LITERAL_REFERENCES = {
    None: ResultRef.literal(None),
    True: ResultRef.literal(True),
    False: ResultRef.literal(False),
}


def result_reference(data: Any) -> ResultRef | None:
    """How the store refers to a state's result: a literal inline, a persisted result by its
    storage, key and serializer. Other results (in memory only, exceptions) have none."""
    kind = type(data)
    if kind is LiteralResult:
        return _LITERAL_REFERENCES[data.value]
    if kind is PersistedResult:
        reference = data.store_reference
        if reference is None:
            reference = data.store_reference = ResultRef.persisted(
                storage_reference(data.storage), data.storage_key, data.serializer_type
            )
        return reference
    return None


# A storage's description, as JSON text: how result references name their storage. Computed
# once per storage object (its pydantic dump is slow for the hot path); storages are few.
_storage_references: dict[int, tuple[WritableFileSystem, str]] = {}


def storage_reference(storage: WritableFileSystem) -> str:
    known = _storage_references.get(id(storage))
    if known is not None and known[0] is storage:
        return known[1]
    text = json.dumps(storage.to_description(), sort_keys=True)
    if len(_storage_references) > 256:
        _storage_references.clear()
    _storage_references[id(storage)] = (storage, text)
    return text


def storage_from_reference(reference: str) -> WritableFileSystem:
    """The storage a result reference names: a description as JSON text (what the engine
    records, see `storage_reference`) or a saved storage's slug (`local-file-system/dev`)."""
    from ferroflow.filesystems import WritableFileSystem, resolve_storage

    storage = _storages_by_reference.get(reference)
    if storage is None:
        if reference.startswith("{"):
            storage = WritableFileSystem.from_description(json.loads(reference))
        else:
            storage = resolve_storage(reference)
        if len(_storages_by_reference) > 256:
            _storages_by_reference.clear()
        _storages_by_reference[reference] = storage
        _storage_references[id(storage)] = (storage, reference)
    return storage


_storages_by_reference: dict[str, WritableFileSystem] = {}


# --- parameters ------------------------------------------------------------------------------------


class LazyParameters(Mapping[str, Any]):
    """A call's arguments by parameter name, bound to the signature only when read.

    The store summarizes parameters on its writer thread; binding there keeps
    `inspect.signature(...).bind` off the caller's path.
    """

    __slots__ = ("_fn", "_args", "_kwargs", "_bound")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]):
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        self._bound: dict[str, Any] | None = None

    def _arguments(self) -> dict[str, Any]:
        if self._bound is None:
            self._bound = bind_arguments(self._fn, self._args, self._kwargs)
        return self._bound

    def __getitem__(self, name: str) -> Any:
        return self._arguments()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arguments())

    def __len__(self) -> int:
        return len(self._arguments())

    def items(self) -> ItemsView[str, Any]:
        # The bound dict's own view: Mapping's generic one looks every key up again in Python,
        # and the writer thread summarizes every task run's parameters through it.
        return self._arguments().items()


# Positional parameter names of functions without *args, by function: binding by zip() is many
# times faster than `inspect.Signature.bind`, and the writer thread does it for every run.
_positional_names: dict[Any, tuple[str, ...] | None] = {}


def bind_arguments(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The arguments of a call by parameter name (as passed: defaults are not filled in)."""
    names = positional_parameter_names(fn)
    if names is not None and len(args) <= len(names):
        arguments = dict(zip(names, args))
        arguments.update(kwargs)
        return arguments
    try:
        return dict(inspect.signature(fn).bind(*args, **kwargs).arguments)
    except (TypeError, ValueError):  # a call that does not fit the signature: show what was passed
        return {**{f"arg{i}": value for i, value in enumerate(args)}, **kwargs}


def parameters_with_defaults(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any] | None:
    """The arguments of a call by parameter name, defaults applied — what `Signature.bind` and
    `apply_defaults` give — for a function whose parameters are all positional-or-keyword; None
    for other signatures, or a call that does not fit (bind it the slow way, which says why).

    Cache key functions take the parameters of every call; binding through `inspect` costs
    several times more than this.
    """
    plain = _plain_signature(fn)
    if plain is None or len(args) > len(plain[0]):
        return None
    names, defaults = plain
    arguments = dict(zip(names, args))
    passed_by_name = 0
    for name in names[len(args):]:
        if name in kwargs:
            arguments[name] = kwargs[name]
            passed_by_name += 1
        elif name in defaults:
            arguments[name] = defaults[name]
        else:
            return None  # a missing argument
    return arguments if passed_by_name == len(kwargs) else None  # else unknown or doubled names


# Names and defaults of functions whose parameters are all positional-or-keyword, by function.
_plain_signatures: dict[Any, tuple[tuple[str, ...], dict[str, Any]] | None] = {}


def _plain_signature(fn: Callable[..., Any]) -> tuple[tuple[str, ...], dict[str, Any]] | None:
    return _once_per_function(_plain_signatures, fn, _read_plain_signature)


def _read_plain_signature(fn: Callable[..., Any]) -> tuple[tuple[str, ...], dict[str, Any]] | None:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters):
        return None
    names = tuple(p.name for p in parameters)
    defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    return names, defaults


def positional_parameter_names(fn: Callable[..., Any]) -> tuple[str, ...] | None:
    """The names of `fn`'s positional parameters; None if it takes *args or has no signature."""
    return _once_per_function(_positional_names, fn, _read_positional_names)


def _once_per_function(table: dict[Any, T], fn: Callable[..., Any], read: Callable[[Any], T]) -> T:
    """`read(fn)`, kept in `table` so it is read once per function (reading a signature is slow);
    an unhashable callable is read every time."""
    try:
        return table[fn]
    except KeyError:
        value = table[fn] = read(fn)
        return value
    except TypeError:  # an unhashable callable: nothing to keep it by
        return read(fn)


def _read_positional_names(fn: Callable[..., Any]) -> tuple[str, ...] | None:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in parameters if p.kind in positional)
