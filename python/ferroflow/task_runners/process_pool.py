"""`ProcessPoolTaskRunner`: task runs executed from their requests in worker processes of this
machine, started from a fork server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.process
import multiprocessing
import multiprocessing.context
import threading
from typing import Any

import cloudpickle  # type: ignore[import-untyped]

from ferroflow.states import State
from ferroflow.task_runners.base import (
    AsyncTaskRun,
    PoolTaskRunner,
    TaskConcurrencyType,
    TaskRunCall,
    _upstream_states,
)


def _run_pickled(payload: bytes) -> bytes:
    """In a pool's worker process: run the task run the payload describes and pickle its
    report (cloudpickle both ways, so functions and values defined in `__main__` travel)."""
    report, request, upstream_states = cloudpickle.loads(payload)
    return cloudpickle.dumps(report(request, upstream_states))  # type: ignore[no-any-return]


class ProcessPoolTaskRunner(PoolTaskRunner):
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
        super().__init__(max_workers)

    def submit(self, run: TaskRunCall) -> concurrent.futures.Future[Any]:
        upstream, states = _upstream_states(run)
        payload = cloudpickle.dumps((run.report, run.deferred_request(upstream), states))
        try:
            pickled = self._pool().submit(_run_pickled, payload)
        except concurrent.futures.process.BrokenProcessPool:
            # A worker died (killed, out of memory): the runs it had end Crashed; later runs
            # get a new pool.
            self._forget_pool()
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

    def _new_executor(self) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(max_workers=self.max_workers, mp_context=_fork_server())


_FORK_SERVER_LOCK = threading.Lock()


def _fork_server() -> multiprocessing.context.BaseContext:
    """The fork-server context, with the package preloaded (and so the engine, which its flows
    and tasks import; this layer does not name it): each worker process forks from a server
    that has imported it once (fast to start, and free of this process's threads)."""
    context = multiprocessing.get_context("forkserver")
    with _FORK_SERVER_LOCK:
        context.set_forkserver_preload(["ferroflow"])
    return context
