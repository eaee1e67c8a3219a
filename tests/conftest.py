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
