"""Atomic writes, whole-file reads and storage keys through ferroflow._core."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferroflow import _core, exceptions
from ferroflow._core import (
    UnsafeKeyError,
    atomic_write,
    is_temporary_file_name,
    read_blob,
    read_file,
    resolve_key,
    write_blob,
)


def folder_listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_atomic_write_joins_the_segments_and_returns_the_length(tmp_path):
    target = tmp_path / "out.bin"
    written = atomic_write(
        target, [b"ab", bytearray(b"cd"), memoryview(b"ef"), np.arange(2, dtype=np.uint8), b""]
    )
    assert written == 8
    assert read_file(target) == b"abcdef\x00\x01"
    assert folder_listing(tmp_path) == ["out.bin"]


def test_atomic_write_replaces_an_existing_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old content that is longer")
    atomic_write(str(target), [b"new"])
    assert target.read_bytes() == b"new"
    assert folder_listing(tmp_path) == ["out.bin"]


@pytest.mark.parametrize("durable", [False, True])
def test_missing_folders_are_created(tmp_path, durable):
    target = tmp_path / "a" / "b" / "c.bin"
    atomic_write(target, [b"x"], durable=durable)
    assert target.read_bytes() == b"x"


def test_durable_blob_write_reads_back(tmp_path):
    target = tmp_path / "durable.ffb"
    write_blob(target, [b"safe"], serializer="{}", durable=True)
    assert read_blob(target)[1] == [b"safe"]


def test_a_bad_segment_leaves_the_target_and_the_folder_untouched(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")

    def segments():
        yield b"first"
        raise RuntimeError("the producer failed")

    with pytest.raises(RuntimeError, match="the producer failed"):
        atomic_write(target, segments())
    with pytest.raises(TypeError, match="segment 1"):
        write_blob(target, [b"first", object()], serializer="{}")
    assert target.read_bytes() == b"previous"
    assert folder_listing(tmp_path) == ["out.bin"]


def test_a_failed_rename_removes_the_temporary_file(tmp_path):
    # The whole temporary file is written, then renaming it over a folder fails.
    target = tmp_path / "taken"
    (target / "inside").mkdir(parents=True)
    with pytest.raises(OSError):
        atomic_write(target, [b"x" * 100_000])
    assert folder_listing(tmp_path) == ["taken"]
    assert folder_listing(target) == ["inside"]


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
@pytest.mark.parametrize("writer", ["atomic_write", "write_blob"])
def test_a_write_that_fails_midway_keeps_the_old_target_and_leaves_no_temporary_file(tmp_path, writer):
    # A file size limit makes the OS refuse the write after 64 KiB: a genuine mid-write failure.
    # It runs in a child process so the limit does not affect the test run.
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")
    script = textwrap.dedent(
        f"""
        import errno, resource, signal
        from ferroflow._core import atomic_write, write_blob
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.RLIM_INFINITY))
        data = [b"a" * 50_000, b"b" * 50_000]
        try:
            if {writer!r} == "atomic_write":
                atomic_write({str(target)!r}, data)
            else:
                write_blob({str(target)!r}, data, serializer="{{}}")
        except OSError as error:
            assert error.errno == errno.EFBIG, error
            print("failed as expected")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "failed as expected", result.stderr
    assert target.read_bytes() == b"previous"
    assert folder_listing(tmp_path) == ["out.bin"]


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="needs POSIX permissions, not root")
def test_a_read_only_folder_is_refused_without_leftovers(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "out.bin").write_bytes(b"previous")
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError):
            atomic_write(folder / "out.bin", [b"new"])
    finally:
        folder.chmod(0o755)
    assert folder_listing(folder) == ["out.bin"]
    assert (folder / "out.bin").read_bytes() == b"previous"


def test_read_file_returns_the_whole_file(tmp_path):
    path = tmp_path / "data"
    content = os.urandom(300_000)
    path.write_bytes(content)
    assert read_file(path) == content
    (tmp_path / "empty").write_bytes(b"")
    assert read_file(str(tmp_path / "empty")) == b""
    with pytest.raises(FileNotFoundError):
        read_file(tmp_path / "missing")


@pytest.mark.parametrize(
    ("key", "parts"),
    [
        ("abc123", ["abc123"]),
        ("results/flow/abc", ["results", "flow", "abc"]),
        ("windows\\style\\key", ["windows", "style", "key"]),
        ("./a//b/", ["a", "b"]),
        ("..hidden", ["..hidden"]),
        ("name:with:colons", ["name:with:colons"]),
    ],
)
def test_keys_join_under_the_base(tmp_path, key, parts):
    assert resolve_key(tmp_path, key) == os.path.join(tmp_path, *parts)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("../escape", "'..'"),
        ("a/../../escape", "'..'"),
        ("a\\..\\..\\escape", "'..'"),
        ("..", "'..'"),
        ("/etc/passwd", "absolute"),
        ("\\\\server\\share\\x", "absolute"),
        ("C:\\Windows", "drive letter"),
        ("c:relative", "drive letter"),
        ("a/D:/b", "drive letter"),
        ("bad\0name", "NUL"),
        ("", "names no file"),
        ("./", "names no file"),
    ],
)
def test_keys_that_escape_the_base_are_refused(tmp_path, key, reason):
    with pytest.raises(UnsafeKeyError, match=reason):
        resolve_key(tmp_path, key)


def test_unsafe_key_error_is_a_value_error():
    assert issubclass(UnsafeKeyError, ValueError)


@pytest.mark.parametrize("name", ["CorruptResultError", "UnsupportedFormatError", "UnsafeKeyError"])
def test_the_core_raises_the_exception_classes_of_ferroflow_exceptions(name):
    assert getattr(_core, name) is getattr(exceptions, name)
    assert issubclass(getattr(_core, name), exceptions.FerroflowException)


def test_an_error_of_the_core_is_a_ferroflow_exception(tmp_path):
    with pytest.raises(exceptions.FerroflowException):
        resolve_key(tmp_path, "../outside")


@given(st.text(alphabet=st.sampled_from("ab./\\:C\0"), max_size=12))
def test_a_resolved_key_never_leaves_the_base(key):
    base = os.path.abspath("storage-base")
    try:
        resolved = resolve_key(base, key)
    except UnsafeKeyError:
        return
    assert os.path.commonpath([base, os.path.abspath(resolved)]) == base
    assert os.path.abspath(resolved) != base


def test_concurrent_writers_of_one_key_leave_one_whole_blob(tmp_path):
    target = tmp_path / "shared.ffb"
    contents = [bytes([n]) * (100_000 + n) for n in range(6)]

    def write_repeatedly(content: bytes) -> None:
        for _ in range(5):
            write_blob(target, [content], serializer="{}")

    threads = [threading.Thread(target=write_repeatedly, args=(content,)) for content in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert read_blob(target)[1][0] in contents
    assert folder_listing(tmp_path) == ["shared.ffb"]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_writer_killed_midway_leaves_the_previous_blob_readable(tmp_path):
    target = tmp_path / "result.ffb"
    write_blob(target, [b"previous"], serializer="{}")
    script = textwrap.dedent(
        f"""
        import sys
        from ferroflow._core import write_blob
        data = bytearray(128 * 2**20)
        print("writing", flush=True)
        write_blob({str(target)!r}, [data], serializer="{{}}")
        print("done", flush=True)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "writing"
    time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    # Killed before the rename: the previous blob, whole. (After it, the new one, whole.)
    header, segments = read_blob(target)
    assert segments in ([b"previous"], [bytes(128 * 2**20)])
    assert all(name == "result.ffb" or name.endswith(".tmp") for name in folder_listing(tmp_path))


def test_the_temporary_file_of_a_write_is_recognised_by_its_name(tmp_path):
    target = tmp_path / "result.ffb"
    data = bytearray(16 * 2**20)
    stop = threading.Event()

    def write_until_stopped() -> None:
        while not stop.is_set():
            write_blob(target, [data], serializer="{}")

    writer = threading.Thread(target=write_until_stopped)
    writer.start()
    try:
        deadline = time.monotonic() + 30
        while not (temporary := [name for name in os.listdir(tmp_path) if name != target.name]):
            assert time.monotonic() < deadline, "no temporary file seen"
    finally:
        stop.set()
        writer.join()
    assert all(is_temporary_file_name(name) for name in temporary), temporary
    assert not is_temporary_file_name(target.name)


@pytest.mark.parametrize(
    "name",
    [
        "result.ffb",
        ".result.ffb",
        "result.ffb.0123456789abcdef.tmp",
        ".result.ffb.0123456789ABCDEF.tmp",
        ".result.ffb.0123456789abcde.tmp",
        ".result.ffb.0123456789abcdef.tmp.bak",
        "..0123456789abcdef.tmp",
        os.fsdecode(b".\xff.0123456789abcdef.tmp"),  # not UTF-8, as no temporary name is
    ],
)
def test_other_names_are_not_temporary(name):
    assert not is_temporary_file_name(name)


READERS = ["read_file", "read_header", "read_blob", "map_blob", "load_blob", "read_file_prefix"]


def call_reader(reader, path):
    read = getattr(_core, reader)
    if reader == "load_blob":
        return read(path, 32 * 1024)
    if reader == "read_file_prefix":
        return read(path, 1)
    return read(path)


@pytest.mark.skipif(sys.platform == "win32", reason="named pipes (FIFOs) are POSIX")
@pytest.mark.parametrize("reader", READERS)
def test_a_fifo_is_refused_at_once_without_waiting_for_a_writer(tmp_path, reader):
    # Opening a FIFO for reading blocks until a writer opens it: a FIFO at a cached result's path
    # used to stall the flow forever. No writer ever comes here; the read must return by itself.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    outcome: list[object] = []

    def read_in_thread() -> None:
        try:
            outcome.append(call_reader(reader, fifo))
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=read_in_thread, daemon=True)
    thread.start()
    thread.join(timeout=30)
    if thread.is_alive():
        open(fifo, "wb").close()  # unblocks the reader, so the test run itself goes on
        pytest.fail(f"{reader} blocked on a FIFO")
    [error] = outcome
    assert isinstance(error, exceptions.CorruptResultError)
    assert "fifo" in str(error) and "a FIFO (named pipe), not a regular file" in str(error)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("reader", READERS)
def test_a_device_is_refused_instead_of_read_without_end(reader):
    with pytest.raises(exceptions.CorruptResultError, match="/dev/zero is a device, not a regular file"):
        call_reader(reader, "/dev/zero")


@pytest.mark.parametrize("reader", READERS)
def test_a_folder_is_an_is_a_directory_error(tmp_path, reader):
    with pytest.raises(IsADirectoryError):
        call_reader(reader, tmp_path)
