import pytest

from ferroflow.runstore import open_store


@pytest.fixture(params=["file", "memory"])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'ferroflow.db'}" if request.param == "file" else "memory://"
    with open_store(url) as opened:
        yield opened


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "home" / "ferroflow.db"
