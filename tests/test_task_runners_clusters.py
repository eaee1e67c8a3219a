"""ProcessPoolTaskRunner and DaskTaskRunner: what is particular to running task runs in other
processes (results by reference, a clean cluster, storages the workers cannot reach, workers
that die). The behaviour shared with every runner is in tests/engine/test_runner_suite.py."""

import os
import pickle
import signal
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from ferroflow import flow, task
from ferroflow.context import FlowRunContext
from ferroflow.exceptions import StorageUnreachableError
from ferroflow.filesystems import S3, LocalFileSystem
from ferroflow.results import PersistedResult
from ferroflow.settings import temporary_settings
from ferroflow.task_runners import ClusterResult, DaskTaskRunner, ProcessPoolTaskRunner

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(180)


def first_call(folder: str) -> bool:
    """True the first time it is called with `folder` (in any process)."""
    try:
        os.close(os.open(Path(folder, "called"), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


@task
def make(size):
    return b"v" * size


@task
def length(data):
    return len(data)


def keys_in(server, bucket, prefix):
    listing = server.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(entry["Key"] for entry in listing.get("Contents", []))


def ferroflow_keys(client):
    """The Dask keys of ferroflow task runs the scheduler and the workers still know."""

    def on_scheduler(dask_scheduler):
        return [str(key) for key in dask_scheduler.tasks if str(key).startswith("ferroflow-")]

    def on_worker(dask_worker):
        return [str(key) for key in dask_worker.state.tasks if str(key).startswith("ferroflow-")]

    def fetched_on_worker():
        from ferroflow.task_runners import dask_worker

        return list(dask_worker._COMMONS_FETCHED)

    workers = client.run(on_worker)
    fetched = client.run(fetched_on_worker)
    return (
        client.run_on_scheduler(on_scheduler)
        + [key for keys in workers.values() for key in keys]
        + [key for keys in fetched.values() for key in keys]
    )


# --- installing ---------------------------------------------------------------------------------


def test_without_dask_the_runner_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r'pip install "ferroflow\[dask\]"'):
        DaskTaskRunner()


def test_runner_options_are_checked():
    with pytest.raises(ValueError, match="positive integer"):
        ProcessPoolTaskRunner(max_workers=0)
    with pytest.raises(ValueError, match="either `address`"):
        DaskTaskRunner(address="tcp://127.0.0.1:1", cluster_kwargs={"n_workers": 1})


# Dask's scheduler serves its health and metrics routes on port 8787 even without a dashboard,
# and moves to a free port (with this warning) when another cluster of the machine has it.
@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")
def test_a_dask_runner_without_address_starts_a_cluster_for_the_flow_run():
    runner = DaskTaskRunner(
        cluster_kwargs={
            "n_workers": 1,
            "threads_per_worker": 1,
            "processes": False,
            "dashboard_address": None,
        }
    )

    @flow(task_runner=runner)
    def pipeline():
        return length.submit(make.submit(10)).result()

    assert pipeline() == 10


# --- results by reference -----------------------------------------------------------------------


def test_a_result_not_persisted_stays_in_the_cluster_until_the_flow_asks_for_it(dask_cluster):
    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))
    def pipeline():
        made = make.submit(4 << 20)
        size = length.submit(made).result()  # moved worker to worker by Dask
        state = made.wait()
        client = FlowRunContext.get().task_runner.client
        holder = client.who_has([state.data.future])[state.data.future.key]
        return size, type(state.data), holder, len(made.result())

    size, data_type, holders, fetched = pipeline()
    assert (size, data_type, fetched) == (4 << 20, ClusterResult, 4 << 20)
    assert len(holders) == 1  # the value is on a worker (the flow holds only the Dask future)


def test_states_and_futures_of_persisted_results_pickle_as_references(dask_cluster):
    @task(persist_result=True)
    def persisted():
        return b"p" * (2 << 20)

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))
    def pipeline():
        future = persisted.submit()
        return pickle.dumps(future), cloudpickle.dumps(future.state)

    future_bytes, state_bytes = pipeline()
    assert len(future_bytes) < 16 << 10 and len(state_bytes) < 16 << 10
    future, state = pickle.loads(future_bytes), cloudpickle.loads(state_bytes)
    assert isinstance(state.data, PersistedResult) and future.state.is_completed()
    assert future.result() == state.result() == b"p" * (2 << 20)


def test_the_settings_of_the_flow_travel_with_each_task_run(dask_processes):
    # The worker started as a command has its own HOME and no FERROFLOW_ variables.
    @flow(task_runner=DaskTaskRunner(address=dask_processes.address))
    def pipeline():
        data = make.submit(3).wait().data
        return type(data).__name__, data.serializer_type, data.storage.root, data.get()

    with temporary_settings(results_persist_by_default=True, results_default_serializer="json"):
        kind, serializer, root, value = pipeline()
    assert (kind, serializer, value) == ("PersistedResult", "json", b"vvv")
    assert Path(root).is_relative_to(os.environ["FERROFLOW_HOME"])


def test_a_remote_worker_persists_to_s3_and_passes_results_by_reference(dask_processes, s3_server):
    """The worker started as a command (its own HOME, no AWS_ variable) writes to the bucket
    with the storage the flow's description carries; the downstream run loads its input from the
    bucket; the flow's process reads the values back from it."""
    from conftest import S3_ACCESS_KEY, S3_SECRET_KEY

    storage = S3(
        bucket_path="results/remote-worker",
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        region_name="us-east-1",
        endpoint_url=s3_server.endpoint,
    )

    @task(persist_result=True, result_storage_key="made")
    def produce():
        return os.getpid(), os.urandom(1 << 20)

    @task(persist_result=True, result_storage_key="used")
    def consume(made):
        pid, data = made
        return pid, os.getpid(), len(data)

    @flow(task_runner=DaskTaskRunner(address=dask_processes.address), result_storage=storage)
    def pipeline():
        made = produce.submit()
        used = consume.submit(made).wait()
        client = FlowRunContext.get().task_runner.client
        keys = [f"ferroflow-{made.task_run.name}-{made.task_run.id.hex}"]
        held_bytes = client.run_on_scheduler(
            lambda keys, dask_scheduler: [dask_scheduler.tasks[key].nbytes for key in keys], keys
        )
        return made.wait(), used, held_bytes[0]

    made, used, held_bytes = pipeline()
    assert isinstance(made.data, PersistedResult) and isinstance(used.data, PersistedResult)
    assert not made.data.has_cached_object() and not used.data.has_cached_object()
    # What Dask held and moved for the upstream run is its report, with the reference only.
    assert held_bytes < 64 << 10
    assert keys_in(s3_server, "results", "remote-worker/") == ["remote-worker/made", "remote-worker/used"]
    producer, value = made.result()  # read from the bucket by the flow's process
    assert len(value) == 1 << 20 and producer != os.getpid()
    assert used.result() == (producer, producer, 1 << 20)  # the one remote worker ran both


def test_the_parts_runs_of_a_task_share_are_sent_once_and_fetched_by_other_workers(dask_cluster):
    """A request travels without its task, result factory and settings; those are one Dask
    task's data per flow run, on one worker, and each worker keeps a copy once it needed them."""
    from ferroflow.task_runners import dask_worker

    @task
    def where(i):
        time.sleep(0.2)
        return os.getpid()

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))
    def pipeline():
        pids = {future.result() for future in where.map(range(6))}
        runner = FlowRunContext.get().task_runner
        [(key, _, future)] = runner._commons.values()
        kept = runner.client.run(lambda: list(dask_worker._COMMONS_FETCHED))
        return pids, key, runner.client.who_has([future])[key], kept

    pids, key, holders, kept = pipeline()
    assert len(pids) == 2  # both workers ran some
    assert key.startswith("ferroflow-commons-") and len(holders) == 1  # Dask data on one worker
    # Each worker kept one copy (earlier flow runs' keys may still be being forgotten).
    assert [sorted(set(held) & {key}) for held in kept.values()] == [[key], [key]]


async def kill_this_process():
    os.kill(os.getpid(), signal.SIGKILL)


def test_runs_go_on_when_the_worker_holding_their_commons_is_lost(dask_cluster):
    """The commons of a task's runs are a Dask task's data: when its worker dies, Dask computes
    them again and the runs that need them wait for them."""

    @task
    def double(x):
        return 2 * x

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))
    def pipeline():
        assert double.submit(1).result() == 2
        runner = FlowRunContext.get().task_runner
        [(key, _, future)] = runner._commons.values()
        [holder] = runner.client.who_has([future])[key]
        runner.client.run(kill_this_process, workers=[holder], wait=False)
        while holder in runner.client.scheduler_info()["workers"]:
            time.sleep(0.05)
        return [future.result() for future in double.map(range(4))]

    assert pipeline() == [0, 2, 4, 6]
    dask_cluster.wait_for_workers(2, timeout=60)


def test_a_future_of_another_runner_is_waited_for_and_its_state_sent(dask_cluster):
    @flow
    def parent():
        upstream = make.submit(3)  # the parent's thread runner

        @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))
        def child():
            return length.submit(upstream).result(), make.submit(2).result()

        return child()

    assert parent() == (3, b"vv")


def test_workers_this_process_cannot_reach_are_asked_through_the_scheduler(dask_cluster, monkeypatch):
    """Reports and values are asked of the workers directly; where that fails (here: no time
    to connect), through the scheduler, with the same outcome."""
    from ferroflow.task_runners import dask_reports

    monkeypatch.setattr(dask_reports, "_DIRECT_CONNECT_SECONDS", 0)

    @task(persist_result=True)
    def persisted(n):
        return n

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))
    def pipeline():
        made = make.map([2, 3])
        state = made[0].wait()
        return type(state.data), [future.result() for future in made], persisted.submit(7).result()

    assert pipeline() == (ClusterResult, [b"vv", b"vvv"], 7)


def test_a_task_the_workers_cannot_import_fails_its_runs_saying_why(dask_processes, tmp_path, monkeypatch):
    (tmp_path / "only_here.py").write_text("def double(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_here  # the worker started as a command has no such module

    double = task(only_here.double)

    @flow(task_runner=DaskTaskRunner(address=dask_processes.address))
    def pipeline():
        return double.submit(1).wait()

    state = pipeline(return_state=True)
    assert state.is_failed() or state.is_crashed()
    with pytest.raises(ModuleNotFoundError, match="only_here"):
        state.result()


# --- a long-lived cluster stays clean -----------------------------------------------------------


def test_a_long_lived_cluster_keeps_no_ferroflow_task_or_data_after_many_flow_runs(dask_cluster):
    import distributed

    @task(persist_result=True)
    def persisted(n):
        return n

    @task
    def fails():
        raise ValueError("x")

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))
    def pipeline(n):
        values = make.map([n, n + 1])
        fails.submit().wait()
        return length.submit(values[0]).result() + persisted.submit(n).result()

    assert [pipeline(n) for n in range(12)] == [2 * n for n in range(12)]
    with distributed.Client(dask_cluster.scheduler_address, set_as_default=False) as client:
        deadline = time.monotonic() + 10
        while (left := ferroflow_keys(client)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == []


# --- storages the workers cannot reach ----------------------------------------------------------


def test_a_local_storage_some_worker_cannot_read_fails_the_flow_before_any_task_runs(
    dask_processes, tmp_path
):
    """A worker that sees other files than the flow (as on another machine): it runs in its own
    mount namespace, where /tmp, which holds the test's folders, is an empty file system."""
    if os.geteuid() != 0 or not Path("/usr/bin/unshare").exists():
        pytest.skip("needs root and unshare to start a worker that sees other files")
    assert str(tmp_path).startswith("/tmp/")
    blind = dask_processes.start_worker(
        "blind-worker",
        wrapper=[
            "unshare", "--mount", "--propagation", "private", "sh", "-c",
            "mount -t tmpfs tmpfs /tmp && cd / &&",
        ],
    )  # fmt: skip
    try:
        dask_processes.wait_for_workers(2)

        @task
        def marker(folder):
            Path(folder, "ran").touch()

        @flow(
            task_runner=DaskTaskRunner(address=dask_processes.address),
            result_storage=LocalFileSystem(basepath=tmp_path / "results"),
        )
        def pipeline():
            marker.submit(str(tmp_path)).wait()

        with pytest.raises(StorageUnreachableError, match="blind-worker|cannot read it") as error:
            pipeline()
        assert "object storage" in str(error.value) and "shared file system" in str(error.value)
        assert not (tmp_path / "ran").exists()
        assert not [p for p in (tmp_path / "results").iterdir() if p.name.startswith(".ferroflow-probe")]
    finally:
        blind.terminate()
        blind.wait(timeout=30)
        dask_processes.processes.remove(blind)
    import distributed

    with distributed.Client(dask_processes.address, set_as_default=False) as client:
        deadline = time.monotonic() + 30
        while len(client.scheduler_info()["workers"]) != 1 and time.monotonic() < deadline:
            time.sleep(0.1)


# --- workers that die ---------------------------------------------------------------------------


def test_a_dask_worker_killed_mid_task_has_its_run_executed_again(dask_cluster, tmp_path):
    @task
    def dies_once(folder):
        if first_call(folder):
            os.kill(os.getpid(), signal.SIGKILL)
        return "survived"

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))
    def pipeline():
        return dies_once.submit(str(tmp_path)).result()

    assert pipeline() == "survived"
    dask_cluster.wait_for_workers(2, timeout=60)


def test_a_pool_worker_killed_mid_task_ends_its_run_crashed_and_later_runs_go_on(tmp_path):
    @task
    def dies(folder):
        if first_call(folder):
            os.kill(os.getpid(), signal.SIGKILL)
        return "survived"

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def pipeline():
        killed = dies.submit(str(tmp_path)).wait()
        return killed.name, killed.message, dies.submit(str(tmp_path)).result()

    name, message, later = pipeline()
    assert name == "Crashed" and "terminated abruptly" in message
    assert later == "survived"


def test_a_result_not_persisted_is_gone_with_its_flow_run_and_says_so(dask_cluster):
    from ferroflow.exceptions import MissingResult

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))
    def pipeline():
        return make.submit(5).wait().data

    data = pipeline()
    assert isinstance(data, ClusterResult)
    with pytest.raises(MissingResult, match="persist_result=True"):
        data.get()
