"""The Dask side of `DaskTaskRunner` that runs on the workers: a task run's Dask task, the
commons its runs share (fetched once per worker and kept), the summaries of finished runs the
flow's process asks for, and the storage probe. Also the import of `distributed` itself."""

from __future__ import annotations

import collections
import contextlib
import copy
import threading
import time
from collections.abc import Callable
from typing import Any

import cloudpickle  # type: ignore[import-untyped]

from ferroflow.results import UnpersistedResult

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


def _reads_probe(path: str, token: str) -> bool:
    """On a worker: whether it reads `token` in the file `path` (a shared file system)."""
    try:
        with open(path, "rb") as probe:
            return probe.read() == token.encode()
    except OSError:
        return False
