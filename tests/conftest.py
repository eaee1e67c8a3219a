import os
import shlex
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import ferroflow
from ferroflow.task_runners import (
    ConcurrentTaskRunner,
    DaskTaskRunner,
    ProcessPoolTaskRunner,
    SequentialTaskRunner,
)

sys.path.insert(0, str(Path(__file__).parent))  # helpers of the tests: postgresql_server


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets a fresh FERROFLOW_HOME (so saved storages, profiles, the run store and
    default result storage never touch the user's ~/.ferroflow) and no other FERROFLOW_* variable."""
    for name in [name for name in os.environ if name.startswith("FERROFLOW_")]:
        monkeypatch.delenv(name)
    # Beside tmp_path, not in it: tests that list tmp_path see only their own files.
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("FERROFLOW_HOME", str(home))
    return home


@pytest.fixture(params=[SequentialTaskRunner, ConcurrentTaskRunner], ids=["sequential", "concurrent"])
def task_runner(request):
    """Each task runner, for behaviour that must not depend on the runner."""
    return request.param()


# --- A real S3 server on loopback ------------------------------------------------------------

S3_BUCKETS = ("results", "my-bucket", "other")
S3_ACCESS_KEY = "test-access-key"
S3_SECRET_KEY = "test-secret-key"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server (moto[server], from the test group) on 127.0.0.1 and a free port, with
    the buckets of S3_BUCKETS; stopped when the session ends. Without moto the S3 tests are
    skipped, and fail under CI=true, where everything must run."""
    from s3_servers import start_moto

    server = start_moto(tmp_path_factory.mktemp("moto"))
    try:
        server.create_buckets(S3_BUCKETS)
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch, tmp_path):
    """The environment a boto3 user has set for the server: AWS_* credentials, region and
    endpoint, no shared files, and no instance metadata service (so nothing leaves loopback)."""
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    return s3_server


# --- real clusters for the runners that execute task runs in other processes -------------------
# Started once per test session, on loopback and free ports, without dashboards, and stopped at
# the end; each flow run of a test connects to them by address.


def _require_distributed():
    try:
        import distributed
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip('Dask is not installed: pip install "ferroflow[dask]" (or distributed>=2024.8)')
    return distributed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def dask_cluster():
    """A `distributed.LocalCluster` of two worker processes with one thread each."""
    distributed = _require_distributed()
    with warnings.catch_warnings():
        # The scheduler serves its health and metrics routes on port 8787 even without a
        # dashboard, and moves to a free port (with this warning) when another cluster has it.
        warnings.filterwarnings("ignore", "Port 8787 is already in use")
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_port=0,
        )
    try:
        yield cluster
    finally:
        cluster.close()


class DaskProcesses:
    """A `dask scheduler` and `dask worker`s started as commands, each worker with its own HOME
    and working folder and no FERROFLOW_, DASK_ or AWS_ variable (as on another machine, it
    shares no settings or credentials with the flow)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []
        self.dask = str(Path(sys.executable).with_name("dask"))

    def env(self, home: Path) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("FERROFLOW_", "DASK_", "AWS_")) and key != "HOME"
        }
        env["HOME"] = str(home)
        env["PYTHONPATH"] = str(Path(ferroflow.__file__).parent.parent)
        return env

    def start_scheduler(self) -> None:
        folder = self.root / "scheduler"
        folder.mkdir()
        command = [self.dask, "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"]
        self.processes.append(self._start(command, folder))

    def start_worker(self, name: str, wrapper: list[str] | None = None) -> subprocess.Popen:
        """Start a worker; `wrapper` is a command ending in a shell script's start (`[..., "sh",
        "-c", "set-up &&"]`), which the worker's command line completes."""
        folder = self.root / name
        folder.mkdir()
        command = [
            self.dask, "worker", self.address, "--host", "127.0.0.1", "--nthreads", "1",
            "--nworkers", "1", "--no-dashboard", "--name", name,
        ]  # fmt: skip
        if wrapper is not None:  # e.g. a worker that sees other files
            command = [*wrapper[:-1], f"{wrapper[-1]} exec {shlex.join(command)}"]
        process = self._start(command, folder)
        self.processes.append(process)
        return process

    def _start(self, command: list[str], folder: Path) -> subprocess.Popen:
        log = open(folder / "log.txt", "wb")  # noqa: SIM115 (closed with the process)
        return subprocess.Popen(command, cwd=folder, env=self.env(folder), stdout=log, stderr=log)

    def wait_for_workers(self, count: int, timeout: float = 60) -> None:
        distributed = _require_distributed()
        with distributed.Client(self.address, timeout=timeout, set_as_default=False) as client:
            client.wait_for_workers(count, timeout=timeout)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def dask_processes(tmp_path_factory):
    """A scheduler and one "remote" worker started as `dask` commands."""
    _require_distributed()
    processes = DaskProcesses(tmp_path_factory.mktemp("dask-processes"))
    try:
        processes.start_scheduler()
        processes.start_worker("worker-1")
        processes.wait_for_workers(1)
        yield processes
    finally:
        processes.stop()


RUNNER_KINDS = ["sequential", "concurrent", "process-pool", "dask", "dask-commands"]


@pytest.fixture(params=RUNNER_KINDS)
def any_runner(request):
    """Each task runner, including those executing task runs in other processes: the engine
    must behave the same on all of them."""
    kind = request.param
    if kind == "sequential":
        return SequentialTaskRunner()
    if kind == "concurrent":
        return ConcurrentTaskRunner()
    if kind == "process-pool":
        return ProcessPoolTaskRunner(max_workers=2)
    if kind == "dask":
        return DaskTaskRunner(address=request.getfixturevalue("dask_cluster").scheduler_address)
    return DaskTaskRunner(address=request.getfixturevalue("dask_processes").address)


@pytest.fixture(scope="session")
def postgresql_server():
    """A real PostgreSQL server for the session (see `tests/postgresql_server.py`). Skipped, saying
    what to install, where no server binary is found; a failure under CI (`CI=true`)."""
    from postgresql_server import INSTALL_HINT, find_binaries, running_server

    binaries = find_binaries()
    if binaries is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    pytest.importorskip("psycopg", reason='psycopg is missing: pip install "ferroflow[postgres]"')
    with running_server(binaries) as server:
        yield server


@pytest.fixture
def postgresql_url(postgresql_server):
    """A `postgresql://` URL naming an empty store of the test's own."""
    return postgresql_server.new_schema_url()
