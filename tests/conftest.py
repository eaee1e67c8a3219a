import os

import pytest

from ferroflow.task_runners import ConcurrentTaskRunner, SequentialTaskRunner


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
