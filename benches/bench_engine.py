"""Engine overhead: what calling a task costs next to calling the plain function.

Run with `make bench` (or `python benches/bench_engine.py`). Prints microseconds per call and
the ratios measured in the same run; asserts nothing about time.
"""

from __future__ import annotations

import time

from ferroflow import flow, task
from ferroflow.task_runners import ConcurrentTaskRunner

CALLS = 10_000


def trivial(x):
    return x


trivial_task = task(trivial)


@flow
def call_plain_functions(n):
    started = time.perf_counter()
    for i in range(n):
        trivial(i)
    return time.perf_counter() - started


@flow
def call_tasks(n):
    started = time.perf_counter()
    for i in range(n):
        trivial_task(i)
    return time.perf_counter() - started


@flow(task_runner=ConcurrentTaskRunner())
def submit_and_wait_for_tasks(n):
    started = time.perf_counter()
    for i in range(n):
        trivial_task.submit(i).result()
    return time.perf_counter() - started


def measure(calls: int = CALLS) -> dict[str, float]:
    """Microseconds per call of each way, best of three runs."""
    ways = {
        "plain function call": call_plain_functions,
        "task call in a flow": call_tasks,
        "submit + result (concurrent runner)": submit_and_wait_for_tasks,
    }
    return {name: min(way(calls) for _ in range(3)) / calls * 1e6 for name, way in ways.items()}


def report(per_call_us: dict[str, float]) -> str:
    plain = per_call_us["plain function call"]
    lines = [f"engine overhead, {CALLS} calls each (best of 3):"]
    for name, us in per_call_us.items():
        lines.append(f"  {name:<38} {us:9.2f} us/call   {us / plain:9.1f}x plain")
    return "\n".join(lines)


def test_engine_overhead(benchmark=None):
    print()
    print(report(measure()))


if __name__ == "__main__":
    print(report(measure()))
