"""Is one source tree of ferroflow's Python package slower than another? Measured in one run.

    python benches/bench_revisions.py --baseline DIR --candidate DIR [--rounds 5]

Each DIR is a folder holding the `ferroflow` package, compiled `_core` included (for instance an
older checkout's `python/` folder and the current one). The same case code, written against the
public API only, runs on both trees:

- task call: a trivial task called inside a flow (us per call);
- submit + result: `trivial.submit(x).result()` in a flow with the concurrent runner (us per call);
- cache hit: a task with `cache_key_fn=task_input_hash`, small input and result, run store
  recording on (us per call, every call a hit);
- 256 MiB write / read: a task returning a 256 MiB NumPy float32 array with `persist_result=True`
  and `cache_result_in_memory=False` (the task call, timed inside its flow, in MiB/s), then its
  state's `.result()` in a new flow, with every page of the loaded array touched (MiB/s).

Per-call figures time whole flow runs (start, the calls, the run store's final flush) divided by
the number of calls; the number is chosen once per case so that one flow run takes about half a
second, and is the same for both trees. Each process keeps the best of three flow runs.

Every figure comes twice: from wall time, what a user waits, and from the CPU time of the whole
process (all its threads: the run store's writer and the runner's workers included). On a shared
machine other people's work stretches wall time far more than CPU time, so when the wall ratio's
pair range is wide, the CPU ratio is the steadier sign of whether the code itself got slower.

Why fresh processes, alternating: a figure taken in a long-lived process depends on what ran
before it in that process (warm caches, a grown run store, garbage), and the machine's load drifts
over minutes. Every measurement therefore runs in a new interpreter (`PYTHONPATH=DIR`, its own
fresh `FERROFLOW_HOME`, removed afterwards), and the trees take turns, baseline then candidate,
round after round, so that drift touches both alike. Each round gives one candidate/baseline
ratio from two neighbouring processes; the table reports the median of those ratios, the range
they spanned (the noise to read a ratio against) and each side's median figure. Nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 2**20
ARRAY_MIB = 256
TARGET_SECONDS = 0.5  # one timed flow run: long enough to swamp timer noise, short enough to repeat
BEST_OF = 3
# Each 256 MiB process spends seconds building, writing and reading its array; more rounds than
# this would take the whole script past about four minutes on a 2-core machine.
MAX_ARRAY_ROUNDS = 5
ARRAY_CASE = f"{ARRAY_MIB} MiB float32 result"


# --- the cases: run in the child process, against whichever tree PYTHONPATH points at ----------


def best_flow_seconds(run_flow: Callable[[int], object], calls: int) -> tuple[float, float]:
    """Best wall time and best CPU time (this process, all its threads) of BEST_OF flow runs."""
    best_wall = best_cpu = float("inf")
    for _ in range(BEST_OF):
        wall, cpu = time.perf_counter(), time.process_time()
        run_flow(calls)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu


def calibrated_calls(run_flow: Callable[[int], object]) -> int:
    """Calls that make one flow run take about TARGET_SECONDS (this also warms the process)."""
    calls = 50
    while True:
        started = time.perf_counter()
        run_flow(calls)
        elapsed = time.perf_counter() - started
        if elapsed >= TARGET_SECONDS / 4:
            return max(calls, round(calls * TARGET_SECONDS / elapsed))
        calls *= 4


def per_call_figures(run_flow: Callable[[int], object], calls: int) -> dict[str, Any]:
    if calls == 0:
        return {"calls": calibrated_calls(run_flow), "figures": {}}
    run_flow(min(calls, 100))  # first-call imports and the run store's creation are not timed
    wall, cpu = best_flow_seconds(run_flow, calls)
    figures = {"us/call, wall": wall / calls * 1e6, "us/call, CPU": cpu / calls * 1e6}
    return {"calls": calls, "figures": figures}


def task_call_case(calls: int) -> dict[str, Any]:
    from ferroflow import flow, task

    @task
    def trivial(x: int) -> int:
        return x

    @flow
    def call_tasks(count: int) -> None:
        for i in range(count):
            trivial(i)

    return per_call_figures(call_tasks, calls)


def submit_case(calls: int) -> dict[str, Any]:
    from ferroflow import flow, task
    from ferroflow.task_runners import ConcurrentTaskRunner

    @task
    def trivial(x: int) -> int:
        return x

    @flow(task_runner=ConcurrentTaskRunner())
    def submit_tasks(count: int) -> None:
        for i in range(count):
            trivial.submit(i).result()

    return per_call_figures(submit_tasks, calls)


def cache_hit_case(calls: int) -> dict[str, Any]:
    from ferroflow import flow, task
    from ferroflow.settings import temporary_settings
    from ferroflow.tasks import task_input_hash

    @task(cache_key_fn=task_input_hash)
    def summary(values: list[int]) -> dict[str, int]:
        return {"n": len(values), "total": sum(values)}

    small_input = list(range(10))

    @flow
    def hit_cache(count: int) -> None:
        for _ in range(count):
            summary(small_input)

    def recorded_hits(count: int) -> None:
        # Recording is the default; said here so that a changed default cannot change the case.
        with temporary_settings(runstore_record_runs=True):
            hit_cache(count)

    recorded_hits(1)  # fills the cache: every timed call is a hit
    return per_call_figures(recorded_hits, calls)


class Stopwatch:
    """Wall and CPU seconds (this process, all its threads) of the `with` block."""

    def __enter__(self) -> Stopwatch:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def array_case(calls: int) -> dict[str, Any]:
    """One 256 MiB write and one read (`calls` is unused: a single write is long enough)."""
    import numpy as np

    from ferroflow import flow, task

    array = np.random.default_rng(0).standard_normal(ARRAY_MIB * MIB // 4, dtype=np.float32)
    states: list[Any] = []
    write, read = Stopwatch(), Stopwatch()

    @task(persist_result=True, cache_result_in_memory=False)
    def hand_back_array() -> Any:
        return array

    @flow
    def persist_array() -> None:
        with write:
            states.append(hand_back_array(return_state=True))

    @flow
    def read_array_back() -> None:
        with read:
            loaded = states[0].result()
            # An uncompressed result may come back as a map of its file: touching one value per
            # 4 KiB page makes the read real, without timing a full pass of arithmetic over it.
            float(loaded.reshape(-1)[:: 4096 // loaded.itemsize].sum())
        if loaded is array or loaded.nbytes != array.nbytes:
            raise RuntimeError("the result was not read back from storage: the figure is void")

    persist_array()
    read_array_back()
    figures = {}
    for name, stopwatch in (("write", write), ("read", read)):
        figures[f"{name} MiB/s, wall"] = ARRAY_MIB / stopwatch.wall
        figures[f"{name} MiB/s, CPU"] = ARRAY_MIB / stopwatch.cpu
    return {"calls": 1, "figures": figures}


def probe_case(calls: int) -> dict[str, Any]:
    import ferroflow

    return {"file": ferroflow.__file__, "version": getattr(ferroflow, "__version__", "?")}


CASES: dict[str, Callable[[int], dict[str, Any]]] = {
    "task call in a flow": task_call_case,
    "submit + result, concurrent runner": submit_case,
    "cache hit, small, run store on": cache_hit_case,
    ARRAY_CASE: array_case,
}
CHILD_CASES = {**CASES, "probe": probe_case}


def run_child(case: str, calls: int) -> None:
    """The child's side: a fresh FERROFLOW_HOME, the case, its figures as one JSON line."""
    home = tempfile.mkdtemp(prefix="ferroflow-bench-home-")
    os.environ["FERROFLOW_HOME"] = home  # before ferroflow's first import, which reads settings
    try:
        outcome = CHILD_CASES[case](calls)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(outcome))


# --- the parent: launches children in turns and reports -------------------------------------


@dataclass
class Tree:
    label: str
    folder: Path


def child_environment(tree: Tree) -> dict[str, str]:
    # No FERROFLOW_* setting of the caller's may reach the children: both trees run on defaults.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FERROFLOW_")}
    environment["PYTHONPATH"] = str(tree.folder)
    return environment


def in_child(tree: Tree, case: str, calls: int = 0) -> dict[str, Any]:
    script = str(Path(__file__).resolve())
    command = [sys.executable, script, "--child", case, "--calls", str(calls)]
    finished = subprocess.run(
        command, env=child_environment(tree), capture_output=True, text=True, check=False
    )
    if finished.returncode != 0:
        raise SystemExit(
            f"{case!r} failed on the {tree.label} tree ({tree.folder}), exit {finished.returncode}:"
            f"\n{finished.stderr.strip()}"
        )
    return json.loads(finished.stdout.strip().splitlines()[-1])


def describe_tree(tree: Tree) -> str:
    """`label: where ferroflow was imported from [commit]`; stops if the tree does not import."""
    found = in_child(tree, "probe")
    expected = (tree.folder / "ferroflow").resolve()
    if Path(found["file"]).resolve().parent != expected:
        raise SystemExit(
            f"the {tree.label} tree imported ferroflow from {found['file']}, not from {expected}: "
            "an installed copy shadows it"
        )
    return f"{tree.label:<9}: {found['file']} (version {found['version']}){git_state(tree.folder)}"


def git_state(folder: Path) -> str:
    def git(*arguments: str) -> str:
        command = ["git", "-C", str(folder), *arguments]
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return ""
    changed = git("status", "--porcelain", "--", ".")
    return f" [commit {commit}{', with uncommitted changes' if changed else ''}]"


@dataclass
class Row:
    case: str
    unit: str
    calls: int
    baseline: list[float]
    candidate: list[float]


def measure_case(case: str, trees: tuple[Tree, Tree], rounds: int) -> list[Row]:
    """Baseline, candidate, baseline, candidate...: one fresh process each, `rounds` pairs."""
    baseline, candidate = trees
    # The call count comes from a discarded baseline process, so that both trees do equal work.
    calls = 1 if case == ARRAY_CASE else in_child(baseline, case)["calls"]
    figures: dict[str, dict[str, list[float]]] = {}
    for round_index in range(rounds):
        for tree in trees:
            for unit, value in in_child(tree, case, calls)["figures"].items():
                figures.setdefault(unit, {}).setdefault(tree.label, []).append(value)
        print(f"  {case}: round {round_index + 1}/{rounds} done", file=sys.stderr, flush=True)
    return [
        Row(case, unit, calls, sides[baseline.label], sides[candidate.label])
        for unit, sides in figures.items()
    ]


HEADER = ["case", "figure", "pairs", "baseline", "candidate", "cand/base", "pair range", "reading"]


def table_row(row: Row) -> list[str]:
    ratios = sorted(c / b for b, c in zip(row.baseline, row.candidate, strict=True))
    lower_is_better = row.unit.startswith("us/call")
    return [
        row.case,
        row.unit if row.calls == 1 else f"{row.unit} (N={row.calls})",
        str(len(ratios)),
        f"{statistics.median(row.baseline):.1f}",
        f"{statistics.median(row.candidate):.1f}",
        f"{statistics.median(ratios):.3f}",
        f"{ratios[0]:.3f}-{ratios[-1]:.3f}",
        "above 1 = candidate slower" if lower_is_better else "below 1 = candidate slower",
    ]


def report(rows: list[Row]) -> str:
    cells = [HEADER, *(table_row(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="folder holding the baseline ferroflow")
    parser.add_argument("--candidate", type=Path, help="folder holding the candidate ferroflow")
    parser.add_argument("--rounds", type=int, default=5, help="baseline/candidate pairs per case")
    parser.add_argument("--child", choices=sorted(CHILD_CASES), help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=0, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.child is None and (arguments.baseline is None or arguments.candidate is None):
        parser.error("--baseline and --candidate are both required")
    if arguments.rounds < 1:
        parser.error("--rounds must be at least 1")
    return arguments


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    if arguments.child is not None:
        run_child(arguments.child, arguments.calls)
        return
    trees = (
        Tree("baseline", arguments.baseline.resolve()),
        Tree("candidate", arguments.candidate.resolve()),
    )
    started = time.perf_counter()
    print(f"python   : {sys.executable} ({sys.version.split()[0]}), {os.cpu_count()} cores")
    for tree in trees:
        print(describe_tree(tree))
    array_rounds = min(arguments.rounds, MAX_ARRAY_ROUNDS)
    if array_rounds < arguments.rounds:
        rounds_note = f"{array_rounds} rounds, not {arguments.rounds}"
        print(f"note     : the {ARRAY_MIB} MiB case runs {rounds_note}, to keep the run short")
    rows: list[Row] = []
    for case in CASES:
        rounds = array_rounds if case == ARRAY_CASE else arguments.rounds
        rows.extend(measure_case(case, trees, rounds))
    print(
        f"per-call figures: one flow run of N calls, best of {BEST_OF} per process; "
        f"{ARRAY_MIB} MiB: one write and one read per process; medians over processes; "
        "CPU = the process's CPU time, all threads"
    )
    print(report(rows))
    load = os.getloadavg()
    print(
        f"took {time.perf_counter() - started:.0f} s; load average {load[0]:.1f} / {load[1]:.1f} "
        "(1 / 5 min, this run included)"
    )


if __name__ == "__main__":
    main()
