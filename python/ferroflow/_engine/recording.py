"""Recording runs in the run store: every flow run, task run and state change, with the state's
result reference.

The process shares one store per URL, opened the first time a flow run needs it (`stores`). An
outermost flow run decides once, when it starts, whether it is recorded
(`recorder_for_flow_run`); its task runs and subflow runs use the same `RunRecorder`, so the hot
path reads no settings. The store queues every call and commits on a background thread, so
recording a task run costs a few microseconds of the caller's time. How a state's result is
referred to is `ferroflow.results.result_reference`; a run's parameters are bound lazily
(`ferroflow._engine.parameters.LazyParameters`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ferroflow.exceptions import RunStoreError, RunStoreUnavailableError
from ferroflow.results import result_reference
from ferroflow.runstore import RunStore, default_store_url, open_store
from ferroflow.settings import MEMORY_RUNSTORE_URL, get_current_settings

if TYPE_CHECKING:
    from ferroflow._engine.runs import FlowRun, TaskRun
    from ferroflow.states import State

logger = logging.getLogger("ferroflow.runstore")


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
                store = self._stores[url] = _open_or_stand_in(url)
            self._users[url] = self._users.get(url, 0) + 1
            idle = [other for other, users in self._users.items() if users == 0 and other != url]
            retired = [self._stores.pop(other) for other in idle]
            for other in idle:
                del self._users[other]
        for old in retired:
            _close_quietly(old)
        return store

    def release(self, store: RunStore) -> None:
        # By the store itself: its `url` hides a password the URL in force holds.
        with self._lock:
            for url, opened in self._stores.items():
                if opened is store and url in self._users:
                    self._users[url] -= 1


def _open_or_stand_in(url: str) -> RunStore:
    """The store at `url`; if it cannot be opened (a damaged file, a full disk, a folder that
    cannot be written, a newer schema), a store in memory standing in for it, with one warning
    naming the store and what to do: recording must not fail a flow. The stand-in holds this
    process's runs and cache entries until it exits."""
    try:
        return open_store(url)
    except (RunStoreError, OSError) as error:
        logger.warning(
            "ferroflow cannot record runs in its run store: %s Until this process ends, its runs "
            "and cache entries are kept in memory only; the flows run on.",
            error,
        )
        return open_store(MEMORY_RUNSTORE_URL)


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
        except RunStoreUnavailableError as error:  # the store's writer has said so, once
            logger.debug("ferroflow holds the runs of this flow until %s is back: %s", self.store.url, error)
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
