"""The flow's process side of `DaskTaskRunner`'s results: the reports of finished task runs
fetched in batches from the workers holding them (`_ReportFetcher`), and `ClusterResult`, a value
not persisted that stays in the cluster until asked for."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
from typing import Any

import cloudpickle  # type: ignore[import-untyped]

from ferroflow.exceptions import MissingResult
from ferroflow.results import BaseResult
from ferroflow.task_runners.dask_worker import HeldInCluster, _summaries_on_worker, _summary_on_dask_worker


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
