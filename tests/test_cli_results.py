"""`ferroflow results inspect` and `ferroflow results prune` on the files of real runs."""

import json
import os
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from ferroflow import flow, task
from ferroflow.cli import app
from ferroflow.cli.results import parse_age, parse_size
from ferroflow.exceptions import MissingResult
from ferroflow.filesystems import LocalFileSystem
from ferroflow.runstore import default_store_url, open_store
from ferroflow.serializers import CompressedSerializer
from ferroflow.tasks import task_input_hash

PREFECT2_SAMPLES = Path(__file__).parent / "data" / "prefect2-results"
DAY = 86400


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, list(args))

    return invoke


@pytest.fixture
def storage(isolated_home):
    return Path(isolated_home, "storage")


def persisted_file(value, **task_options):
    """Run a flow whose task persists `value`; the path of its result file."""

    @task(persist_result=True, **task_options)
    def produce():
        return value

    @flow
    def my_flow():
        return produce(return_state=True)

    state = my_flow()
    return Path(getattr(state.data.storage, "basepath", None) or "", state.data.storage_key)


def age(path, seconds):
    """Make `path` look last written `seconds` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))


# --- inspect ---------------------------------------------------------------------------------------


def test_inspect_shows_the_header_of_a_result_file(cli):
    path = persisted_file(
        list(range(1000)), result_serializer=CompressedSerializer(serializer="pickle", compressionlib="zstd")
    )
    shown = cli("results", "inspect", str(path))
    assert shown.exit_code == 0, shown.output
    for expected in (
        '"compressionlib": "zstd"',
        "zstd",
        "xxh3-64",
        "ferroflow version",
        "created",
        "raw size",
    ):
        assert expected in shown.output
    details = json.loads(cli("results", "inspect", str(path), "--json").output)
    assert details["serializer"] == "compressed" and details["codec"] == "zstd"
    assert details["stored_size"] < details["raw_size"] and details["file_size"] == path.stat().st_size
    assert details["format_version"] and details["checksum_algorithm"] == "xxh3-64"


def test_inspect_shows_that_a_tiny_gzip_result_is_stored_uncompressed(cli):
    serializer = CompressedSerializer(serializer="pickle", compressionlib="gzip")
    path = persisted_file({"answer": 42, "ok": True}, result_serializer=serializer)
    details = json.loads(cli("results", "inspect", str(path), "--json").output)
    # gzip would have grown the 33-byte pickle: the file holds the pickle itself and says so.
    assert details["serializer"] == "pickle" and details["codec"] == "none"
    assert (
        details["stored_size"]
        == details["raw_size"]
        == len(serializer.serializer.dumps({"answer": 42, "ok": True}))
    )


@pytest.mark.parametrize(
    "sample, serializer",
    [("pickle.json", "pickle"), ("json.json", "json"), ("compressed_pickle.json", "compressed/pickle")],
)
def test_inspect_reads_prefect2_result_files(cli, sample, serializer):
    details = json.loads(cli("results", "inspect", str(PREFECT2_SAMPLES / sample), "--json").output)
    assert details["format"] == "Prefect 2 JSON result"
    assert details["serializer"] == serializer and details["prefect_version"] == "2.7.12"


def test_inspect_refuses_a_file_that_is_not_a_result(cli, tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    shown = cli("results", "inspect", str(other))
    assert shown.exit_code == 1 and "is not a ferroflow result file" in shown.output


# --- prune -----------------------------------------------------------------------------------------


def unreferenced_file(storage):
    """A result file no run state or cache entry refers to (as a deleted run store would leave)."""
    path = persisted_file({"orphan": True})
    with open_store(default_store_url()) as store:
        store.delete_cache_entries()
    orphan = storage / "orphan-result"
    path.rename(orphan)
    return orphan


def test_prune_by_age_removes_old_results_even_of_recorded_runs(cli, storage):
    @task(persist_result=True, cache_result_in_memory=False)
    def produce():
        return [1, 2, 3]

    @flow
    def my_flow():
        return produce(return_state=True)

    recorded = my_flow()  # its run and states are in the run store
    referenced = Path(recorded.data.storage.basepath, recorded.data.storage_key)
    orphan = unreferenced_file(storage)
    fresh_orphan = storage / "fresh-orphan"
    fresh_orphan.write_bytes(orphan.read_bytes())
    not_a_result = storage / "README.txt"
    not_a_result.write_text("mine")
    for path in (referenced, orphan, not_a_result):
        age(path, 8 * DAY)

    pruned = cli("results", "prune", "--older-than", "7d")
    assert pruned.exit_code == 0, pruned.output
    assert "Removed 2 result files (2 older than 7d)" in pruned.output and "kept 1." in pruned.output
    assert not orphan.exists() and not referenced.exists()
    assert fresh_orphan.exists() and not_a_result.exists()
    # The recorded run's result says where it went.
    with pytest.raises(MissingResult, match=r"removed by ferroflow results prune \(by age\)"):
        recorded.result()


def test_prune_by_age_keeps_results_of_live_cache_entries(cli, storage):
    calls = []

    @task(cache_key_fn=task_input_hash)
    def cached():
        calls.append(1)
        return "cached value"

    @flow
    def my_flow():
        return cached(return_state=True)

    path = Path(storage, my_flow().data.storage_key)
    age(path, 2 * DAY)
    pruned = cli("results", "prune", "--older-than", "1d")
    assert "Removed 0 result files" in pruned.output and "1 of them old but cached" in pruned.output
    assert path.exists() and my_flow().name == "Cached"
    # A size limit removes it all the same, and its cache entry with it: the task runs again.
    pruned = cli("results", "prune", "--max-bytes", "0", "--min-age", "0s")
    assert "Removed 1 result file (1 to stay under 0 bytes)" in pruned.output, pruned.output
    assert not path.exists()
    assert my_flow().name == "Completed" and calls == [1, 1]


def test_prune_by_size_removes_the_least_recently_used_first(cli, storage):
    paths = [persisted_file(bytes(1000) * (n + 1)) for n in range(4)]
    for n, path in enumerate(paths):
        then = time.time() - DAY + n * 60  # used in order: 0 least recently
        os.utime(path, (then, then))
    sizes = [path.stat().st_size for path in paths]
    limit = sizes[2] + sizes[3]
    pruned = cli("results", "prune", "--max-bytes", str(limit))
    assert pruned.exit_code == 0, pruned.output
    assert "Removed 2 result files (2 to stay under" in pruned.output
    assert [path.exists() for path in paths] == [False, False, True, True]
    # Reading one after a cache hit makes it recently used.
    os.utime(paths[2], (time.time(), paths[2].stat().st_mtime))
    cli("results", "prune", "--max-bytes", str(sizes[2]))
    assert [path.exists() for path in paths] == [False, False, True, False]


def test_prune_by_size_never_removes_files_younger_than_min_age(cli, storage):
    path = persisted_file("fresh")
    pruned = cli("results", "prune", "--max-bytes", "0")
    assert "Removed 0 result files" in pruned.output and path.exists()


def test_prune_needs_an_age_or_a_size(cli):
    refused = cli("results", "prune")
    assert refused.exit_code == 2 and "Give --older-than AGE, --max-bytes SIZE, or both" in refused.output
    bad_size = cli("results", "prune", "--max-bytes", "lots")
    assert bad_size.exit_code == 2 and "is not a size" in bad_size.output


@pytest.mark.parametrize(
    ("text", "expected"),
    [("500", 500), ("10k", 10240), ("2G", 2 * 2**30), ("1.5M", 3 * 2**19), ("3MiB", 3 * 2**20)],
)
def test_sizes(text, expected):
    assert parse_size(text) == expected


def test_prune_dry_run_removes_nothing(cli, storage):
    orphan = unreferenced_file(storage)
    age(orphan, 2 * 3600)
    pruned = cli("results", "prune", "--older-than", "1h", "--dry-run")
    assert pruned.exit_code == 0, pruned.output
    assert f"would remove {orphan}" in pruned.output and "Would remove 1 result file" in pruned.output
    assert orphan.exists()


def test_expired_cache_entries_do_not_keep_their_files(cli, storage):
    @task(cache_key_fn=task_input_hash, cache_expiration=timedelta(milliseconds=1))
    def cached():
        return "cached value"

    @flow
    def my_flow():
        return cached(return_state=True)

    path = Path(storage, my_flow().data.storage_key)
    with sqlite3.connect(Path(storage.parent, "ferroflow.db")) as connection:
        connection.execute("DELETE FROM states")  # forget the runs; only the cache entry is left
    age(path, 120)
    time.sleep(0.01)
    assert "Removed 1 result file" in cli("results", "prune", "--older-than", "1m").output
    assert not path.exists()


def test_prune_a_storage_given_by_slug_or_folder(cli, tmp_path, monkeypatch):
    # Writers sweep leftovers older than this bound themselves; keep the one below for the prune.
    monkeypatch.setenv("FERROFLOW_RESULTS_UNFINISHED_WRITE_MAX_AGE", str(30 * DAY))
    folder = tmp_path / "team-results"
    slug = LocalFileSystem(basepath=str(folder)).save("team")
    referenced = persisted_file("kept", result_storage=slug)
    leftover = folder / f".{referenced.name}.{'0' * 15}1.tmp"  # a write a killed process left
    leftover.write_bytes(b"partial")
    stray = folder / "stray"
    stray.write_bytes(referenced.read_bytes())
    for path in (referenced, leftover, stray):
        age(path, 3 * DAY)

    by_slug = cli("results", "prune", "--older-than", "2d", "--storage", slug, "--dry-run")
    assert "Would remove 3 result files" in by_slug.output, by_slug.output
    by_folder = cli("results", "prune", "--older-than", "2d", "--storage", str(folder))
    assert "Removed 3 result files" in by_folder.output, by_folder.output
    assert not referenced.exists() and not leftover.exists() and not stray.exists()


def test_prune_explains_bad_arguments(cli, tmp_path):
    bad_age = cli("results", "prune", "--older-than", "7 days")
    assert bad_age.exit_code == 2 and "write a number and a unit" in bad_age.output
    missing = cli("results", "prune", "--older-than", "7d", "--storage", str(tmp_path / "nowhere"))
    assert missing.exit_code == 1 and "neither a saved storage nor a folder" in missing.output


@pytest.mark.parametrize(
    "text, expected",
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_ages(text, expected):
    assert parse_age(text) == expected


@pytest.mark.parametrize("command", [["results"], ["results", "inspect"], ["results", "prune"]])
def test_every_results_command_has_help_with_examples(cli, command):
    shown = cli(*command, "--help")
    assert shown.exit_code == 0
    assert "Examples" in shown.output


def test_a_reference_to_a_storage_that_cannot_be_opened_keeps_its_key(cli, storage):
    from ferroflow.runstore import ResultRef

    orphan = unreferenced_file(storage)
    with open_store(default_store_url()) as store:  # a saved storage that was deleted since
        store.put_cache_entry("k", "t", ResultRef.persisted("local-file-system/gone", orphan.name, "pickle"))
    age(orphan, 2 * DAY)
    pruned = cli("results", "prune", "--older-than", "1d")
    assert "Removed 0 result files" in pruned.output and orphan.exists()


# --- object storage ---------------------------------------------------------------------------------


def test_inspect_and_prune_a_bucket_prefix(cli, s3_env):
    from ferroflow.filesystems import S3
    from ferroflow.results import PersistedResult
    from ferroflow.results.retention import removal_note
    from ferroflow.serializers import PickleSerializer

    storage = S3(bucket_path="results/cli")
    # A result a live cache entry names (its record is in the bucket, beside it), and another.
    cached = persisted_file([1, 2, 3], result_storage=storage, cache_key_fn=lambda *_: "cli-cached")
    PersistedResult._write(
        "orphan", storage=storage, serializer=PickleSerializer(), storage_key="orphan", cache_in_memory=False
    )
    storage.write_path("notes.txt", b"not a result")

    inspected = cli("results", "inspect", "--json", f"s3://results/cli/{cached.name}")
    assert inspected.exit_code == 0, inspected.output
    details = json.loads(inspected.output)
    assert details["format"] == "ferroflow framed result" and details["file_size"] > details["raw_size"]
    not_result = cli("results", "inspect", "s3://results/cli/notes.txt")
    assert not_result.exit_code == 1 and "not a ferroflow result object" in not_result.output

    time.sleep(1.1)  # the server's modification times have whole seconds
    by_age = ["results", "prune", "--older-than", "0s", "--min-age", "0s", "--storage", "s3://results/cli"]
    dry = cli(*by_age, "--dry-run")
    assert "would remove s3://results/cli/orphan" in dry.output, dry.output
    assert cached.name not in dry.output and "notes.txt" not in dry.output
    pruned = cli(*by_age)
    assert "Removed 1 result object (1 older than 0s) from s3://results/cli" in pruned.output, pruned.output
    assert "kept 1, 1 of them old but cached" in pruned.output
    assert not storage.exists("orphan") and storage.exists(cached.name) and storage.exists("notes.txt")

    # By size, the cached result goes too, with its cache record; a tombstone says why.
    by_size = ["results", "prune", "--max-bytes", "0", "--min-age", "0s", "--storage", "s3://results/cli"]
    pruned = cli(*by_size)
    assert "Removed 1 result object (1 to stay under 0 bytes)" in pruned.output, pruned.output
    assert not storage.exists(cached.name) and storage.exists("notes.txt")
    records = storage.record_storage()
    assert list(records.list_keys(".ferroflow-cache/records/")) == []
    assert removal_note(records, cached.name) is not None
