import os
import sys
from pathlib import Path

import pytest

from ferroflow.task_runners import ConcurrentTaskRunner, SequentialTaskRunner

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


@pytest.fixture(scope="session")
def postgresql_server():
    """A real PostgreSQL server for the session (see `tests/postgresql_server.py`). Skipped, saying
    what to install, where no server binary is found; a failure under CI (`CI=true`)."""
    from postgresql_server import INSTALL_HINT, PostgreSQLServer, find_binaries

    binaries = find_binaries()
    if binaries is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    pytest.importorskip("psycopg", reason='psycopg is missing: pip install "ferroflow[postgres]"')
    server = PostgreSQLServer(binaries)
    try:
        server.start()
        server.create_database()
        yield server
    finally:
        server.close()


@pytest.fixture
def postgresql_url(postgresql_server):
    """A `postgresql://` URL naming an empty store of the test's own."""
    return postgresql_server.new_schema_url()
