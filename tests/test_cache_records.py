"""Cache records kept with the results: the create-only record storage, the record format, and
processes that share a storage sharing the cache whatever their FERROFLOW_HOME."""

import datetime
import json
import os
import textwrap
import threading
from types import SimpleNamespace

from ferroflow import flow, task
from ferroflow.exceptions import CachedResultUnavailableWarning
from ferroflow.filesystems import LocalFileSystem
from ferroflow.results import ResultRef, cache_records
from ferroflow.results.cache_records import (
    RECORDS_PREFIX,
    CacheRecord,
    LocalRecordStorage,
    cached_reference,
    delete_record,
    delete_records,
    forget_reference,
    list_records,
    read_record,
    record_key,
    remembered_reference,
    write_record,
)
from ferroflow.tasks import task_input_hash
from other_homes import run_in_home


def test_create_only_creates_once_and_readers_see_whole_objects(tmp_path):
    storage = LocalRecordStorage(tmp_path)
    results = []
    barrier = threading.Barrier(8)

    def create(n):
        barrier.wait()
        results.append(storage.create_only("a/b.json", f"writer {n}".encode() * 1000))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    data = storage.read("a/b.json")
    assert data.count(data[:8]) == 1000  # one writer's whole content
    assert sorted(os.listdir(tmp_path / "a")) == ["b.json"]  # no temporary file left
    assert storage.delete("a/b.json") and not storage.delete("a/b.json")
    assert storage.read("a/b.json") is None


def record(key, **fields):
    return CacheRecord(
        key=key,
        result=ResultRef.persisted('{"type": "local-file-system"}', "abc", "pickle"),
        task_name="double",
        created=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        **fields,
    )


def test_records_round_trip_and_expire(tmp_path):
    storage = LocalRecordStorage(tmp_path)
    expiring = record("k1", expiration=datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC), flow_run_id="f")
    assert write_record(storage, expiring, replace_existing=False)
    assert not write_record(storage, record("k1"), replace_existing=False)
    back = read_record(storage, "k1")
    assert back == expiring
    assert back.is_expired(datetime.datetime(2026, 1, 3, tzinfo=datetime.UTC))
    assert not back.is_expired(datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.UTC))
    assert write_record(storage, record("k1"), replace_existing=True)
    assert read_record(storage, "k1").expiration is None
    # Keys a key function made of any characters are kept under their digest.
    assert record_key("a/../b c").startswith(".ferroflow-cache/records/h-")
    assert write_record(storage, record("a/../b c"), replace_existing=False)
    assert {r.key for r in list_records(storage)} == {"k1", "a/../b c"}
    assert delete_records(storage, key="k1") == 1
    assert {r.key for r in list_records(storage)} == {"a/../b c"}


def test_a_damaged_record_is_a_miss(tmp_path):
    storage = LocalRecordStorage(tmp_path)
    storage.create_only(record_key("k"), b"{not json")
    assert read_record(storage, "k") is None


def test_the_record_is_written_beside_the_result_and_is_the_truth(tmp_path):
    calls = []
    storage = LocalFileSystem(basepath=str(tmp_path / "results"))

    @task(cache_key_fn=task_input_hash, result_storage=storage)
    def double(x):
        calls.append(x)
        return x * 2

    @flow
    def run(x):
        return double(x, return_state=True)

    first = run(4)
    (found,) = list_records(LocalRecordStorage(storage.root))
    assert found.key == first.state_details.cache_key
    assert found.result.key == first.data.storage_key
    assert found.task_name == "double" and found.task_run_id is not None and found.ferroflow_version
    assert run(4).name == "Cached"
    # Without its record, the entry is gone, whatever the run store's index says.
    assert delete_records(LocalRecordStorage(storage.root)) == 1
    assert run(4).name == "Completed" and calls == [4, 4]


SCRIPT = """
import sys
from ferroflow import flow, task
from ferroflow.filesystems import LocalFileSystem
from ferroflow.tasks import task_input_hash

@task(cache_key_fn=task_input_hash, result_storage=LocalFileSystem(basepath=sys.argv[1]))
def double(x):
    return x * 2

@flow
def run(x):
    return double(x, return_state=True)

state = run(21)
print(state.name, state.result())
"""


def test_two_homes_sharing_a_storage_share_cache_hits(tmp_path):
    script = tmp_path / "cached_script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    shared = tmp_path / "shared-results"
    outputs = []
    for machine in ("machine-a", "machine-b"):
        home = tmp_path / machine
        outputs.append(run_in_home(home, script, str(shared)))
        assert (home / "ferroflow.db").exists()  # each "machine" records in its own run store
    assert outputs == ["Completed 42", "Cached 42"]


def test_literal_results_are_cached_by_record_too():
    calls = []

    @task(cache_key_fn=task_input_hash)
    def nothing(x):
        calls.append(x)

    @flow
    def run(x):
        return nothing(x, return_state=True)

    assert run(1).name == "Completed"
    assert run(1).name == "Cached" and calls == [1]


def test_cache_ls_and_clear_work_on_the_records_of_a_storage(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from ferroflow.cli import app

    monkeypatch.setenv("COLUMNS", "200")
    folder = tmp_path / "shared"
    storage = LocalFileSystem(basepath=str(folder))

    @task(cache_key_fn=task_input_hash, result_storage=storage)
    def double(x):
        return x * 2

    @flow
    def run(x):
        return double(x, return_state=True)

    key = run(5).state_details.cache_key
    runner = CliRunner()
    listed = runner.invoke(app, ["cache", "ls", "--storage", str(folder), "--json"])
    assert listed.exit_code == 0, listed.output
    (entry,) = json.loads(listed.output)
    assert entry["key"] == key and entry["task_name"] == "double" and entry["task_run_id"]
    table = runner.invoke(app, ["cache", "ls", "--storage", str(folder)])
    assert key[:8] in table.output and "double" in table.output
    cleared = runner.invoke(app, ["cache", "clear", "--storage", str(folder), "--key", key[:10], "--yes"])
    assert cleared.exit_code == 0 and "Deleted 1 cache entry" in cleared.output
    assert list(list_records(LocalRecordStorage(folder))) == []
    assert run(5).name == "Completed"
    missing = runner.invoke(app, ["cache", "ls", "--storage", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "neither a saved storage nor a folder" in missing.output


# --- records remembered by the process that found them ---------------------------------------------

OTHER_PROCESS = """
import sys
from ferroflow import flow, task
from ferroflow.filesystems import LocalFileSystem

@task(cache_key_fn=lambda context, parameters: "shared-key", result_storage=LocalFileSystem(basepath=sys.argv[1]),
      refresh_cache=sys.argv[2] == "refresh")
def compute(x):
    return "from the other process"

@flow
def run():
    return compute(1, return_state=True).name

print(run())
"""


def run_other_process(tmp_path, shared, mode="") -> str:
    script = tmp_path / "other_process.py"
    script.write_text(textwrap.dedent(OTHER_PROCESS))
    return run_in_home(tmp_path / "other-home", script, str(shared), mode)


def shared_key_task(storage, body):
    return task(
        body, name="compute", cache_key_fn=lambda context, parameters: "shared-key", result_storage=storage
    )


def test_a_record_another_process_creates_after_a_miss_is_found_by_the_next_call(tmp_path):
    shared = tmp_path / "shared"
    calls = []

    def fails(x):
        calls.append(x)
        raise RuntimeError("no result this time")

    compute = shared_key_task(LocalFileSystem(basepath=str(shared)), fails)

    @flow
    def run():
        state = compute(1, return_state=True)
        return state.name, None if state.name == "Failed" else state.result()

    assert run() == ("Failed", None)  # a miss: this process ran the body
    assert run_other_process(tmp_path, shared) == "Completed"
    assert run() == ("Cached", "from the other process")
    assert calls == [1]


def test_a_remembered_record_whose_result_is_gone_is_read_again_without_a_warning(tmp_path, recwarn):
    shared = tmp_path / "shared"
    states = []
    compute = shared_key_task(LocalFileSystem(basepath=str(shared)), lambda x: "from this process")

    @flow
    def run():
        states.append(compute(1, return_state=True))
        return states[-1].result()

    assert run() == "from this process"
    assert run() == "from this process" and states[-1].name == "Cached"
    # Another process refreshes the key (its record replaces this one) and removes the old
    # result, as `ferroflow results prune` does.
    assert run_other_process(tmp_path, shared, "refresh") == "Completed"
    os.remove(shared / states[0].data.storage_key)
    assert run() == "from the other process" and states[-1].name == "Cached"
    assert not [w for w in recwarn if issubclass(w.category, CachedResultUnavailableWarning)]


def test_a_record_found_once_is_not_read_again_until_it_expires(tmp_path, monkeypatch):
    storage = LocalRecordStorage(tmp_path)
    reads = []
    read = LocalRecordStorage.read
    monkeypatch.setattr(LocalRecordStorage, "read", lambda self, key: reads.append(key) or read(self, key))
    in_an_hour = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    expiring = record("k2", expiration=in_an_hour)
    assert write_record(storage, expiring, replace_existing=False)
    forget_reference(storage, "k2")
    assert cached_reference(storage, "k2") == expiring.result and len(reads) == 1
    assert remembered_reference(storage, "k2") == expiring.result
    later = in_an_hour.timestamp() + 1
    monkeypatch.setattr(cache_records, "time", SimpleNamespace(time=lambda: later))
    assert remembered_reference(storage, "k2") is None
    assert cached_reference(storage, "k2") is None and len(reads) == 2  # expired: read, and a miss
    assert delete_record(storage, "k2") and remembered_reference(storage, "k2") is None


def test_a_task_cache_hit_reads_the_record_once_per_process(tmp_path, monkeypatch):
    reads = []
    read = LocalRecordStorage.read
    monkeypatch.setattr(LocalRecordStorage, "read", lambda self, key: reads.append(key) or read(self, key))
    shared = tmp_path / "shared"
    assert run_other_process(tmp_path, shared) == "Completed"
    compute = shared_key_task(LocalFileSystem(basepath=str(shared)), lambda x: "from this process")

    @flow
    def run():
        return [compute(1, return_state=True).name for _ in range(3)]

    assert run() == ["Cached"] * 3
    assert len([key for key in reads if key.startswith(RECORDS_PREFIX)]) == 1
