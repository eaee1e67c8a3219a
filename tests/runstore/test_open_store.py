"""Which store `open_store` opens: the default URL and the URL forms."""

import pytest

from ferroflow.runstore import SQLiteRunStore, default_store_url, open_store
from ferroflow.settings import temporary_settings


def test_the_default_url_is_a_file_in_ferroflow_home(tmp_path, monkeypatch):
    monkeypatch.delenv("FERROFLOW_RUNSTORE_URL", raising=False)
    with temporary_settings(home=tmp_path):
        assert default_store_url() == f"sqlite:///{tmp_path / 'ferroflow.db'}"
        with open_store() as store:
            assert store.path == tmp_path / "ferroflow.db"
    monkeypatch.setenv("FERROFLOW_RUNSTORE_URL", "memory://")
    assert default_store_url() == "memory://"


def test_relative_sqlite_urls_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///runs/here.db") as store:
        assert isinstance(store, SQLiteRunStore) and store.path == tmp_path / "runs" / "here.db"


@pytest.mark.parametrize("url", ["mysql://db/ferroflow", "postgresql://", "sqlite:///", "runs.db"])
def test_unsupported_urls_say_which_forms_work(url):
    with pytest.raises(
        ValueError,
        match="Unsupported run store URL.*sqlite:///relative/path.db.*postgresql://user:password@host:port/database or memory://",
    ):
        open_store(url)
