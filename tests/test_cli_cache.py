import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from ferroflow.cli import app
from ferroflow.cli.cache import compact_duration, unambiguous_prefixes
from ferroflow.runstore import ResultRef, open_store

LIVE_KEY = "9b1c0f7e5d4c3b2a1f0e" + "0" * 44
EXPIRED_KEY = "77aa" * 16
FOREVER_KEY = "ffee" * 16


@pytest.fixture(params=["sqlite", "postgresql"])
def home(request, tmp_path, monkeypatch):
    """FERROFLOW_HOME, its SQLite store the one in force, or a PostgreSQL store."""
    monkeypatch.setenv("FERROFLOW_HOME", str(tmp_path))
    if request.param == "postgresql":
        monkeypatch.setenv("FERROFLOW_RUNSTORE_URL", request.getfixturevalue("postgresql_url"))
    else:
        monkeypatch.delenv("FERROFLOW_RUNSTORE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


@pytest.fixture
def cached(home):
    now = datetime.now(UTC)  # not at import: the ages shown are counted from it
    with open_store() as store:
        store.put_cache_entry(
            EXPIRED_KEY,
            "load",
            ResultRef.persisted("local-file-system/dev", "old", "pickle"),
            created=now - timedelta(hours=2),
            expiration=now - timedelta(hours=1),
        )
        store.put_cache_entry(
            LIVE_KEY,
            "load",
            ResultRef.persisted("local-file-system/dev", "new", "pickle"),
            created=now - timedelta(minutes=5),
            expiration=now + timedelta(hours=1),
        )
        store.put_cache_entry(FOREVER_KEY, "clean", ResultRef.literal(True), created=now)
    return home


def invoke(*args, **kwargs):
    return CliRunner().invoke(app, list(args), **kwargs)


def remaining_keys():
    with open_store() as store:
        return {entry.key for entry in store.list_cache_entries()}


def test_cache_ls_with_an_empty_cache(home):
    result = invoke("cache", "ls")
    assert result.exit_code == 0 and "The task cache is empty." in result.output


def table_rows(output: str) -> dict[str, list[str]]:
    """The cells of each table row whose first cell is filled, by that cell (the key or id prefix)."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells and cells[0]:
            rows[cells[0]] = cells
    return rows


def test_cache_ls_shows_key_prefixes_tasks_ages_expiry_and_results(cached):
    result = invoke("cache", "ls")
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert set(rows) == {LIVE_KEY[:8], EXPIRED_KEY[:8], FOREVER_KEY[:8]}
    assert rows[LIVE_KEY[:8]] == [
        "9b1c0f7e",
        "load",
        "5m ago",
        "in 59m",
        "key new in storage local-file-system/dev",  # a saved storage this machine has not
    ]
    assert rows[EXPIRED_KEY[:8]][2:4] == ["2h ago", "expired"]
    assert re.fullmatch(r"\d+s ago", rows[FOREVER_KEY[:8]][2])  # 0s, or a little more on a busy machine
    assert rows[FOREVER_KEY[:8]][3:] == ["never", "literal true"]


def test_cache_ls_fits_80_columns_keeping_task_words_and_file_names(home):
    folder = "/home/someone/.ferroflow/storage"
    now = datetime.now(UTC)
    with open_store() as store:
        for index in range(3):
            store.put_cache_entry(
                f"{index}" * 64,
                "summarize_the_daily_prices_for_the_quarterly_report",
                ResultRef.persisted(
                    json.dumps({"type": "local-file-system", "basepath": folder}), f"result-{index}", "pickle"
                ),
                created=now,
                expiration=now + timedelta(days=3),
            )
    result = invoke("cache", "ls", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    cells = [cell.strip() for line in lines for cell in line.split("│")]
    # Each path shortened from the middle, its file name whole; the task name broken after "_".
    for index in range(3):
        assert any(
            cell.startswith("/") and "…" in cell and cell.endswith(f"/result-{index}") for cell in cells
        )
    shown = " ".join(cells)
    assert all(
        re.search(rf"(^|[\s_]){word}(_|\s|$)", shown) for word in "summarize_the_daily_prices".split("_")
    )
    assert sum("in 2d23h" in line for line in lines) == 3


@pytest.mark.parametrize(
    ("elapsed", "shown"),
    [
        (timedelta(seconds=-3), "0s"),  # a clock a little ahead of the entry's
        (timedelta(seconds=119), "119s"),
        (timedelta(minutes=2), "2m"),
        (timedelta(minutes=119, seconds=59), "119m"),
        (timedelta(hours=47, minutes=59), "47h"),
        (timedelta(days=2, hours=5, minutes=59), "2d5h"),
        (timedelta(days=8, hours=23), "8d"),
    ],
)
def test_ages_and_expiries_are_short_and_close(elapsed, shown):
    assert compact_duration(elapsed) == shown


def test_cache_ls_lengthens_the_prefixes_of_keys_that_share_their_start(home):
    with open_store() as store:
        for key in ("abcdef0123456789", "abcdef0123999999", "abcdef01", "ffff0000"):
            store.put_cache_entry(key, "load", ResultRef.literal(None))
    assert set(table_rows(invoke("cache", "ls").output)) == {
        "abcdef01234",
        "abcdef01239",
        "abcdef01",
        "ffff0000",
    }
    # Prefixes are unambiguous among all keys, whichever entries are listed.
    with open_store() as store:
        store.put_cache_entry("abcdef0123000000", "other", ResultRef.literal(None))
    assert "abcdef01234" in table_rows(invoke("cache", "ls", "--task", "load").output)


@pytest.mark.parametrize(
    ("keys", "minimum", "expected"),
    [
        ([], 8, {}),
        (["0123456789"], 4, {"0123456789": "0123"}),
        (["aaaa1", "aaaa2", "b"], 2, {"aaaa1": "aaaa1", "aaaa2": "aaaa2", "b": "b"}),
        (["abc", "abcdef", "abd"], 1, {"abc": "abc", "abcdef": "abcd", "abd": "abd"}),
        (["x1", "x1"], 1, {"x1": "x"}),  # a key listed twice is still one key
    ],
)
def test_unambiguous_prefixes(keys, minimum, expected):
    assert unambiguous_prefixes(keys, minimum) == expected


def test_cache_ls_filters_by_task_and_prints_json(cached):
    entries = json.loads(invoke("cache", "ls", "--task", "load", "--json").output)
    assert [entry["key"] for entry in entries] == [LIVE_KEY, EXPIRED_KEY]
    assert entries[0]["result"] == {
        "kind": "persisted",
        "storage": "local-file-system/dev",
        "key": "new",
        "serializer": "pickle",
    }
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


@pytest.mark.parametrize(
    ("options", "left"),
    [
        (["--expired"], {LIVE_KEY, FOREVER_KEY}),
        (["--key", LIVE_KEY], {EXPIRED_KEY, FOREVER_KEY}),
        (["--key", LIVE_KEY[:8]], {EXPIRED_KEY, FOREVER_KEY}),
        (["--key", "7"], {LIVE_KEY, FOREVER_KEY}),
        (["--task", "load", "--expired"], {LIVE_KEY, FOREVER_KEY}),
        ([], set()),
    ],
)
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


def test_cache_clear_refuses_a_prefix_of_several_keys_and_deletes_nothing(home):
    keys = {"abcd" + str(index) * 60 for index in range(7)}
    with open_store() as store:
        for key in keys:
            store.put_cache_entry(key, "load", ResultRef.literal(None))
    result = invoke("cache", "clear", "--key", "abcd", "--yes")
    assert result.exit_code == 1
    assert "'abcd' is the start of 7 cache keys (abcd0000" in result.output
    assert (
        ", ...); give more of the key, as `ferroflow cache ls` shows it. Nothing was deleted."
        in result.output
    )
    assert remaining_keys() == keys


def test_cache_clear_prefers_the_key_given_whole_to_longer_keys_it_starts(home):
    with open_store() as store:
        for key in ("abc", "abcdef"):
            store.put_cache_entry(key, "load", ResultRef.literal(None))
    assert invoke("cache", "clear", "--key", "abc", "--yes").exit_code == 0
    assert remaining_keys() == {"abcdef"}


@pytest.mark.parametrize("command", [["cache"], ["cache", "ls"], ["cache", "clear"]])
def test_every_cache_command_has_help(home, command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Usage: " in result.output and "Examples:" in result.output
    assert "ferroflow cache " + (command[1] if len(command) > 1 else "") in result.output
