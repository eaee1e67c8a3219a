"""What the run store and the task cache cost, next to the plain function and joblib.Memory.

- per-task overhead of a flow of 10,000 trivial tasks, run store on and off, next to a plain call
  (wall time, and CPU time of the whole process: the store's writer thread included);
- a cache hit for a small result, and for a call with a 64 MiB NumPy input, next to
  `joblib.Memory` on the same function and inputs, in the same run;
- `task_input_hash` (XXH3-128) and `task_input_hash_blake3` of a 64 MiB input next to
  `hashlib.md5` of its pickle;
- `isolation_level="SERIALIZABLE"` next to `READ_COMMITTED` per cached call: on a hit (the record
  is found first: no lock), and on a miss (the call computes, taking and releasing the key's lock);
- a cache hit with results and records in a bucket of moto's S3 server on loopback, next to the
  same hit on local storage: with the record remembered by the process (every hit of a key after
  its first), and with the record read from the bucket (a key's first hit in a process).

`make bench` runs it (`-s` shows the tables). Best of three rounds (five for cache hits); nothing
asserts a time.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import joblib
import numpy as np

from _report import print_table, race
from ferroflow import flow, task
from ferroflow.cache_policies import INPUTS
from ferroflow.filesystems import S3, LocalFileSystem
from ferroflow.results.cache_records import forget_reference, record_storage_for
from ferroflow.settings import temporary_settings
from ferroflow.tasks import task_input_hash, task_input_hash_blake3

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from s3_servers import start_moto  # noqa: E402

TASKS = 10_000
HITS = 1_000
LARGE_HITS = 5
HIT_ROUNDS = 5
MIB = 2**20


def trivial(x: int) -> int:
    return x + 1


trivial_task = task(trivial)


@flow
def many_tasks(count: int) -> None:
    for i in range(count):
        trivial_task(i)


def wall_and_cpu(action: Callable[[], object], rounds: int = 3) -> tuple[float, float]:
    """Best wall time and best process CPU time (all threads) of `action`, in seconds."""
    best_wall = best_cpu = float("inf")
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        action()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu


def test_per_task_overhead_with_the_run_store() -> None:
    many_tasks(10)  # open the store, warm the caches

    def plain_calls() -> None:
        for i in range(TASKS):
            trivial(i)

    def flow_with(recording: bool) -> Callable[[], None]:
        def run() -> None:
            with temporary_settings(runstore_record_runs=recording):
                many_tasks(TASKS)  # ends with a flush: the records are committed

        return run

    rows = []
    figures = {
        "plain function call": wall_and_cpu(plain_calls),
        "task call, run store off": wall_and_cpu(flow_with(False)),
        "task call, run store on": wall_and_cpu(flow_with(True)),
    }
    plain_wall = figures["plain function call"][0]
    for name, (wall, cpu) in figures.items():
        rows.append([name, wall / TASKS * 1e6, cpu / TASKS * 1e6, wall / plain_wall])
    off, on = figures["task call, run store off"], figures["task call, run store on"]
    rows.append(["recording's share", (on[0] - off[0]) / TASKS * 1e6, (on[1] - off[1]) / TASKS * 1e6, ""])
    print_table(
        f"Per task, a flow of {TASKS:,} trivial tasks (target: <= 150 us with the store on), best of 3",
        ["", "wall us/task", "CPU us/task", "x plain"],
        rows,
    )


# --- cache hits ------------------------------------------------------------------------------------


def summary(values: Any) -> dict[str, float]:
    return {"n": float(len(values)), "total": float(np.sum(values))}


summary_task = task(summary, name="summary", cache_key_fn=task_input_hash)


@flow
def cached_calls(arguments: list[Any]) -> None:
    for argument in arguments:
        summary_task(argument)


def hit_latencies(arguments: list[Any], joblib_folder: str) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds per cache hit: ferroflow (a task call inside a flow, the entry
    committed in the run store, the result read from its file, the run recorded), the same with
    run recording off, and joblib.Memory on the same function and inputs. Taken in turns, best
    of HIT_ROUNDS each (the recorded figure varies most: it depends on when the store's writer
    thread wakes during the flow)."""
    cached_calls(arguments)  # fill the cache
    memory = joblib.Memory(joblib_folder, verbose=0)
    joblib_summary = memory.cache(summary)

    def joblib_calls() -> None:
        for argument in arguments:
            joblib_summary(argument)

    def unrecorded_calls() -> None:
        with temporary_settings(runstore_record_runs=False):
            cached_calls(arguments)

    joblib_calls()  # fill joblib's cache
    actions = {
        "ferroflow": lambda: cached_calls(arguments),
        "ferroflow, recording off": unrecorded_calls,
        "joblib.Memory": joblib_calls,
    }
    best = {name: (float("inf"), float("inf")) for name in actions}
    for _ in range(HIT_ROUNDS):
        for name, action in actions.items():
            wall, cpu = wall_and_cpu(action, rounds=1)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return {name: (wall / len(arguments), cpu / len(arguments)) for name, (wall, cpu) in best.items()}


def print_hits(title: str, latencies: dict[str, tuple[float, float]]) -> None:
    (ours, our_cpu), (theirs, their_cpu) = latencies["ferroflow"], latencies["joblib.Memory"]
    unrecorded, unrecorded_cpu = latencies["ferroflow, recording off"]
    print_table(
        title,
        ["", "wall µs/hit", "CPU µs/hit", "joblib / ferroflow (wall)", "(CPU)"],
        [
            ["ferroflow task cache", ours * 1e6, our_cpu * 1e6, theirs / ours, their_cpu / our_cpu],
            ["joblib.Memory", theirs * 1e6, their_cpu * 1e6, 1.0, 1.0],
            [
                "ferroflow, run recording off",
                unrecorded * 1e6,
                unrecorded_cpu * 1e6,
                theirs / unrecorded,
                their_cpu / unrecorded_cpu,
            ],
        ],
    )


def test_a_small_cache_hit_next_to_joblib(tmp_path) -> None:
    arguments = [[i, i + 1, i + 2] for i in range(HITS)]
    latencies = hit_latencies(arguments, str(tmp_path / "joblib"))
    print_hits(f"Cache hit, small input and result ({HITS:,} hits; target: >= 1.2x joblib)", latencies)


def test_a_cache_hit_with_a_64_mib_input_next_to_joblib(tmp_path) -> None:
    rng = np.random.default_rng(7)
    arguments = [rng.random(64 * MIB // 8) for _ in range(LARGE_HITS)]
    latencies = hit_latencies(arguments, str(tmp_path / "joblib"))
    print_hits(f"Cache hit with a 64 MiB NumPy input ({LARGE_HITS} inputs; target: >= 10x joblib)", latencies)


def test_task_input_hash_of_64_mib_next_to_md5_of_its_pickle() -> None:
    array = np.random.default_rng(3).random(64 * MIB // 8)
    context = SimpleNamespace(task=summary_task)
    rows = {
        "task_input_hash (XXH3-128, in place)": lambda: task_input_hash(context, {"values": array}),
        "task_input_hash_blake3 (BLAKE3-256, in place)": lambda: task_input_hash_blake3(
            context, {"values": array}
        ),
        "hashlib.md5(pickle.dumps(array))": lambda: hashlib.md5(pickle.dumps(array, protocol=5)).hexdigest(),
    }
    best = race(rows)
    md5 = best["hashlib.md5(pickle.dumps(array))"]
    print_table(
        "Hashing a 64 MiB NumPy input (target: task_input_hash >= 4 GB/s)",
        ["", "ms", "GB/s", "x md5"],
        [
            [name, seconds * 1e3, array.nbytes / seconds / 1e9, md5 / seconds]
            for name, seconds in best.items()
        ],
    )


SERIALIZABLE_CALLS = 300


def test_serializable_overhead_per_cached_call() -> None:
    read_committed = task(summary, name="summary-read-committed", cache_policy=INPUTS)
    serializable = task(
        summary, name="summary-serializable", cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE")
    )

    @flow
    def calls(which: Any, arguments: list[Any]) -> None:
        for argument in arguments:
            which(argument)

    hits = [[i, i + 1] for i in range(SERIALIZABLE_CALLS)]
    calls(read_committed, hits)
    calls(serializable, hits)
    rounds = iter(range(1, 10**6))

    def misses(which: Any) -> Callable[[], None]:
        # New inputs every round: each call misses, computes and writes its result and record.
        return lambda: calls(which, [[next(rounds) * 10**6 + i] for i in range(SERIALIZABLE_CALLS)])

    actions = {
        "hit, READ_COMMITTED": lambda: calls(read_committed, hits),
        "hit, SERIALIZABLE": lambda: calls(serializable, hits),
        "miss, READ_COMMITTED": misses(read_committed),
        "miss, SERIALIZABLE (lock taken and released)": misses(serializable),
    }
    best = {name: (float("inf"), float("inf")) for name in actions}
    for _ in range(HIT_ROUNDS):
        for name, action in actions.items():
            wall, cpu = wall_and_cpu(action, rounds=1)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    rows = []
    for kind in ("hit", "miss"):
        names = [name for name in actions if name.startswith(kind)]
        (base, base_cpu) = best[names[0]]
        for name in names:
            wall, cpu = best[name]
            rows.append(
                [
                    name,
                    wall / SERIALIZABLE_CALLS * 1e6,
                    cpu / SERIALIZABLE_CALLS * 1e6,
                    (wall - base) / SERIALIZABLE_CALLS * 1e6,
                    (cpu - base_cpu) / SERIALIZABLE_CALLS * 1e6,
                ]
            )
    print_table(
        f"SERIALIZABLE next to READ_COMMITTED, per cached call ({SERIALIZABLE_CALLS} calls, local storage)",
        ["", "wall µs/call", "CPU µs/call", "overhead µs (wall)", "(CPU)"],
        rows,
    )


S3_HITS = 300  # enough that a flow run's own start and end weigh little per hit
S3_ROUNDS = 3


def s3_hit_latencies(storage: Any, name: str) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds per cache hit of `S3_HITS` keys kept in `storage`: with each key's
    record remembered by the process, and with it read from the storage (the process forgets
    what it found before each round, as a process that never looked the keys up)."""
    cached = task(summary, name=f"summary-{name}", cache_key_fn=task_input_hash, result_storage=storage)

    @flow
    def calls(arguments: list[Any]) -> list[str | None]:
        return [cached(argument, return_state=True).state_details.cache_key for argument in arguments]

    arguments = [[i, i + 1, i + 2] for i in range(S3_HITS)]
    keys = calls(arguments)  # fill the cache
    records = record_storage_for(storage)

    def first_hits() -> None:
        for key in keys:
            forget_reference(records, key)  # type: ignore[arg-type]
        calls(arguments)

    latencies = {}
    for kind, action in {"record remembered": lambda: calls(arguments), "record read": first_hits}.items():
        wall, cpu = wall_and_cpu(action, rounds=S3_ROUNDS)
        latencies[kind] = (wall / S3_HITS, cpu / S3_HITS)
    return latencies


def test_a_cache_hit_on_loopback_s3_next_to_local(tmp_path, monkeypatch) -> None:
    moto = start_moto(tmp_path)
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "bench-access-key")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "bench-secret-key")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        moto.create_buckets(("bench",))
        figures = {
            "local storage": s3_hit_latencies(LocalFileSystem(basepath=str(tmp_path / "local")), "local"),
            "S3 (moto on loopback)": s3_hit_latencies(
                S3(bucket_path="bench/results", endpoint_url=moto.endpoint), "s3"
            ),
        }
    finally:
        moto.stop()
    local = figures["local storage"]["record remembered"][0]
    print_table(
        f"Cache hit, small input and result, on local storage and on S3 ({S3_HITS} hits, best of "
        f"{S3_ROUNDS}, run recording on; 'record read': the key's first hit in a process)",
        ["storage", "cache record", "wall µs/hit", "CPU µs/hit", "x local (wall)"],
        [
            [where, kind, wall * 1e6, cpu * 1e6, wall / local]
            for where, latencies in figures.items()
            for kind, (wall, cpu) in latencies.items()
        ],
    )
