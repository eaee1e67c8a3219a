"""SERIALIZABLE isolation: concurrent runs of one cache key compute it once, in threads and in
processes; a dead holder's lock is taken over after its lease; waiting is bounded."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from ferroflow import flow, task
from ferroflow.cache_policies import INPUTS, CacheKeyFnPolicy
from ferroflow.filesystems import LocalFileSystem
from ferroflow.results.cache_locks import CacheLockTimeout, LockInfo, lock_key, try_acquire
from ferroflow.results.cache_records import LocalRecordStorage
from other_homes import home_env

# A cached task whose body counts its executions with files created with O_EXCL (run-0, run-1,
# ...); the first execution sleeps FIRST_SLEEP seconds, the others none. Every process waits for
# the "go" file after its imports, so that they all miss the cache at the same moment.
SCRIPT = """
import os, sys, time
from pathlib import Path
from ferroflow import flow, task
from ferroflow.cache_policies import INPUTS, CacheKeyFnPolicy
from ferroflow.filesystems import S3, LocalFileSystem

where, counts, first_sleep, lease = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
policy = INPUTS.configure(isolation_level="SERIALIZABLE", lock_lease_seconds=lease, lock_wait_seconds=120)
if where.startswith("s3://"):  # credentials and endpoint from the AWS_* environment
    storage = S3(bucket_path=where.removeprefix("s3://"))
else:
    storage = LocalFileSystem(basepath=where)

@task(cache_policy=policy, result_storage=storage)
def slow_double(x):
    n = 0
    while True:
        try:
            fd = os.open(counts / f"run-{n}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            n += 1
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        break
    time.sleep(first_sleep if n == 0 else 0.0)
    return x * 2

@flow
def run(x):
    return slow_double(x)

(counts / f"ready-{os.getpid()}").touch()
while not (counts / "go").exists():
    time.sleep(0.005)
print(run(21))
"""


@pytest.fixture(params=["local", "s3"])
def shared_storage(request, tmp_path):
    """Where the processes keep results, cache records and locks: a folder, or a bucket prefix
    on the loopback S3 server (create-only puts with If-None-Match)."""
    if request.param == "local":
        return str(tmp_path / "results")
    request.getfixturevalue("s3_env")
    return f"s3://results/locks-{tmp_path.name}"


def start(tmp_path, count, first_sleep, lease, storage):
    script = tmp_path / "serializable_script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    counts = tmp_path / "counts"
    counts.mkdir()
    processes = []
    for n in range(count):
        env = home_env(tmp_path / f"home-{n}")
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(script),
                    storage,
                    str(counts),
                    str(first_sleep),
                    str(lease),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    deadline = time.monotonic() + 120
    while len(list(counts.glob("ready-*"))) < count:
        assert time.monotonic() < deadline, "the processes did not start"
        assert all(process.poll() is None for process in processes), [p.stderr.read() for p in processes]
        time.sleep(0.05)
    (counts / "go").touch()
    return counts, processes


def executions(counts):
    return sorted(path.name for path in counts.glob("run-*"))


def test_eight_processes_compute_one_key_once(tmp_path, shared_storage):
    counts, processes = start(tmp_path, 8, first_sleep=1.0, lease=10, storage=shared_storage)
    outputs = [process.communicate(timeout=180) for process in processes]
    assert [process.returncode for process in processes] == [0] * 8, [err for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == ["42"] * 8
    assert executions(counts) == ["run-0"]
    if shared_storage.startswith("s3://"):  # the record really is in the bucket
        from ferroflow.filesystems import S3

        bucket = S3(bucket_path=shared_storage.removeprefix("s3://"))
        assert len(list(bucket.record_storage().list_keys(""))) >= 1


def test_a_killed_holder_is_taken_over_after_its_lease_and_computed_once_more(tmp_path, shared_storage):
    counts, processes = start(tmp_path, 8, first_sleep=60, lease=1.5, storage=shared_storage)
    deadline = time.monotonic() + 60
    while not (counts / "run-0").exists() or not (counts / "run-0").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    holder = int((counts / "run-0").read_text())
    os.kill(holder, signal.SIGKILL)
    survivors = [process for process in processes if process.pid != holder]
    assert len(survivors) == 7
    outputs = [process.communicate(timeout=180) for process in survivors]
    assert [process.returncode for process in survivors] == [0] * 7, [err for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == ["42"] * 7
    assert executions(counts) == ["run-0", "run-1"]
    for process in processes:
        process.wait(timeout=10)


def test_threads_of_one_process_compute_once(tmp_path):
    calls = []
    policy = INPUTS.configure(isolation_level="SERIALIZABLE")

    @task(cache_policy=policy, result_storage=LocalFileSystem(basepath=str(tmp_path)))
    def slow(x):
        calls.append(x)
        time.sleep(0.3)
        return x + 1

    @flow
    def many(x):
        return [future.result() for future in [slow.submit(x) for _ in range(6)]]

    assert many(1) == [2] * 6
    assert calls == [1]


def test_isolation_level_on_the_task_works_with_a_key_function(tmp_path):
    calls = []

    @task(
        cache_key_fn=lambda: "fixed",
        isolation_level="SERIALIZABLE",
        result_storage=LocalFileSystem(basepath=str(tmp_path)),
    )
    def slow():
        calls.append(1)
        time.sleep(0.2)
        return "done"

    @flow
    def many():
        return [future.result() for future in [slow.submit() for _ in range(4)]]

    assert many() == ["done"] * 4
    assert calls == [1]


def test_a_failed_holder_lets_a_waiter_compute(tmp_path):
    attempts = []
    lock = threading.Lock()

    @task(
        cache_key_fn=lambda: "k",
        isolation_level="SERIALIZABLE",
        result_storage=LocalFileSystem(basepath=str(tmp_path)),
    )
    def flaky():
        with lock:
            attempts.append(1)
            first = len(attempts) == 1
        time.sleep(0.2)
        if first:
            raise RuntimeError("first attempt fails")
        return "ok"

    @flow
    def both():
        futures = [flaky.submit() for _ in range(2)]
        return [future.wait().name for future in futures]

    # The holder failed and left no record: the waiter took the lock and computed.
    assert sorted(both()) == ["Completed", "Failed"]
    assert len(attempts) == 2


def test_waiting_is_bounded_with_a_clear_error(tmp_path):
    policy = CacheKeyFnPolicy(lambda: "k").configure(
        isolation_level="SERIALIZABLE", lock_wait_seconds=0.3, cache_storage=str(tmp_path / "records")
    )

    @task(cache_policy=policy, result_storage=LocalFileSystem(basepath=str(tmp_path / "results")))
    def never():
        return 1

    states = []

    @flow
    def run():
        states.append(never(return_state=True))  # kept aside: a Failed state returned fails the flow

    # Another run holds the key's lock, alive (fresh heartbeat, long lease).
    holder = try_acquire(LocalRecordStorage(tmp_path / "records"), "k", lease_seconds=60)
    try:
        assert run(return_state=True).is_failed()  # its task run failed
    finally:
        holder.release()
    state = states.pop()
    assert state.is_failed()
    with pytest.raises(CacheLockTimeout, match="waited 0.3 s for another run of its cache key"):
        state.result()
    run()
    assert states.pop().name == "Completed"  # released: the next run computes


def test_a_lock_is_taken_over_once_its_lease_ran_out(tmp_path):
    storage = LocalRecordStorage(tmp_path)
    dead = LockInfo("elsewhere:1:main", "deadtoken", 0.5, time.time() - 10)
    storage.create_only(lock_key("k"), dead.to_bytes())
    assert try_acquire(storage, "k", lease_seconds=30) is not None
    assert try_acquire(storage, "k", lease_seconds=30) is None  # now held, alive
    fresh = LockInfo("elsewhere:1:main", "alive", 30, time.time())
    other = LocalRecordStorage(tmp_path / "other")
    other.create_only(lock_key("k"), fresh.to_bytes())
    assert try_acquire(other, "k", lease_seconds=30) is None


def test_a_living_holder_keeps_its_lock_past_the_lease_by_its_heartbeat(tmp_path):
    calls = []
    policy = INPUTS.configure(isolation_level="SERIALIZABLE", lock_lease_seconds=0.3)

    @task(cache_policy=policy, result_storage=LocalFileSystem(basepath=str(tmp_path)))
    def long_running(x):
        calls.append(x)
        time.sleep(1.5)  # five leases: without heartbeats a waiter would take the lock over
        return x

    @flow
    def many():
        return [future.result() for future in [long_running.submit(7) for _ in range(4)]]

    assert many() == [7] * 4
    assert calls == [7]
