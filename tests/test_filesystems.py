import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ferroflow import _core
from ferroflow.exceptions import (
    InvalidSettingError,
    StorageNotFoundError,
    StoragePermissionError,
    UnsafeKeyError,
)
from ferroflow.filesystems import (
    S3,
    LocalFileSystem,
    RemoteFileSystem,
    WritableFileSystem,
    is_unfinished_write,
    remove_unfinished_writes,
    resolve_storage,
    saved_storages,
    unfinished_writes,
)
from ferroflow.serializers import PickleSerializer
from ferroflow.settings import get_current_settings, temporary_settings


@pytest.fixture
def storage(tmp_path):
    return LocalFileSystem(basepath=str(tmp_path / "results"))


def run_in_another_process(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(), timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# -- files and blobs -----------------------------------------------------------------------


def test_write_path_creates_folders_on_first_write_and_reads_back(storage, tmp_path):
    path = storage.write_path("flow/run/a1b2", [b"hello ", memoryview(b"world")])
    assert path == str(tmp_path / "results" / "flow" / "run" / "a1b2")
    assert storage.read_path("flow/run/a1b2") == b"hello world"
    assert storage.exists("flow/run/a1b2")


def test_a_relative_or_home_basepath_is_made_absolute(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert LocalFileSystem(basepath="~/results").basepath == str(tmp_path / "results")
    monkeypatch.chdir(tmp_path)
    assert LocalFileSystem(basepath=".my-results").basepath == str(tmp_path / ".my-results")


def test_without_basepath_the_local_storage_path_setting_is_used(tmp_path):
    with temporary_settings(local_storage_path=tmp_path / "default-storage"):
        LocalFileSystem().write_path("k", b"x")
    assert (tmp_path / "default-storage" / "k").read_bytes() == b"x"


@pytest.mark.parametrize("key", ["../escape", "/etc/passwd", "a/../../b", ""])
def test_keys_that_leave_the_storage_are_refused(storage, key):
    with pytest.raises(UnsafeKeyError):
        storage.write_path(key, b"x")
    with pytest.raises(UnsafeKeyError):
        storage.read_path(key)


def test_blobs_round_trip_with_their_header(storage):
    array = np.arange(10_000, dtype=np.float64)
    serializer = PickleSerializer()
    serializer_json = json.dumps(serializer.to_description())
    header = storage.write_blob("r1", serializer.dump_segments(array), serializer_json=serializer_json)
    assert json.loads(header.serializer) == serializer.to_description()
    assert storage.read_header("r1").raw_length == header.raw_length

    _, segments = storage.read_blob("r1")
    np.testing.assert_array_equal(serializer.load_segments(segments), array)
    _, views = storage.map_blob("r1")
    np.testing.assert_array_equal(serializer.load_segments(views), array)


def test_compressed_blobs_use_the_frame_codec(storage):
    header = storage.write_blob("r2", [b"a" * 10_000], serializer_json="{}", codec="zstd", level=3)
    assert header.codec == "zstd"
    assert header.stored_length < header.raw_length
    assert storage.read_blob("r2")[1] == [b"a" * 10_000]


def test_durable_follows_the_fsync_setting(storage, monkeypatch):
    seen = []
    real_write_blob = _core.write_blob

    def spy(path, segments, **options):
        seen.append(options["durable"])
        return real_write_blob(path, segments, **options)

    monkeypatch.setattr(_core, "write_blob", spy)
    storage.write_blob("a", [b"x"], serializer_json="{}")
    with temporary_settings(results_fsync=True):
        storage.write_blob("b", [b"x"], serializer_json="{}")
        storage.write_blob("c", [b"x"], serializer_json="{}", durable=False)
    assert seen == [False, True, False]


def test_delete_and_exists(storage):
    storage.write_path("gone", b"x")
    storage.delete("gone")
    assert not storage.exists("gone")
    storage.delete("gone")  # missing_ok by default
    with pytest.raises(FileNotFoundError):
        storage.delete("gone", missing_ok=False)


def test_reading_a_missing_key_is_file_not_found(storage):
    with pytest.raises(FileNotFoundError):
        storage.read_path("nothing-here")


# -- saved storages ------------------------------------------------------------------------


def test_save_and_load_by_name_and_slug(storage, isolated_home):
    assert storage.save("dev") == "local-file-system/dev"
    saved = isolated_home / "storages" / "local-file-system" / "dev.json"
    assert json.loads(saved.read_text()) == {"type": "local-file-system", "basepath": storage.basepath}
    assert LocalFileSystem.load("dev") == storage
    assert resolve_storage("local-file-system/dev") == storage
    assert saved_storages() == ["local-file-system/dev"]


def test_save_refuses_to_replace_unless_overwrite(storage, tmp_path):
    storage.save("dev")
    other = LocalFileSystem(basepath=str(tmp_path / "other"))
    with pytest.raises(FileExistsError, match="pass overwrite=True|Pass overwrite=True"):
        other.save("dev")
    other.save("dev", overwrite=True)
    assert LocalFileSystem.load("dev") == other


def test_a_saved_storage_is_usable_from_another_process(storage):
    storage.save("dev")
    storage.write_path("shared", b"from the parent")
    code = (
        "from ferroflow.filesystems import resolve_storage\n"
        "storage = resolve_storage('local-file-system/dev')\n"
        "print(storage.read_path('shared').decode())\n"
        "storage.write_path('reply', b'from the child')\n"
    )
    assert run_in_another_process(code) == "from the parent"
    assert storage.read_path("reply") == b"from the child"


def test_a_storage_saved_by_another_process_loads_here(tmp_path):
    basepath = str(tmp_path / "child-results")
    run_in_another_process(
        "from ferroflow.filesystems import LocalFileSystem\n"
        f"LocalFileSystem(basepath={basepath!r}).save('child')"
    )
    assert resolve_storage("local-file-system/child").basepath == basepath


def test_unknown_saved_names_list_the_saved_ones(storage):
    storage.save("dev")
    storage.save("prod")
    with pytest.raises(StorageNotFoundError) as error:
        resolve_storage("local-file-system/staging")
    assert "No local-file-system storage named 'staging'" in str(error.value)
    assert "Saved: local-file-system/dev, local-file-system/prod." in str(error.value)


def test_unknown_storage_types_and_bad_slugs_are_explained(storage):
    storage.save("dev")
    with pytest.raises(StorageNotFoundError) as unknown_type:
        resolve_storage("gcs/dev")
    assert "Unknown storage type 'gcs'" in str(unknown_type.value)
    assert "local-file-system, remote-file-system, s3" in str(unknown_type.value)
    assert "Saved: local-file-system/dev." in str(unknown_type.value)

    with pytest.raises(StorageNotFoundError, match="expected '<storage-type>/<saved-name>'"):
        resolve_storage("dev")
    with pytest.raises(TypeError, match="got int"):
        resolve_storage(3)


DAMAGED_SAVED_STORAGES = {
    "truncated": (b'{"basepath": 3', "it is not valid JSON"),
    "empty": (b"", "it is not valid JSON"),
    "not UTF-8": (b"\xff\xfe{}", "it is not valid JSON .*utf-8"),
    "nested beyond reason": (b"[" * 100_000, "it is not valid JSON"),
    "an array": (b"[1, 2]", "its JSON is an array, not an object"),
    "null": (b"null", "its JSON is null, not an object"),
    "a string": (b'"dev"', "its JSON is a string, not an object"),
    "another type": (
        b'{"type": "s3", "bucket_path": "b"}',
        "it describes a 's3' storage, not a local-file-system one",
    ),
    "a wrong setting": (
        b'{"type": "local-file-system", "basepath": 3}',
        r"its settings are invalid \(basepath: ",
    ),
    "an unknown setting": (
        b'{"basepath": "/x", "colour": "red"}',
        r"its settings are invalid \(colour: Extra inputs",
    ),
}


@pytest.mark.parametrize("content, problem", DAMAGED_SAVED_STORAGES.values(), ids=DAMAGED_SAVED_STORAGES)
def test_a_damaged_saved_storage_names_its_file_and_how_to_repair_it(
    storage, isolated_home, content, problem
):
    storage.save("dev")
    path = isolated_home / "storages" / "local-file-system" / "dev.json"
    path.write_bytes(content)
    with pytest.raises(StorageNotFoundError) as error:
        LocalFileSystem.load("dev")
    message = str(error.value)
    assert re.search(f"The saved local-file-system storage 'dev' cannot be used: {problem}", message)
    assert f"Its file is {path}." in message and "save('dev', overwrite=True)" in message
    with pytest.raises(StorageNotFoundError, match="cannot be used"):
        resolve_storage("local-file-system/dev")


def test_a_saved_storage_that_cannot_be_read_names_its_file(storage, isolated_home):
    path = isolated_home / "storages" / "local-file-system" / "dev.json"
    path.mkdir(parents=True)  # a folder where the file should be
    with pytest.raises(
        StorageNotFoundError, match=rf"cannot be used: it cannot be read .*Its file is {re.escape(str(path))}"
    ):
        LocalFileSystem.load("dev")


def test_invalid_saved_names_are_refused(storage):
    with pytest.raises(ValueError, match="Invalid storage name '../evil'"):
        storage.save("../evil")


def test_resolve_storage_passes_instances_through_and_defaults_to_local(storage):
    assert resolve_storage(storage) is storage
    assert resolve_storage(None) == LocalFileSystem()


def test_descriptions_round_trip(storage):
    assert WritableFileSystem.from_description(storage.to_description()) == storage
    assert WritableFileSystem.from_description(S3(bucket_path="b").to_description()) == S3(bucket_path="b")


# -- S3 without credentials ----------------------------------------------------------------


def test_s3_without_any_credentials_says_where_to_put_them(monkeypatch, tmp_path):
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    s3 = S3(bucket_path="my-bucket")
    assert s3.bucket_path == "my-bucket"
    with pytest.raises(StoragePermissionError, match="AWS_ACCESS_KEY_ID") as error:
        s3.write_path("k", b"x")
    assert "~/.aws/credentials" in str(error.value)


# -- temporary files that killed writers left are removed automatically ---------------------------


def leftover(folder, name="result", age=0.0):
    """A temporary file as a writer killed before its rename leaves it, last changed `age` s ago."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{name}.{'0' * 15}1.tmp"
    path.write_bytes(b"half a result")
    then = time.time() - age
    os.utime(path, (then, then))
    assert is_unfinished_write(path.name)
    return path


def wait_for_the_sweep():
    thread = unfinished_writes.last_thread
    if thread is not None:
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_remove_unfinished_writes_removes_only_old_temporary_files(tmp_path):
    old = leftover(tmp_path, "a", age=7200)
    young = leftover(tmp_path, "b", age=10)  # maybe another process's write in progress
    old_result = tmp_path / "result"
    old_result.write_bytes(b"a result")
    os.utime(old_result, (0, 0))
    (tmp_path / f".folder.{'0' * 15}1.tmp").mkdir()  # a folder with such a name is not one
    assert remove_unfinished_writes(tmp_path, older_than=3600) == [str(old)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [young.name, "result", f".folder.{'0' * 15}1.tmp"]
    )


def test_remove_unfinished_writes_of_a_missing_folder_removes_nothing(tmp_path):
    assert remove_unfinished_writes(tmp_path / "gone", older_than=1) == []


@pytest.mark.parametrize("write", ["write_blob", "write_path"])
def test_writing_a_result_sweeps_old_leftovers_from_its_folder(tmp_path, write):
    storage = LocalFileSystem(basepath=str(tmp_path))
    old = leftover(tmp_path / "flow", age=7200)
    young = leftover(tmp_path / "flow", "other", age=1)
    elsewhere = leftover(tmp_path / "other-flow", age=7200)  # a folder this process did not write to
    if write == "write_blob":
        storage.write_blob("flow/new", [b"x"], serializer_json="{}")
    else:
        storage.write_path("flow/new", b"x")
    wait_for_the_sweep()
    assert not old.exists()
    assert young.exists() and elsewhere.exists()
    assert (tmp_path / "flow" / "new").is_file()  # the write itself is unaffected


def test_a_folder_is_swept_at_most_once_in_a_while(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))
    storage.write_blob("first", [b"x"], serializer_json="{}")
    wait_for_the_sweep()
    later = leftover(tmp_path, age=7200)
    sweeps_before = unfinished_writes.last_thread
    storage.write_blob("second", [b"x"], serializer_json="{}")
    assert unfinished_writes.last_thread is sweeps_before  # no second sweep started
    assert later.exists()  # left to the next sweep (or `ferroflow results prune`)


def test_the_age_bound_is_a_setting(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))
    fairly_old = leftover(tmp_path, age=120)
    with temporary_settings(results_unfinished_write_max_age=60):
        storage.write_blob("new", [b"x"], serializer_json="{}")
        wait_for_the_sweep()
    assert not fairly_old.exists()


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_the_age_bound_must_be_a_positive_number_of_seconds(monkeypatch, value):
    monkeypatch.setenv("FERROFLOW_RESULTS_UNFINISHED_WRITE_MAX_AGE", value)
    with pytest.raises(InvalidSettingError, match="FERROFLOW_RESULTS_UNFINISHED_WRITE_MAX_AGE"):
        get_current_settings()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_the_leftover_of_a_killed_writer_is_removed_by_a_later_write(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    script = (
        "from ferroflow._core import write_blob\n"
        "data = bytearray(256 * 2**20)\n"
        "print('writing', flush=True)\n"
        f"write_blob({str(folder / 'big')!r}, [data], serializer='{{}}')\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "writing"
    deadline = time.monotonic() + 30
    while not (left := [p for p in folder.iterdir() if is_unfinished_write(p.name)]):
        assert time.monotonic() < deadline and child.poll() is None, (
            "the writer finished before it was killed"
        )
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    (temporary,) = left
    assert temporary.exists()
    os.utime(temporary, (time.time() - 7200,) * 2)  # an hour and more later
    LocalFileSystem(basepath=str(folder)).write_blob("next", [b"x"], serializer_json="{}")
    wait_for_the_sweep()
    assert [p.name for p in folder.iterdir()] == ["next"]


def test_a_bucket_write_starts_no_sweep():
    # An upload leaves no temporary object behind: there is nothing to sweep in a bucket.
    storage = RemoteFileSystem(basepath="memory://no-sweep/results")
    before = unfinished_writes.last_thread
    storage.write_blob("flow/new", [b"x"], serializer_json="{}")
    storage.write_path("flow/plain", b"x")
    assert unfinished_writes.last_thread is before
    assert storage.read_path("flow/plain") == b"x"
