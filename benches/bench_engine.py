"""Engine overhead: what a task call costs next to calling the plain function.

`make bench` runs it under pytest (`-s` shows the table); `python benches/bench_engine.py` runs
it alone. Figures are microseconds per call, best of three rounds, with ratios measured in the
same run. Nothing here asserts a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ferroflow import flow, task
from ferroflow.task_runners import ConcurrentTaskRunner

CALLS = 10_000
ROUNDS = 3


def trivial(x: int) -> int:
    return x


trivial_task = task(trivial)


@flow(task_runner=ConcurrentTaskRunner())
def timed_in_a_flow(call: Callable[[int], Any], calls: int) -> float:
    """Seconds taken by `calls` calls of `call`, inside one flow run."""
    started = time.perf_counter()
    for i in range(calls):
        call(i)
    return time.perf_counter() - started


WAYS: dict[str, Callable[[int], Any]] = {
    "plain function call": trivial,
    "task call": trivial_task,
    "submit + result (concurrent runner)": lambda i: trivial_task.submit(i).result(),
}


def measure(calls: int = CALLS) -> dict[str, float]:
    """Microseconds per call of each way, best of ROUNDS flow runs."""
    return {
        name: min(timed_in_a_flow(call, calls) for _ in range(ROUNDS)) / calls * 1e6
        for name, call in WAYS.items()
    }


def report(per_call_us: dict[str, float], calls: int = CALLS) -> str:
    plain = per_call_us["plain function call"]
    lines = [f"ferroflow engine overhead: {calls} calls in one flow run, best of {ROUNDS}"]
    for name, us in per_call_us.items():
        lines.append(f"  {name:<37} {us:9.2f} us/call {us / plain:9.0f}x plain")
    return "\n".join(lines)


def test_engine_overhead() -> None:
    print()
    print(report(measure()))


if __name__ == "__main__":
    print(report(measure()))
