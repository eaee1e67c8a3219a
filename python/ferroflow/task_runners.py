"""Task runners: where the task runs of `Task.submit()` / `Task.map()` execute.

A flow picks one with `@flow(task_runner=...)`; the default is `ConcurrentTaskRunner`. Each flow
run works on its own `duplicate()` of the flow's runner, between `start()` and `shutdown()`.
Plain task calls (`my_task()`) never go through the runner: they run in the caller.

The interface is deliberately small (see docs/engine.md). The engine hands a runner ready-made
work, a `TaskRunCall`: calling it performs a whole task run (state changes, retries, result
creation) in this process, in the run context of the flow, and returns the run's final `State`.
The same call also describes itself in a picklable form (`request`) together with the function
that executes such a description in any process (`execute`), which is what a runner that sends
work to other processes ships. A runner only decides where the run executes and returns a
`concurrent.futures.Future` of its final state.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import concurrent.futures
import concurrent.futures.process
import contextlib
import copy
import enum
import importlib
import multiprocessing
import multiprocessing.context
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import cloudpickle  # type: ignore[import-untyped]

from ferroflow._asyncutils import call_when_all_done
from ferroflow.exceptions import MissingResult, StorageUnreachableError
from ferroflow.filesystems import LocalFileSystem
from ferroflow.results import BaseResult, UnpersistedResult
from ferroflow.states import State


class TaskRunCall(Protocol):
    """One task run, ready to execute (made by the engine).

    - `call()` runs it here, in the flow run's context, and returns its final state.
    - `request` describes it: the task, its resolved inputs, the run's identity, its result
      configuration and the settings in force; it pickles (with cloudpickle for the task).
    - `execute(request)` runs such a description in any process, returning a small final
      state: a persisted result travels back as its reference, not its value.
    - `report(request, upstream_states)` does the same and returns a `TaskRunReport` (final
      state, the states before it, name, log records); a runner whose future holds a report
      lets the engine record those states and emit those records in the flow's process.
    - `upstream` lists the futures among the run's inputs; `deferred_request(upstream)`
      describes the run before they finished, with markers that the final states given to
      `report` replace (so a cluster can schedule the dependencies itself).
    """

    @property
    def request(self) -> Any: ...
    @property
    def execute(self) -> Callable[[Any], State]: ...
    @property
    def report(self) -> Callable[..., Any]: ...
    @property
    def upstream(self) -> list[Any]: ...
    @property
    def task_run(self) -> Any: ...
    def deferred_request(self, upstream: list[Any]) -> Any: ...
    def __call__(self) -> State: ...


AsyncTaskRun = Callable[[], Coroutine[Any, Any, State]]


class TaskConcurrencyType(enum.Enum):
    SEQUENTIAL = "sequential"
    CONCURRENT = "concurrent"
    PARALLEL = "parallel"


class BaseTaskRunner(abc.ABC):
    """What the engine needs from a task runner."""

    concurrency_type: TaskConcurrencyType
    executes_requests: bool = False
    """True for a runner that executes every task run (async ones too) elsewhere from its
    request: the engine hands it `TaskRunCall`s for both and never calls `submit_coroutine`."""
    schedules_upstream: bool = False
    """True for a runner that takes a run before its upstream runs have finished and lets its
    cluster schedule them as dependencies (`TaskRunCall.deferred_request`); otherwise the
    engine submits a run once its upstream runs have finished."""

    @property
    def name(self) -> str:
        return type(self).__name__.removesuffix("TaskRunner").lower()

    def duplicate(self) -> BaseTaskRunner:
        """A fresh, unstarted runner with the same configuration (one per flow run)."""
        return type(self)()

    def start(self) -> None:  # noqa: B027 (an optional hook: a runner without resources keeps it)
        """Acquire resources before the flow run's first submission."""

    def check_result_storage(self, result_factory: Any) -> None:  # noqa: B027 (an optional hook)
        """Called after `start()` with the flow run's result factory: a runner whose workers
        cannot reach its storage raises here, before any task runs."""

    def shutdown(self) -> None:  # noqa: B027 (an optional hook, like start)
        """Release resources at the end of the flow run; the engine has already waited for
        every submitted run."""

    @abc.abstractmethod
    def submit(self, run: TaskRunCall) -> concurrent.futures.Future[State]:
        """Execute `run` (a sync task run; calling it blocks while the task body runs)."""

    @abc.abstractmethod
    def submit_coroutine(
        self, run: AsyncTaskRun, loop: asyncio.AbstractEventLoop
    ) -> concurrent.futures.Future[State]:
        """Execute `run()` (an async task run) on `loop`, the flow run's event loop, which runs
        in another thread or is the loop of the calling thread (async flows)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def finished_future(state: State) -> concurrent.futures.Future[State]:
    """A future that already holds `state` (for runs that finished during `submit`)."""
    future: concurrent.futures.Future[State] = concurrent.futures.Future()
    future.set_result(state)
    return future


class SequentialTaskRunner(BaseTaskRunner):
    """Runs each submitted task run to completion before `submit()` returns.

    In an async flow, `await my_task.submit()` returns once the run has finished; async task
    runs execute on the flow's own loop.
    """

    concurrency_type = TaskConcurrencyType.SEQUENTIAL

    def submit(self, run: TaskRunCall) -> concurrent.futures.Future[State]:
        return finished_future(run())

    def submit_coroutine(
        self, run: AsyncTaskRun, loop: asyncio.AbstractEventLoop
    ) -> concurrent.futures.Future[State]:
        future = asyncio.run_coroutine_threadsafe(run(), loop)
        if asyncio._get_running_loop() is not loop:
            concurrent.futures.wait([future])
        # On the loop's own thread the engine awaits the run itself (it cannot block here).
        return future


class ConcurrentTaskRunner(BaseTaskRunner):
    """Runs sync task runs in a pool of threads and async task runs as asyncio tasks on the
    flow's event loop, so both overlap while they wait on I/O. (Threads share the GIL: CPU-bound
    pure-Python tasks do not run in parallel.)

    Args:
        max_workers: the most sync task runs executing at once (threads are started as
            needed). The engine never blocks a worker waiting for an upstream run: a task run
            with unfinished upstream futures is submitted when they have finished.
    """

    concurrency_type = TaskConcurrencyType.CONCURRENT

    def __init__(self, max_workers: int = 32) -> None:
        if not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1:
            raise ValueError(f"ConcurrentTaskRunner(max_workers={max_workers!r}): give a positive integer.")
        self.max_workers = max_workers
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._shut_down = False

    def duplicate(self) -> ConcurrentTaskRunner:
        return type(self)(max_workers=self.max_workers)

    def submit(self, run: TaskRunCall) -> concurrent.futures.Future[State]:
        return self._pool().submit(run)

    def submit_coroutine(
        self, run: AsyncTaskRun, loop: asyncio.AbstractEventLoop
    ) -> concurrent.futures.Future[State]:
        return asyncio.run_coroutine_threadsafe(run(), loop)

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        # Created on first use: flows that submit nothing pay nothing.
        if self._executor is None:
            with self._lock:
                if self._shut_down:
                    # Only a flow function abandoned by its timeout can still submit here.
                    raise RuntimeError(
                        "This task runner was shut down: its flow run has ended (it timed out), "
                        "so it accepts no more task runs."
                    )
                if self._executor is None:
                    self._executor = concurrent.futures.ThreadPoolExecutor(
                        max_workers=self.max_workers, thread_name_prefix="ferroflow-task"
                    )
        return self._executor

    def shutdown(self) -> None:
        # Every submitted run has finished by now, except after a flow timeout; then runs that
        # have not started are dropped and running ones are not waited for (threads cannot be
        # stopped), so that the timeout really ends the flow run.
        with self._lock:
            self._shut_down = True
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None

    def __repr__(self) -> str:
        return f"ConcurrentTaskRunner(max_workers={self.max_workers})"


# --- runners that execute task runs in other processes ----------------------------------------


def _run_pickled(payload: bytes) -> bytes:
    """In a pool's worker process: run the task run the payload describes and pickle its
    report (cloudpickle both ways, so functions and values defined in `__main__` travel)."""
    report, request, upstream_states = cloudpickle.loads(payload)
    return cloudpickle.dumps(report(request, upstream_states))  # type: ignore[no-any-return]


def _upstream_states(run: TaskRunCall) -> tuple[list[Any], tuple[State, ...]]:
    """The upstream futures of `run` (all finished) and their final states."""
    upstream = run.upstream
    return upstream, tuple(future.state for future in upstream)


class ProcessPoolTaskRunner(BaseTaskRunner):
    """Runs task runs (sync and async) in worker processes of this machine, so CPU-bound
    pure-Python tasks run in parallel.

    Each run travels to a worker as its request (task, inputs, identity, result settings,
    pickled with cloudpickle) and comes back as a small report: a persisted result as its
    reference; a result that is not persisted as its value. A run is sent once its upstream
    runs have finished; their values go with it.

    Args:
        max_workers: the most worker processes (default: the number of CPUs). They are
            started on first use, from a fork server, so that they do not inherit the flow
            process's threads; like any `multiprocessing` program, a script must guard its
            flow call with `if __name__ == "__main__":`.
    """

    concurrency_type = TaskConcurrencyType.PARALLEL
    executes_requests = True

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and (
            not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
        ):
            raise ValueError(
                f"ProcessPoolTaskRunner(max_workers={max_workers!r}): give a positive integer, or "
                "None for one worker per CPU."
            )
        self.max_workers = max_workers
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._shut_down = False

    def duplicate(self) -> ProcessPoolTaskRunner:
        return type(self)(max_workers=self.max_workers)

    def submit(self, run: TaskRunCall) -> concurrent.futures.Future[Any]:
        upstream, states = _upstream_states(run)
        payload = cloudpickle.dumps((run.report, run.deferred_request(upstream), states))
        try:
            pickled = self._pool().submit(_run_pickled, payload)
        except concurrent.futures.process.BrokenProcessPool:
            # A worker died (killed, out of memory): the runs it had end Crashed; later runs
            # get a new pool.
            with self._lock:
                self._executor = None
            pickled = self._pool().submit(_run_pickled, payload)
        report: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def unpickle(done: concurrent.futures.Future[bytes]) -> None:
            exception = done.exception()
            if exception is not None:
                report.set_exception(exception)
            else:
                report.set_result(cloudpickle.loads(done.result()))

        pickled.add_done_callback(unpickle)
        return report

    def submit_coroutine(
        self, run: AsyncTaskRun, loop: asyncio.AbstractEventLoop
    ) -> concurrent.futures.Future[State]:
        raise RuntimeError("ProcessPoolTaskRunner executes async task runs from their requests")

    def _pool(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._shut_down:
                raise RuntimeError(
                    "This task runner was shut down: its flow run has ended (it timed out), so it "
                    "accepts no more task runs."
                )
            if self._executor is None:
                self._executor = concurrent.futures.ProcessPoolExecutor(
                    max_workers=self.max_workers, mp_context=_fork_server()
                )
            return self._executor

    def shutdown(self) -> None:
        with self._lock:
            self._shut_down = True
            executor, self._executor = self._executor, None
        if executor is not None:
            # Every submitted run has finished, except after a flow timeout: then runs not
            # started are dropped and running ones are not waited for (their processes exit
            # when they finish), so that the timeout really ends the flow run.
            executor.shutdown(wait=False, cancel_futures=True)

    def __repr__(self) -> str:
        return f"ProcessPoolTaskRunner(max_workers={self.max_workers})"


_FORK_SERVER_LOCK = threading.Lock()


def _fork_server() -> multiprocessing.context.BaseContext:
    """The fork-server context, with the package preloaded (and so the engine, which its flows
    and tasks import; this layer does not name it): each worker process forks from a server
    that has imported it once (fast to start, and free of this process's threads)."""
    context = multiprocessing.get_context("forkserver")
    with _FORK_SERVER_LOCK:
        context.set_forkserver_preload(["ferroflow"])
    return context


# --- Dask --------------------------------------------------------------------------------------

_DASK_MISSING = (
    "DaskTaskRunner needs Dask's `distributed` package, which is not installed. Install it "
    'with: pip install "ferroflow[dask]"'
)


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(_DASK_MISSING) from exc
    return distributed


class HeldInCluster:
    """Stands, in a state travelling from a Dask worker to the flow's process, for a result
    that is not persisted: its value stays in the memory of the worker at `address`."""

    __slots__ = ("address",)

    def __init__(self, address: str) -> None:
        self.address = address


class ClusterResult(BaseResult):
    """A result that is not persisted, held in a Dask cluster's memory (the data of a Dask
    future). `get()` fetches the value straight from the worker holding it (the one that
    computed it, `address`, else whichever the scheduler names); downstream task runs get it
    worker to worker through Dask. The cluster keeps it until the flow run ends."""

    type = "unpersisted"

    def __init__(self, future: Any, address: str | None = None) -> None:
        self.future = future
        self.address = address

    def has_cached_object(self) -> bool:
        return False

    def get(self) -> Any:
        future = self.future
        try:
            client = future.client
            if client.status != "running":
                raise RuntimeError("the flow run's Dask client is closed")
            outcome = client.sync(_fetch_data, client, future, self.address)
        except Exception as exc:
            if future.client.status == "running" and future.status == "finished":
                raise  # not a missing value: an error reading it
            raise MissingResult(
                "This result was not persisted: it was held in the Dask cluster's memory while "
                f"its flow run lasted, and it is gone ({exc!r}). Set persist_result=True on the task "
                "to read it after the flow run."
            ) from None
        return outcome.state.data.get()

    def to_reference(self) -> dict[str, Any]:
        return {"type": self.type}

    def __repr__(self) -> str:
        return f"ClusterResult(key={self.future.key!r})"


# How long the flow's process waits for a worker it asks directly (a report, a value) before it
# goes through the scheduler instead (workers it cannot reach, on another network).
_DIRECT_CONNECT_SECONDS = 10.0


async def _fetch_data(client: Any, future: Any, address: str | None) -> Any:
    """The data of `future`, asked of the worker at `address` (no message to the scheduler);
    if that worker no longer holds it, gathered straight from the worker the scheduler names."""
    if address is not None:
        with contextlib.suppress(Exception):  # gone, moved or unreachable: ask the scheduler
            from distributed.worker import get_data_from_worker

            response = await asyncio.wait_for(
                get_data_from_worker(client.rpc, [future.key], address), _DIRECT_CONNECT_SECONDS
            )
            if response["status"] == "OK" and future.key in response["data"]:
                return response["data"][future.key]
    return (await client.gather([future], direct=True, asynchronous=True))[0]


def _run_on_dask_worker(report: Callable[..., Any], request: Any, *upstream: Any) -> Any:
    """The Dask task of one task run: its report, with the result's value in it (the task's
    data, which stays on the worker). Upstream runs arrive as their reports."""
    states = tuple(getattr(item, "state", item) for item in upstream)
    return report(request, states)


def _run_with_commons_on_dask_worker(commons_key: str, request: Any, *upstream: Any) -> Any:
    """`_run_on_dask_worker` for a request without the parts every run of its task shares
    (`RequestCommons`), which travel with the report function as the Dask data `commons_key`."""
    report, commons = _commons_on_worker(commons_key)
    return _run_on_dask_worker(report, commons.complete(request), *upstream)


# On a Dask worker: the commons this process has used, unpickled, by Dask key (a few per flow
# run); the flow run's runner has them forgotten when it ends, and the oldest go first beyond
# _COMMONS_KEPT (a flow process that died without ending its runs).
_COMMONS_FETCHED: collections.OrderedDict[str, Any] = collections.OrderedDict()
_COMMONS_KEPT = 64
_COMMONS_LOCK = threading.Lock()
# How long a run waits for its commons that no worker holds yet (Dask computes them, again if
# their worker was lost) before it fails.
_COMMONS_WAIT_SECONDS = 300.0


def _commons_on_worker(key: str) -> Any:
    """The commons pickled in the Dask data `key`: as this process used them before, else from
    this worker's data or from the worker holding them, unpickled here (so that an error
    unpickling them, such as a module the workers lack, is the run's own) and kept."""
    with _COMMONS_LOCK:
        commons = _COMMONS_FETCHED.get(key)
    if commons is not None:
        return commons
    distributed = _distributed()
    worker = distributed.get_worker()
    pickled = distributed.utils.sync(worker.loop, _find_commons, worker, key)
    if pickled is None:
        pickled = _await_commons(worker, key)
    commons = cloudpickle.loads(pickled)
    with _COMMONS_LOCK:
        _COMMONS_FETCHED[key] = commons
        while len(_COMMONS_FETCHED) > _COMMONS_KEPT:
            _COMMONS_FETCHED.popitem(last=False)
    return commons


def _await_commons(worker: Any, key: str) -> Any:
    """The pickled commons `key` once Dask has computed them (the run started first, or their
    worker was lost and Dask computes them again). This thread leaves the worker's pool meanwhile, so
    that the worker can compute them itself."""
    distributed = _distributed()
    distributed.secede()
    try:
        deadline = time.monotonic() + _COMMONS_WAIT_SECONDS
        while True:
            status = distributed.utils.sync(worker.loop, worker.scheduler.get_task_status, keys=[key])
            state = status.get(key)
            if state == "memory":
                commons = distributed.utils.sync(worker.loop, _find_commons, worker, key)
                if commons is not None:
                    return commons
            elif state in (None, "erred", "forgotten") or time.monotonic() > deadline:
                raise RuntimeError(
                    f"The Dask cluster no longer holds {key!r}, the description its flow run sent "
                    f"for this task's runs (its Dask state: {state}): the flow run has ended."
                )
            time.sleep(0.05)
    finally:
        distributed.rejoin()


async def _find_commons(worker: Any, key: str) -> Any:
    """On the worker's event loop (which owns its data): the pickled commons `key` from this
    worker's data, else from a worker the scheduler says holds them; None if none does."""
    commons = worker.data.get(key)
    if commons is not None:
        return commons
    from distributed.worker import get_data_from_worker

    who_has = await worker.scheduler.who_has(keys=[key])
    for address in who_has.get(key, ()):
        if address != worker.address:
            with contextlib.suppress(Exception):  # gone meanwhile: the next holder
                response = await get_data_from_worker(worker.rpc, [key], address, who=worker.address)
                if response["status"] == "OK" and key in response["data"]:
                    return response["data"][key]
    return None


def _commons_as_data(pickled: bytes) -> bytes:
    """The Dask task whose data is a flow run's commons for one task, pickled (computed again
    by Dask if the worker holding them is lost)."""
    return pickled


async def _forget_commons(keys: list[str]) -> None:
    """On each worker when a flow run ends (`Client.run`): drop its fetched commons."""
    with _COMMONS_LOCK:
        for key in keys:
            _COMMONS_FETCHED.pop(key, None)


def _summary_on_dask_worker(outcome: Any, address: str | None = None) -> Any:
    """On the worker holding a run's data: the report the flow's process gets, with a result
    that is not persisted replaced by `HeldInCluster` (a persisted result is its reference
    already: such a report travels as it is)."""
    if not isinstance(outcome.state.data, UnpersistedResult):
        return outcome
    if address is None:
        address = _distributed().get_worker().address
    summary = copy.copy(outcome)
    summary.state = copy.copy(outcome.state)
    summary.state.data = HeldInCluster(address)
    return summary


def _summaries_on_worker(keys: list[str], dask_worker: Any = None) -> dict[str, Any]:
    """On a worker (its `run` handler): the summaries of the task runs among `keys` whose data
    this worker holds."""
    data, address = dask_worker.data, dask_worker.address
    return {key: _summary_on_dask_worker(data[key], address) for key in keys if key in data}


class _ReportFetcher:
    """Fetches, for the flow's process, the reports of the Dask tasks of finished task runs,
    in batches: for every batch of runs that finished while the previous batch was fetched,
    one question to the scheduler (which worker holds each run's data: its key and an address
    each way) and one call straight to each of those workers, answered with the reports of the
    runs whose data it holds, a value not persisted replaced by its worker's address (the value
    stays there). No report passes through the scheduler, and no run costs a second Dask
    task."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._direct = True
        self._arrived: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._deliver_all, name="ferroflow-dask-reports", daemon=True)
        self._thread.start()

    def add(self, held: Any, report: concurrent.futures.Future[Any]) -> None:
        """Set `report` to the report of the Dask future `held` once it finishes."""
        held.add_done_callback(lambda done: self._arrived.put((done, report)))

    def close(self) -> None:
        self._arrived.put(None)
        self._thread.join()

    def _deliver_all(self) -> None:
        while True:
            batch = [self._arrived.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._arrived.get_nowait())
            arrived = [item for item in batch if item is not None]
            if arrived:
                try:
                    self._deliver(arrived)
                except BaseException as exc:  # never leave a run without an outcome
                    for _, report in arrived:
                        if not report.done():
                            report.set_exception(exc)
            if len(arrived) < len(batch):
                return

    def _deliver(self, arrived: list[Any]) -> None:
        finished = [held.key for held, _ in arrived if held.status == "finished"]
        outcomes: dict[str, Any] = {}
        if finished:
            with contextlib.suppress(Exception):  # one was lost meanwhile: fetched one by one below
                outcomes, unanswered = self._client.sync(self._summaries, finished)
                for address, keys in unanswered.items():
                    # A worker this process cannot reach (or that failed): through the scheduler.
                    with contextlib.suppress(Exception):
                        for answers in self._client.run(
                            _summaries_on_worker, keys, workers=[address]
                        ).values():
                            outcomes.update(answers)
        for held, report in arrived:
            try:
                outcome = outcomes.get(held.key)
                if outcome is None:
                    # Failed, or its data is gone (Dask computes it again): one by one.
                    outcome = self._client.submit(_summary_on_dask_worker, held, pure=False).result()
            except BaseException as exc:
                report.set_exception(exc)
                continue
            data = outcome.state.data
            if isinstance(data, HeldInCluster):
                outcome.state.data = ClusterResult(held, data.address)
            report.set_result(outcome)

    async def _summaries(self, keys: list[str]) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """The summaries of the runs of `keys` its workers gave, and the keys of each worker
        that did not answer."""
        client = self._client
        who_has = await client.scheduler.who_has(keys=keys)
        by_worker: dict[str, list[str]] = {}
        for key in keys:
            holders = who_has.get(key)
            if holders:
                by_worker.setdefault(holders[0], []).append(key)
        answers = await asyncio.gather(
            *(self._ask(address, held) for address, held in by_worker.items()), return_exceptions=True
        )
        outcomes: dict[str, Any] = {}
        unanswered: dict[str, list[str]] = {}
        for (address, held), answer in zip(by_worker.items(), answers):
            if isinstance(answer, dict):
                outcomes.update(answer)
            else:
                unanswered[address] = held
        return outcomes, unanswered

    async def _ask(self, address: str, keys: list[str]) -> dict[str, Any]:
        """The summaries of `keys` from the worker at `address`, asked directly (its `run`
        handler, which `Client.run` reaches through the scheduler). Once a worker could not
        be reached from here, the workers are asked through the scheduler."""
        if not self._direct:
            raise ConnectionError("the workers are asked through the scheduler")
        try:
            response = await asyncio.wait_for(
                self._client.rpc(address).run(
                    function=cloudpickle.dumps(_summaries_on_worker),
                    args=cloudpickle.dumps((keys,)),
                    kwargs=cloudpickle.dumps({}),
                    wait=True,
                ),
                _DIRECT_CONNECT_SECONDS,
            )
        except (TimeoutError, OSError):
            self._direct = False
            raise
        if response.get("status") != "OK":
            raise RuntimeError(f"the Dask worker {address} could not summarize its runs: {response!r}")
        return response["result"]  # type: ignore[no-any-return]


def _reads_probe(path: str, token: str) -> bool:
    """On a worker: whether it reads `token` in the file `path` (a shared file system)."""
    try:
        with open(path, "rb") as probe:
            return probe.read() == token.encode()
    except OSError:
        return False


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


__all__ = [
    "BaseTaskRunner",
    "ClusterResult",
    "DaskTaskRunner",
    "ProcessPoolTaskRunner",
    "ConcurrentTaskRunner",
    "SequentialTaskRunner",
    "TaskConcurrencyType",
    "TaskRunCall",
]
