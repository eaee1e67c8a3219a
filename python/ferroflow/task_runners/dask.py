"""`DaskTaskRunner`: task runs executed from their requests on a Dask cluster (`distributed`),
their upstream runs scheduled by the cluster as Dask dependencies."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

import cloudpickle  # type: ignore[import-untyped]

from ferroflow._asyncutils import call_when_all_done
from ferroflow.exceptions import StorageUnreachableError
from ferroflow.filesystems import LocalFileSystem
from ferroflow.states import State
from ferroflow.task_runners.base import (
    AsyncTaskRun,
    BaseTaskRunner,
    TaskConcurrencyType,
    TaskRunCall,
    _upstream_states,
)
from ferroflow.task_runners.dask_reports import ClusterResult, _ReportFetcher
from ferroflow.task_runners.dask_worker import (
    HeldInCluster,
    _commons_as_data,
    _distributed,
    _forget_commons,
    _reads_probe,
    _run_on_dask_worker,
    _run_with_commons_on_dask_worker,
    _summary_on_dask_worker,
)


class DaskTaskRunner(BaseTaskRunner):
    """Runs task runs (sync and async) on a Dask cluster (`distributed`).

    Args:
        address: a running scheduler to connect to (``"tcp://host:8786"``); else a cluster
            is started for each flow run and closed at its end.
        cluster_class: the class of that cluster (or its import path as a string); default
            `distributed.LocalCluster`.
        cluster_kwargs: keyword arguments for `cluster_class`.
        adapt_kwargs: if given, `cluster.adapt(**adapt_kwargs)` (adaptive scaling).
        client_kwargs: keyword arguments for `distributed.Client`.

    Each task run is one Dask task that executes the run from its request; the futures given
    to a task become Dask dependencies, so the cluster schedules them without the flow
    waiting. A persisted result is written by the worker to the flow's storage and travels as
    its reference; a result that is not persisted stays in the worker's memory, moves worker
    to worker through Dask and reaches the flow's process only when asked for. Every Dask key
    of a flow run is released when it ends. Workers must reach the result storage: at the
    start of a flow run each worker is asked to read a file written there, and a local folder
    that some worker cannot read (workers on other machines) fails the flow run before any
    task runs.
    """

    concurrency_type = TaskConcurrencyType.PARALLEL
    executes_requests = True
    schedules_upstream = True

    def __init__(
        self,
        address: str | None = None,
        cluster_class: Any = None,
        cluster_kwargs: dict[str, Any] | None = None,
        adapt_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        _distributed()
        if address is not None and (cluster_class is not None or cluster_kwargs):
            raise ValueError(
                "DaskTaskRunner: give either `address` (connect to a running scheduler) or "
                "`cluster_class`/`cluster_kwargs` (start a cluster for each flow run), not both."
            )
        self.address = address
        self.cluster_class = cluster_class
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.adapt_kwargs = dict(adapt_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self._client: Any = None
        self._cluster: Any = None
        self._held: dict[Any, Any] = {}  # task run id -> the Dask future of its report
        self._lock = threading.Lock()
        self._checked_storages: set[str] = set()
        self._fetcher: _ReportFetcher | None = None
        # (report function, task, result factory, settings, identity) of the runs sent -> the
        # Dask key of their commons, the commons and its Dask future.
        self._commons: dict[tuple[Any, ...], tuple[str, Any, Any]] = {}
        self._commons_lock = threading.Lock()

    def duplicate(self) -> DaskTaskRunner:
        return type(self)(
            address=self.address,
            cluster_class=self.cluster_class,
            cluster_kwargs=self.cluster_kwargs,
            adapt_kwargs=self.adapt_kwargs,
            client_kwargs=self.client_kwargs,
        )

    @property
    def client(self) -> Any:
        """The `distributed.Client` of the running flow run (None outside one)."""
        return self._client

    def start(self) -> None:
        distributed = _distributed()
        client_kwargs = {"set_as_default": False, **self.client_kwargs}
        if self.address is not None:
            self._client = distributed.Client(self.address, **client_kwargs)
            self._fetcher = _ReportFetcher(self._client)
            return
        cluster_class = self.cluster_class or distributed.LocalCluster
        if isinstance(cluster_class, str):
            module_name, _, class_name = cluster_class.rpartition(".")
            cluster_class = getattr(importlib.import_module(module_name), class_name)
        self._cluster = cluster_class(**self.cluster_kwargs)
        try:
            if self.adapt_kwargs:
                self._cluster.adapt(**self.adapt_kwargs)
            self._client = distributed.Client(self._cluster, **client_kwargs)
        except BaseException:
            self._cluster.close()
            self._cluster = None
            raise
        self._fetcher = _ReportFetcher(self._client)

    def check_result_storage(self, result_factory: Any) -> None:
        self._check_storage(result_factory.storage)

    def _check_storage(self, storage: Any) -> None:
        if not isinstance(storage, LocalFileSystem):
            return  # an object storage every worker reaches
        root = storage.root
        if root in self._checked_storages:
            return
        token = uuid.uuid4().hex
        path = storage.path_of(f".ferroflow-probe-{token}")
        os.makedirs(root, exist_ok=True)
        with open(path, "wb") as probe:  # (the storage's own writes are awaitable in async code)
            probe.write(token.encode())
        try:
            answers = self._client.run(_reads_probe, path, token)
        finally:
            with contextlib.suppress(OSError):
                os.remove(path)
        blind = sorted(worker for worker, reads in answers.items() if not reads)
        if blind:
            raise StorageUnreachableError(
                f"DaskTaskRunner: the result storage is the folder {root!r} of this machine, and "
                f"the Dask workers {', '.join(blind)} cannot read it (they run on other machines, "
                "or see other files). Results written there would be lost to the other workers. "
                "Give the flow an object storage every worker reaches as result_storage, or mount "
                "the folder at the same path on every worker (a shared file system: this check "
                "then passes)."
            )
        self._checked_storages.add(root)

    def submit(self, run: TaskRunCall) -> concurrent.futures.Future[Any]:
        client = self._client
        if client is None:
            raise RuntimeError("DaskTaskRunner.submit: the runner is not started (no flow run).")
        upstream = run.upstream
        dependencies = [self._held.get(future.task_run.id) for future in upstream]
        foreign = [f for f, held in zip(upstream, dependencies) if held is None]
        if foreign:
            # Futures of another runner (a parent flow's): wait for them here, then send their
            # final states with the run.
            return self._submit_after(run, foreign)
        request = run.deferred_request(upstream)
        if request.result_factory.persist_result:
            self._check_storage(request.result_factory.storage)
        commons, request = request.parted()
        commons_key = self._commons_key(run.report, commons)
        task_run = run.task_run
        key = f"ferroflow-{task_run.name}-{task_run.id.hex}"
        held = client.submit(
            _run_with_commons_on_dask_worker, commons_key, request, *dependencies, key=key, pure=False
        )
        with self._lock:
            self._held[task_run.id] = held
        report: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._fetcher.add(held, report)  # type: ignore[union-attr]
        return report

    def _commons_key(self, report: Callable[..., Any], commons: Any) -> str:
        """The Dask key of `commons` (`RequestCommons`) with the `report` function, submitted
        on first use as a Dask task of its own, once per flow run: it goes through the scheduler
        once, to one worker, and the other workers fetch it from there (Dask computes it again
        if that worker is lost). It is no dependency of the runs' Dask tasks, so their
        placement is Dask's as for any task."""
        identity = (
            id(report),
            id(commons.task),
            id(commons.result_factory),
            id(commons.settings),
            commons.identity,
        )
        with self._commons_lock:
            known = self._commons.get(identity)
            if known is None:
                key = f"ferroflow-commons-{uuid.uuid4().hex}"
                pickled = cloudpickle.dumps((report, commons))
                future = self._client.submit(_commons_as_data, pickled, key=key, pure=False)
                # The commons are kept with their key so that the ids stay theirs.
                known = self._commons[identity] = (key, commons, future)
            return known[0]

    def _submit_after(self, run: TaskRunCall, foreign: list[Any]) -> concurrent.futures.Future[Any]:
        outer: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def submit() -> None:
            try:
                upstream, states = _upstream_states(run)
                request = run.deferred_request(upstream)
                held = self._client.submit(_run_on_dask_worker, run.report, request, *states, pure=False)
                summary = self._client.submit(_summary_on_dask_worker, held, pure=False)
                outcome = summary.result()
                data = outcome.state.data
                if isinstance(data, HeldInCluster):
                    outcome.state.data = ClusterResult(held, data.address)
                with self._lock:
                    self._held[run.task_run.id] = held
                outer.set_result(outcome)
            except BaseException as exc:
                outer.set_exception(exc)

        call_when_all_done([future.concurrent_future for future in foreign], submit)
        return outer

    def submit_coroutine(
        self, run: AsyncTaskRun, loop: asyncio.AbstractEventLoop
    ) -> concurrent.futures.Future[State]:
        raise RuntimeError("DaskTaskRunner executes async task runs from their requests")

    def shutdown(self) -> None:
        with self._lock:
            held, self._held = list(self._held.values()), {}
        with self._commons_lock:
            commons = [(key, future) for key, _, future in self._commons.values()]
            self._commons = {}
        held += [future for _, future in commons]
        client, cluster, fetcher = self._client, self._cluster, self._fetcher
        self._client = self._cluster = self._fetcher = None
        try:
            if fetcher is not None:
                fetcher.close()
            for future in held:
                future.release()
            if commons and client is not None:
                with contextlib.suppress(Exception):  # (a worker that is gone holds nothing)
                    client.run(_forget_commons, [key for key, _ in commons], wait=False)
            if client is not None:
                client.close()
        finally:
            if cluster is not None:
                cluster.close()

    def __repr__(self) -> str:
        if self.address is not None:
            return f"DaskTaskRunner(address={self.address!r})"
        cluster = getattr(self.cluster_class, "__name__", self.cluster_class) or "LocalCluster"
        return f"DaskTaskRunner(cluster_class={cluster})"
