import json
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from ferroflow.cli import app
from ferroflow.runstore import ResultRef, open_store

NOW = datetime.now(timezone.utc)
LIVE_KEY = "9b1c0f7e5d4c3b2a1f0e" + "0" * 44
EXPIRED_KEY = "77aa" * 16
FOREVER_KEY = "ffee" * 16


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FERROFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("FERROFLOW_RUNSTORE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


@pytest.fixture
def cached(home):
    with open_store() as store:
        store.put_cache_entry(EXPIRED_KEY, "load", ResultRef.persisted("local-file-system/dev", "old", "pickle"),
                              created=NOW - timedelta(hours=2), expiration=NOW - timedelta(hours=1))
        store.put_cache_entry(LIVE_KEY, "load", ResultRef.persisted("local-file-system/dev", "new", "pickle"),
                              created=NOW - timedelta(minutes=5), expiration=NOW + timedelta(hours=1))
        store.put_cache_entry(FOREVER_KEY, "clean", ResultRef.literal(True), created=NOW)
    return home


def invoke(*args, **kwargs):
    return CliRunner().invoke(app, list(args), **kwargs)


def remaining_keys():
    with open_store() as store:
        return {entry.key for entry in store.list_cache_entries()}


def test_cache_ls_with_an_empty_cache(home):
    result = invoke("cache", "ls")
    assert result.exit_code == 0 and "The task cache is empty." in result.output


def test_cache_ls_shows_key_prefixes_tasks_expiry_and_results(cached):
    result = invoke("cache", "ls")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    assert set(rows) == {LIVE_KEY[:12], EXPIRED_KEY[:12], FOREVER_KEY[:12]}
    assert "load" in rows[LIVE_KEY[:12]] and "new (pickle) in local-file-system/dev" in rows[LIVE_KEY[:12]]
    assert "(expired)" in rows[EXPIRED_KEY[:12]] and "(expired)" not in rows[LIVE_KEY[:12]]
    assert "never" in rows[FOREVER_KEY[:12]] and "literal true" in rows[FOREVER_KEY[:12]]


def test_cache_ls_filters_by_task_and_prints_json(cached):
    entries = json.loads(invoke("cache", "ls", "--task", "load", "--json").output)
    assert [entry["key"] for entry in entries] == [LIVE_KEY, EXPIRED_KEY]
    assert entries[0]["result"] == {"kind": "persisted", "storage": "local-file-system/dev", "key": "new",
                                    "serializer": "pickle"}
    assert "No cache entries for task 'nothing'" in invoke("cache", "ls", "--task", "nothing").output


def test_cache_clear_asks_with_the_count_and_stops_on_no(cached):
    result = invoke("cache", "clear", input="n\n")
    assert "Delete 3 cache entries?" in result.output
    assert result.exit_code == 1  # aborted
    assert len(remaining_keys()) == 3


def test_cache_clear_deletes_on_yes(cached):
    result = invoke("cache", "clear", "--task", "load", input="y\n")
    assert result.exit_code == 0, result.output
    assert "Delete 2 cache entries?" in result.output and "Deleted 2 cache entries." in result.output
    assert remaining_keys() == {FOREVER_KEY}


@pytest.mark.parametrize(("options", "left"), [
    (["--expired"], {LIVE_KEY, FOREVER_KEY}),
    (["--key", LIVE_KEY], {EXPIRED_KEY, FOREVER_KEY}),
    (["--task", "load", "--expired"], {LIVE_KEY, FOREVER_KEY}),
    ([], set()),
])
def test_cache_clear_filters_with_yes(cached, options, left):
    result = invoke("cache", "clear", *options, "--yes")
    assert result.exit_code == 0, result.output
    assert "Deleted" in result.output and "?" not in result.output
    assert remaining_keys() == left


def test_cache_clear_with_no_match_deletes_nothing(cached):
    result = invoke("cache", "clear", "--key", "no-such-key")
    assert result.exit_code == 0
    assert "No cache entries match; nothing to delete." in result.output
    assert len(remaining_keys()) == 3


@pytest.mark.parametrize("command", [["cache"], ["cache", "ls"], ["cache", "clear"]])
def test_every_cache_command_has_help(home, command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Usage: " in result.output and "Examples:" in result.output
    assert "ferroflow cache " + (command[1] if len(command) > 1 else "") in result.output
