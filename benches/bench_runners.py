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
   (target: < 4 KiB): the kernel's byte counters of the scheduler's sockets (`ss -ti`), read
   inside the flow run after it connected and after the downstream task's result came back,
   less what the same sockets carry in an idle period as long (heartbeats).

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

_COUNTER = re.compile(r"\bbytes_(sent|received):(\d+)")


def scheduler_socket_bytes(port: int) -> int:
    """Bytes sent plus received so far on the scheduler's open TCP connections."""
    listing = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(int(count) for _, count in _COUNTER.findall(listing))


@task(persist_result=True)
def make_big() -> bytes:
    return os.urandom(1 << 20) * (BIG >> 20)


@task(persist_result=True)
def checksum(data: bytes) -> int:
    return len(data) + data[12345]


def plain_dask_bytes(cluster: Any, port: int) -> tuple[int, int]:
    """The same exchange in plain Dask (the 64 MiB value stays on the workers): scheduler
    bytes during it, and in an idle period as long."""
    import distributed

    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        client.submit(checksum.fn, client.submit(make_big.fn, pure=False), pure=False).result()
        before = scheduler_socket_bytes(port)
        started = time.perf_counter()
        client.submit(checksum.fn, client.submit(make_big.fn, pure=False), pure=False).result()
        took = time.perf_counter() - started
        during = scheduler_socket_bytes(port) - before
        idle_start = scheduler_socket_bytes(port)
        time.sleep(took)
        return during, scheduler_socket_bytes(port) - idle_start


def scheduler_bytes(cluster: Any) -> dict[str, float]:
    port = int(cluster.scheduler_address.rsplit(":", 1)[1])

    @flow(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
    def pass_big() -> tuple[int, int, float, int]:
        checksum.submit(make_big.submit()).result()  # warm up: workers import, storage exists
        before = scheduler_socket_bytes(port)
        started = time.perf_counter()
        made = make_big.submit()
        checksum.submit(made).result()
        took = time.perf_counter() - started
        during = scheduler_socket_bytes(port) - before
        idle_start = scheduler_socket_bytes(port)
        time.sleep(took)
        idle = scheduler_socket_bytes(port) - idle_start
        report = len(cloudpickle.dumps(made.state))
        return during, idle, took, report

    during, idle, took, state_size = pass_big()
    plain_during, plain_idle = plain_dask_bytes(cluster, port)
    return {
        "plain Dask, the value through the workers": plain_during - plain_idle,
        "during the two task runs": during,
        "idle period as long (heartbeats)": idle,
        "net": during - idle,
        "seconds": took,
        "pickled state of the 64 MiB result": state_size,
    }


# --- report ---------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def run_all() -> str:
    lines = []
    with local_cluster(2) as cluster:
        per_task = overhead(cluster)
        passed = scheduler_bytes(cluster)
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
    net = passed["net"]
    lines += [
        "",
        "Bytes through the scheduler, a 64 MiB persisted result passed between two tasks",
        f"  on the scheduler's sockets during the runs   {passed['during the two task runs']:10.0f} B",
        f"  same sockets, idle period as long            {passed['idle period as long (heartbeats)']:10.0f} B",
        f"  pickled state the flow got for the result    {passed['pickled state of the 64 MiB result']:10.0f} B",
        f"  plain Dask doing the same (net)              {passed['plain Dask, the value through the workers']:10.0f} B",
        f"  net bytes through the scheduler: {net:.0f} B (target: < 4 KiB) {verdict(net < 4096)}",
    ]
    return "\n".join(lines)


def test_task_runners() -> None:
    print(run_all())


if __name__ == "__main__":
    print(run_all())
