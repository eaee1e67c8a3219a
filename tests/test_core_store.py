"""`ferroflow._core.Store` on the core's in-memory store: uploads in one PUT and in parts, the
segments sent from the caller's buffers, and what reads hand back."""

import gc

import numpy as np
import pytest

import ferroflow._core as _core
from ferroflow.serializers import PickleSerializer

KIB = 1024
MIB = 1024 * KIB


def test_one_put_and_multipart_uploads_store_the_same_bytes():
    segments = [b"a" * (3 * KIB), bytearray(b"b" * (5 * KIB)), np.arange(700, dtype=np.int64), b""]
    joined = b"".join(bytes(memoryview(segment)) for segment in segments)
    one_put = _core.Store("memory://", multipart_threshold=1 << 20)
    in_parts = _core.Store("memory://", part_size=KIB, multipart_threshold=2 * KIB, max_parts_in_flight=2)
    for store in (one_put, in_parts):
        assert store.put("plain", segments) == len(joined)
        assert store.get("plain") == joined
        header = store.write_blob("blob", segments, serializer="{}")
        assert header.segment_raw_lengths == [len(memoryview(s).cast("B")) for s in segments]
        _, views = store.read_blob("blob")
        assert [bytes(view) for view in views] == [bytes(memoryview(s)) for s in segments]
    assert one_put.head("blob").size == in_parts.head("blob").size


def test_compressed_blobs_upload_in_parts():
    store = _core.Store("memory://", part_size=KIB, multipart_threshold=KIB)
    data = bytes(range(256)) * 64
    store.write_blob("z", [data, data[:100]], serializer="{}", codec="zstd")
    header, views = store.read_blob("z")
    assert header.codec == "zstd" and [bytes(v) for v in views] == [data, data[:100]]


def test_an_upload_keeps_its_buffers_alive_without_copying_them():
    store = _core.Store("memory://", part_size=KIB, multipart_threshold=KIB)
    buffer = bytearray(b"x" * (4 * KIB))
    store.put("k", [buffer])
    gc.collect()
    buffer[:] = b"y" * len(buffer)  # released after the upload: resizable and writable again
    buffer.extend(b"z")
    assert store.get("k") == b"x" * (4 * KIB)


def test_a_mapped_bytes_segment_is_read_into_a_new_bytes_object(tmp_path):
    data = bytes(range(256)) * 1024
    path = tmp_path / "blob"
    _core.write_blob(path, [b"stream", data], serializer="{}")
    _, segments = _core.load_blob(path, 0)
    owned = segments[1].obj.stored_bytes()
    assert type(owned) is bytes and owned == data
    segments[1][:3] = b"new"  # a private map: the file, and what is read from it, stay as stored
    assert segments[1].obj.stored_bytes() == data


def test_a_large_bytes_result_loads_as_bytes(tmp_path):
    serializer = PickleSerializer()
    value = bytes(range(256)) * 4096
    path = tmp_path / "blob"
    _core.write_blob(path, list(serializer.dump_segments(value)), serializer="{}")
    _, segments = _core.load_blob(path, 0)
    loaded = serializer.load_segments(segments)
    assert type(loaded) is bytes and loaded == value


def blob_with_a_large_segment(store, key):
    """Segments around one of 9 MiB, which spans two of the 8 MiB ranges of a ranged read."""
    segments = [b"stream", np.random.default_rng(0).bytes(9 * MIB + 3), b"tail" * 100]
    store.write_blob(key, segments, serializer="{}")
    return segments


@pytest.mark.parametrize("reads_in_flight", [1, 4])
def test_a_large_segment_is_received_into_the_bytes_object_it_becomes(reads_in_flight):
    store = _core.Store("memory://", reads_in_flight=reads_in_flight)
    segments = blob_with_a_large_segment(store, "k")
    _, views = store.read_blob("k")
    assert [bytes(view) for view in views] == segments
    owned = views[1].obj.stored_bytes()
    # The view is of that very object: the segment was received into it, nothing was copied.
    assert type(owned) is bytes and owned == segments[1]
    assert np.shares_memory(np.frombuffer(views[1], np.uint8), np.frombuffer(owned, np.uint8))
    # Handed out once; another call makes a copy.
    again = views[1].obj.stored_bytes()
    assert again == owned and again is not owned


@pytest.mark.parametrize("reads_in_flight", [1, 4])
@pytest.mark.parametrize("damaged", [1, 2])
def test_a_damaged_blob_with_a_large_segment_is_refused(reads_in_flight, damaged):
    """The large segment itself, or the one after it (which lies in the rest of the object,
    moved back by the large segment's length), fails its checksum."""
    store = _core.Store("memory://", reads_in_flight=reads_in_flight)
    segments = blob_with_a_large_segment(store, "k")
    stored = bytearray(store.get("k"))
    offset = stored.find(segments[1][:64]) + 5 * MIB if damaged == 1 else stored.find(b"tailtail")
    stored[offset] ^= 0xFF
    store.put("k", [stored])
    with pytest.raises(ValueError, match=f"segment {damaged} of the blob failed its"):
        store.read_blob("k")


@pytest.mark.parametrize("threshold", [-1, 6 * 1024**3])
def test_out_of_range_thresholds_are_refused(threshold):
    with pytest.raises((ValueError, OverflowError)):
        _core.Store("memory://", multipart_threshold=threshold)


def test_object_info():
    store = _core.Store("memory://")
    store.put("a/b", [b"12345"])
    (info,) = store.list()
    assert (info.key, info.size) == ("a/b", 5) and info.last_modified > 0
    assert repr(info).startswith("ObjectInfo(key='a/b', size=5")
