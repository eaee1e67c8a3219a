"""Task runners that execute task runs in other processes: DaskTaskRunner and
ProcessPoolTaskRunner, next to plain Dask on the same cluster.

1. Per-task overhead: N trivial tasks mapped in one flow run on a 2-worker LocalCluster, each
   future's `result()` read, next to `Client.submit` of the same function N times on that
   cluster, read the same way (and, for reference, with one `gather` of all) (target: <= 1.5x).
2. Scaling: 40 CPU-bound tasks of about 100 ms, 2 workers against 1 (target: >= 1.8x), on Dask
   (LocalCluster of 1 and 2 worker processes), on the process pool (max_workers 1 and 2), and
   for reference with plain Dask and a plain `ProcessPoolExecutor` (the same fork server): what
   the machine gives two processes at that moment (other load on a 2-core machine takes from
   the 2-worker runs, not from the 1-worker ones).
3. Bytes through the scheduler while a 64 MiB persisted result passes from one task to the next
   (target: < 4 KiB), next to plain Dask doing the same: the scheduler runs as a process of its
   own (`dask scheduler`, workers from `dask worker`), and the kernel's byte counters of every
   TCP connection of that process (`ss -tinp`: the connections it accepted and those it opened
   to the workers, both directions) are read around a whole flow run of 6 exchanges (from its
   client's connection to the releases of its keys at its end; a client's connection is read
   just before it closes) less a flow run of 1 (connecting, the first exchange and closing
   cancel out), less the workers' heartbeats over the same time, per exchange. Plain Dask is
   measured the same way, one `Client` per session.

`python benches/bench_runners.py` runs it alone; `make bench` runs it under pytest (`-s` shows
the tables). Nothing here asserts a time. On a machine with 2 cores the scaling figures need
the machine otherwise idle.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import re
import subprocess
import sys
import time
from typing import Any

import cloudpickle  # type: ignore[import-untyped]

from ferroflow import flow, task
from ferroflow.task_runners import DaskTaskRunner, ProcessPoolTaskRunner

cloudpickle.register_pickle_by_value(sys.modules[__name__])

OVERHEAD_TASKS = 200
SCALING_TASKS = 40
SCALING_SECONDS = 0.1
BIG = 64 << 20
ROUNDS = 3


def trivial(x: int) -> int:
    return x


def calibrate_spin(seconds: float) -> int:
    """Loop iterations that take about `seconds` of CPU here."""
    n = 200_000
    while True:
        started = time.process_time()
        spin_loops(n)
        took = time.process_time() - started
        if took > 0.05:
            return int(n * seconds / took)
        n *= 2


def spin_loops(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


trivial_task = task(trivial)
spin_task = task(spin_loops)


def local_cluster(workers: int) -> Any:
    import distributed

    return distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )


# --- 1. per-task overhead -------------------------------------------------------------------------


def overhead(cluster: Any, tasks: int = OVERHEAD_TASKS) -> dict[str, float]:
    """Milliseconds per task: plain `Client.submit` + gather, and ferroflow's map + results in
    a flow run (less the same flow run with no task: connecting, checking the storage)."""
    import distributed

    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        client.gather([client.submit(trivial, i, pure=False) for i in range(20)])  # warm up
        plain, plain_each = [], []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            client.gather([client.submit(trivial, i, pure=False) for i in range(tasks)])
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            [future.result() for future in [client.submit(trivial, i, pure=False) for i in range(tasks)]]
            plain_each.append(time.perf_counter() - started)

    runner = DaskTaskRunner(address=cluster.scheduler_address)

    @flow(task_runner=runner)
    def mapped(n: int) -> float:
        started = time.perf_counter()
        if n:
            [future.result() for future in trivial_task.map(range(n))]
        return time.perf_counter() - started

    mapped(20)  # warm up (workers import the engine)
    ours = [mapped(tasks) for _ in range(ROUNDS)]

    @flow(task_runner=runner)
    def empty() -> None:
        return None

    def whole_flow(n: int) -> float:
        started = time.perf_counter()
        mapped(n) if n else empty()
        return time.perf_counter() - started

    start_cost = min(whole_flow(0) for _ in range(ROUNDS))
    return {
        "plain Client.submit, one gather": min(plain) / tasks * 1e3,
        "plain Client.submit, result() of each": min(plain_each) / tasks * 1e3,
        "ferroflow on Dask": min(ours) / tasks * 1e3,
        "flow run start and end (once per flow run)": start_cost * 1e3,
    }


# --- 2. scaling -----------------------------------------------------------------------------------


def scaling_dask(loops: int, workers: int) -> tuple[float, float]:
    """Seconds for the CPU-bound tasks: plain Dask, and ferroflow on the same cluster."""
    import distributed

    with local_cluster(workers) as cluster:
        with distributed.Client(cluster, set_as_default=False) as client:
            client.gather([client.submit(spin_loops, 10, pure=False) for _ in range(workers * 2)])
            started = time.perf_counter()
            client.gather([client.submit(spin_loops, loops, pure=False) for _ in range(SCALING_TASKS)])
            plain = time.perf_counter() - started

        @flow(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
        def cpu_bound(n: int) -> float:
            [future.result() for future in spin_task.map([10] * workers * 2)]  # warm up
            started = time.perf_counter()
            [future.result() for future in spin_task.map([n] * SCALING_TASKS)]
            return time.perf_counter() - started

        return plain, cpu_bound(loops)


def scaling_process_pool(loops: int, workers: int) -> float:
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=workers))
    def cpu_bound(n: int) -> float:
        [future.result() for future in spin_task.map([10] * workers * 2)]  # start the workers
        started = time.perf_counter()
        [future.result() for future in spin_task.map([n] * SCALING_TASKS)]
        return time.perf_counter() - started

    return cpu_bound(loops)


def scaling_plain_pool(loops: int, workers: int) -> float:
    """Seconds for the CPU-bound tasks on a plain `ProcessPoolExecutor` (the same fork server)."""
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("forkserver")
    ) as pool:
        list(pool.map(spin_loops, [10] * workers * 2))  # start the workers
        started = time.perf_counter()
        list(pool.map(spin_loops, [loops] * SCALING_TASKS))
        return time.perf_counter() - started


def scaling() -> dict[str, tuple[float, float]]:
    loops = calibrate_spin(SCALING_SECONDS)
    plain_1, ours_1 = scaling_dask(loops, 1)
    plain_2, ours_2 = scaling_dask(loops, 2)
    return {
        "plain Dask": (plain_1, plain_2),
        "ferroflow on Dask": (ours_1, ours_2),
        "ferroflow process pool": (scaling_process_pool(loops, 1), scaling_process_pool(loops, 2)),
        "plain ProcessPoolExecutor": (scaling_plain_pool(loops, 1), scaling_plain_pool(loops, 2)),
    }


# --- 3. bytes through the scheduler ---------------------------------------------------------------
# The scheduler runs as a process of its own (`dask scheduler`, with `dask worker --nworkers 2`),
# so that every TCP connection of that process is the scheduler's: those it accepted (clients,
# workers' streams) and those it opened (its calls to the workers). The kernel counts the bytes
# each connection carried (`ss -tinp`, both directions).

_SOCKET = re.compile(r"^\S+\s+\S+\s+(\S+)\s+(\S+)\s+users:\(.*?pid=(\d+),")
_COUNTER = re.compile(r"\bbytes_(sent|received):(\d+)")


def process_socket_bytes(pid: int) -> dict[tuple[str, str], tuple[int, int]]:
    """(local, peer) address of each established TCP connection of process `pid` -> bytes it
    has received and sent so far."""
    listing = subprocess.run(
        ["ss", "-tinpH", "state", "established"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    for line, info in zip(listing[::2], listing[1::2]):
        match = _SOCKET.match(line)
        if match is None or int(match[3]) != pid:
            continue
        counters = dict(_COUNTER.findall(info))
        counts[(match[1], match[2])] = (int(counters.get("received", 0)), int(counters.get("sent", 0)))
    return counts


class SchedulerBytes:
    """Bytes received and sent by the scheduler's process between `start()` and `stop()`, from
    the last reading of each connection (`read()` reads them all: a connection about to close
    is read just before). `lost` counts the connections that closed after their last reading
    (their last bytes are not counted)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def start(self) -> None:
        self._before = process_socket_bytes(self.pid)
        self._latest = dict(self._before)
        self._started = time.perf_counter()

    def read(self) -> None:
        self._latest.update(process_socket_bytes(self.pid))

    def stop(self) -> tuple[int, int, int, float]:
        """(received, sent, connections lost, seconds)."""
        now = process_socket_bytes(self.pid)
        lost = len(set(self._latest) - set(now))
        self._latest.update(now)
        received = sent = 0
        for connection, (now_in, now_out) in self._latest.items():
            was_in, was_out = self._before.get(connection, (0, 0))
            received += now_in - was_in
            sent += now_out - was_out
        return received, sent, lost, time.perf_counter() - self._started


class SeparateScheduler:
    """A `dask scheduler` and a `dask worker --nworkers 2 --nthreads 1` started as commands on
    loopback, stopped on exit."""

    def __enter__(self) -> SeparateScheduler:
        import socket

        import distributed

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{port}"
        dask = os.path.join(os.path.dirname(sys.executable), "dask")
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.scheduler = subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet
        )
        self.workers = subprocess.Popen(
            [dask, "worker", self.address, "--host", "127.0.0.1", "--nworkers", "2", "--nthreads", "1",
             "--no-dashboard"],
            **quiet,
        )  # fmt: skip
        with distributed.Client(self.address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        for process in (self.workers, self.scheduler):
            process.terminate()
            process.wait(timeout=30)


@task(persist_result=True)
def make_big() -> bytes:
    return os.urandom(1 << 20) * (BIG >> 20)


@task(persist_result=True)
def checksum(data: bytes) -> int:
    return len(data) + data[12345]


EXCHANGES = 5
SETTLE_SECONDS = 0.5


def whole_session_bytes(counter: SchedulerBytes, session: Any, exchanges: int) -> tuple[int, int, int, float]:
    """Scheduler bytes of `session(exchanges)` from its start to its end, releases included:
    each `distributed.Client` it closes is read just before it closes, and the workers' answers
    to the releases are waited for."""
    import distributed

    real_close = distributed.Client.close

    def close_after_reading(client: Any, *args: Any, **kwargs: Any) -> Any:
        counter.read()
        return real_close(client, *args, **kwargs)

    counter.start()
    distributed.Client.close = close_after_reading  # type: ignore[method-assign]
    try:
        session(exchanges)
    finally:
        distributed.Client.close = real_close  # type: ignore[method-assign]
    time.sleep(SETTLE_SECONDS)
    return counter.stop()


def per_exchange(counter: SchedulerBytes, session: Any) -> tuple[float, float, int]:
    """Scheduler bytes (in, out) of one exchange: a session of 1 + EXCHANGES exchanges less a
    session of 1 (what a session costs whatever it does: connecting, its first exchange,
    closing, cancel out), each less the workers' heartbeats over its time (measured in an idle
    period), divided by EXCHANGES; and the connections lost."""
    counter.start()
    time.sleep(2.0)
    idle_in, idle_out, idle_lost, idle_seconds = counter.stop()
    short = whole_session_bytes(counter, session, 1)
    long = whole_session_bytes(counter, session, 1 + EXCHANGES)

    def net(measured: tuple[int, int, int, float], index: int, idle: int) -> float:
        return measured[index] - idle * measured[3] / idle_seconds

    return (
        (net(long, 0, idle_in) - net(short, 0, idle_in)) / EXCHANGES,
        (net(long, 1, idle_out) - net(short, 1, idle_out)) / EXCHANGES,
        short[2] + long[2] + idle_lost,
    )


def scheduler_bytes() -> dict[str, Any]:
    import distributed

    with SeparateScheduler() as cluster:
        counter = SchedulerBytes(cluster.scheduler.pid)
        states = []

        @flow(task_runner=DaskTaskRunner(address=cluster.address))
        def pass_big(exchanges: int) -> None:
            for _ in range(exchanges):
                made = make_big.submit()
                checksum.submit(made).result()
            states.append(made.state)

        def plain(exchanges: int) -> None:
            """The same exchanges in plain Dask (the 64 MiB value stays on the workers; the
            result is read with `Future.result()`)."""
            with distributed.Client(cluster.address, set_as_default=False) as client:
                for _ in range(exchanges):
                    client.submit(checksum.fn, client.submit(make_big.fn, pure=False), pure=False).result()

        pass_big(1)  # warm up: workers import, the storage exists
        plain(1)
        ours = per_exchange(counter, pass_big)
        theirs = per_exchange(counter, plain)
    return {"ferroflow": ours, "plain Dask": theirs, "state": len(cloudpickle.dumps(states[-1]))}


# --- report ---------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def run_all() -> str:
    lines = []
    with local_cluster(2) as cluster:
        per_task = overhead(cluster)
    plain, ours = per_task["plain Client.submit, result() of each"], per_task["ferroflow on Dask"]
    batched = per_task["plain Client.submit, one gather"]
    lines += [
        "",
        f"Per-task overhead, {OVERHEAD_TASKS} trivial tasks on a 2-worker LocalCluster, best of {ROUNDS}",
        *(f"  {name:<44} {ms:8.2f} ms" for name, ms in per_task.items()),
        f"  ratio ferroflow / plain Dask per task, result() of each: {ours / plain:.2f}x "
        f"(target: <= 1.5x) {verdict(ours / plain <= 1.5)}",
        f"  ratio ferroflow / plain Dask per task, against one gather: {ours / batched:.2f}x",
    ]
    scaled = scaling()
    lines += [
        "",
        f"Scaling, {SCALING_TASKS} CPU-bound tasks of ~{SCALING_SECONDS * 1e3:.0f} ms, 1 worker vs 2",
    ]
    for name, (one, two) in scaled.items():
        speedup = one / two
        lines.append(
            f"  {name:<26} {one:6.2f} s -> {two:6.2f} s  ratio {speedup:.2f}x "
            f"(target: >= 1.8x) {verdict(speedup >= 1.8)}"
        )
    passed = scheduler_bytes()
    ours = sum(passed["ferroflow"][:2])
    lines += [
        "",
        "Bytes through the scheduler, a 64 MiB persisted result passed between two tasks (all TCP",
        f"connections of the scheduler's process, received + sent; a flow run of {EXCHANGES + 1} exchanges",
        "less one of 1, releases included, heartbeats taken out, per exchange)",
        *(
            f"  {name:<12} {sum(passed[name][:2]):7.0f} B  ({passed[name][0]:.0f} B in, "
            f"{passed[name][1]:.0f} B out; connections closed after their last reading: {passed[name][2]})"
            for name in ("ferroflow", "plain Dask")
        ),
        f"  pickled state the flow got for the 64 MiB result: {passed['state']} B",
        f"  ferroflow: {ours:.0f} B (target: < 4 KiB) {verdict(ours < 4096)}",
    ]
    return "\n".join(lines)


def test_task_runners() -> None:
    print(run_all())


if __name__ == "__main__":
    print(run_all())
