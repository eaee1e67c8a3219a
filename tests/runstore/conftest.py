import pytest

from ferroflow.runstore import open_store


@pytest.fixture(params=["file", "memory", "postgresql"])
def store(request, tmp_path):
    """Each backend: a SQLite file, SQLite in memory, PostgreSQL (a real server)."""
    with open_store(store_url_of(request, request.param, tmp_path)) as opened:
        yield opened


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The URL of a new store that other processes can open too, in each database."""
    return store_url_of(request, request.param, tmp_path)


def store_url_of(request, kind, tmp_path):
    if kind == "postgresql":
        return request.getfixturevalue("postgresql_url")
    if kind == "memory":
        return "memory://"
    return f"sqlite:///{tmp_path / 'ferroflow.db'}"


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "home" / "ferroflow.db"
