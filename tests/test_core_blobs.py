"""Blob framing through ferroflow._core: round trips, memory-mapped views, corruption detection."""

import datetime
import json
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferroflow import _core
from ferroflow._core import (
    BlobHeader,
    CorruptResultError,
    UnsupportedFormatError,
    frame_blob,
    hash_buffers,
    load_blob,
    map_blob,
    read_blob,
    read_file,
    read_header,
    unframe_blob,
    write_blob,
)

SERIALIZER = json.dumps({"type": "pickle", "picklelib": "cloudpickle", "protocol": 5})
ALIGNMENT = 64


def sample_segments() -> list:
    return [
        b"pickle opcodes",
        b"",
        np.arange(1000, dtype=np.float64),
        bytearray(b"\x00\xff" * 77),
        b"",
        memoryview(b"tail"),
        np.arange(12, dtype=np.int32).reshape(3, 4),
    ]


def as_bytes(segment) -> bytes:
    return bytes(memoryview(segment).cast("B"))


@pytest.fixture
def blob_path(tmp_path):
    return tmp_path / "results" / "blob.ffb"


def test_every_header_field_round_trips(blob_path):
    segments = sample_segments()
    before = datetime.datetime.now(datetime.UTC)
    written = write_blob(blob_path, segments, serializer=SERIALIZER)
    after = datetime.datetime.now(datetime.UTC)

    raw_lengths = [len(as_bytes(s)) for s in segments]
    expected = {
        "format_version": "1.1",
        "serializer": SERIALIZER,
        "codec": "none",
        "codec_skipped": None,
        "level": None,
        "alignment": ALIGNMENT,
        "key": None,
        "signed_by": None,
        "raw_length": sum(raw_lengths),
        "stored_length": sum(raw_lengths),
        "checksum_algorithm": "xxh3-64",
        "ferroflow_version": _core.__version__,
        "segment_raw_lengths": raw_lengths,
        "segment_stored_lengths": raw_lengths,
    }
    headers = [written, read_header(blob_path), read_blob(blob_path)[0], map_blob(blob_path)[0]]
    headers.append(unframe_blob(read_file(blob_path))[0])
    for header in headers:
        as_dict = header.to_dict()
        created_at = as_dict.pop("created_at")
        assert as_dict == expected
        assert created_at == header.created_at == written.created_at
        assert created_at.tzinfo is not None
        assert before - datetime.timedelta(seconds=1) <= created_at <= after
        for name, value in expected.items():
            assert getattr(header, name) == value


def test_the_header_is_read_without_the_payload(blob_path):
    written = write_blob(blob_path, [b"stream", np.zeros(10_000)], serializer=SERIALIZER)
    damaged = bytearray(read_file(blob_path))
    damaged[-200] ^= 0xFF  # inside the payload
    blob_path.write_bytes(damaged)
    assert read_header(blob_path).to_dict() == written.to_dict()
    with pytest.raises(CorruptResultError, match="segment 1"):
        read_blob(blob_path)


def test_header_repr_names_the_useful_fields(blob_path):
    header = write_blob(blob_path, [b"abc"], serializer='{"type": "json"}')
    text = repr(header)
    assert text.startswith("BlobHeader(")
    for part in [
        "format_version='2.0'",
        """serializer='{"type": "json"}'""",
        "codec='none'",
        "raw_length=3",
        "segments=1",
    ]:
        assert part in text


def test_header_is_read_only(blob_path):
    header = write_blob(blob_path, [b"abc"], serializer="{}")
    with pytest.raises(AttributeError):
        header.codec = "zstd"  # type: ignore[misc]
    assert isinstance(header, BlobHeader)


@pytest.mark.parametrize("count", [0, 1, 2, 100])
def test_many_segments_including_empty_ones_round_trip(blob_path, count):
    segments = [bytes([i % 251]) * (i * 37 % 200) for i in range(count)]
    write_blob(blob_path, segments, serializer="null")
    header, read = read_blob(blob_path)
    assert read == segments
    assert all(type(segment) is bytes for segment in read)
    assert [bytes(view) for view in map_blob(blob_path)[1]] == segments
    assert header.segment_raw_lengths == [len(s) for s in segments]


def small_load(path):
    """`load_blob` below its mapping size: the file is read into bytes."""
    return load_blob(path, 2**62)


def large_load(path):
    """`load_blob` from its mapping size on: the file is mapped."""
    return load_blob(path, 0)


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_load_blob_reads_small_files_and_maps_large_ones(blob_path, codec):
    segments = [b"stream", np.arange(20_000, dtype=np.float64).tobytes()]
    written = write_blob(blob_path, segments, serializer=SERIALIZER, codec=codec)
    size = blob_path.stat().st_size

    read_header_, read = load_blob(blob_path, size + 1)
    assert all(type(segment) is bytes for segment in read)
    mapped_header, mapped = load_blob(blob_path, size)
    assert all(type(segment) is memoryview for segment in mapped)

    assert read == [bytes(view) for view in mapped] == segments
    assert read_header_.to_dict() == mapped_header.to_dict() == written.to_dict()


def test_numpy_and_other_buffers_round_trip_without_conversion(blob_path):
    segments = sample_segments()
    write_blob(blob_path, segments, serializer=SERIALIZER)
    _, read = read_blob(blob_path)
    assert read == [as_bytes(s) for s in segments]
    assert np.array_equal(np.frombuffer(read[2]), segments[2])


def test_pickle_protocol_5_out_of_band_buffers_round_trip(blob_path):
    value = {"weights": np.linspace(0, 1, 10_000), "labels": np.arange(500, dtype=np.int16), "name": "model"}
    buffers: list[pickle.PickleBuffer] = []
    stream = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 2  # the arrays travel out of band, uncopied
    write_blob(blob_path, [stream, *buffers], serializer=SERIALIZER)

    _, (stream_view, *views) = map_blob(blob_path)
    loaded = pickle.loads(stream_view, buffers=views)
    assert np.array_equal(loaded["weights"], value["weights"])
    assert np.array_equal(loaded["labels"], value["labels"])
    assert loaded["weights"].flags.writeable


def test_map_blob_views_are_zero_copy_aligned_and_writable(blob_path):
    segments = [np.arange(1001, dtype=np.float64), b"x" * 10, np.arange(7, dtype=np.complex128)]
    write_blob(blob_path, segments, serializer=SERIALIZER)
    file_before = read_file(blob_path)

    _, views = map_blob(blob_path)
    addresses = [np.frombuffer(view, dtype=np.uint8).ctypes.data for view in views]
    # All views lie in one mapping at the layout's offsets: nothing was copied out.
    assert addresses[1] - addresses[0] == 8064  # 8008 bytes, padded to the alignment
    assert addresses[2] - addresses[1] == ALIGNMENT
    assert all(address % ALIGNMENT == 0 for address in addresses)

    array = np.frombuffer(views[0], dtype=np.float64)
    assert np.array_equal(array, segments[0])
    assert not views[0].readonly and array.flags.writeable
    array[:] = -1.0
    views[1][:3] = b"abc"
    assert np.all(np.frombuffer(views[0], dtype=np.float64) == -1.0)
    assert read_file(blob_path) == file_before
    assert read_blob(blob_path)[1][0] == as_bytes(segments[0])


def test_mapped_views_outlive_the_call_and_each_other(blob_path):
    write_blob(blob_path, [b"first", b"second"], serializer="{}")
    _, views = map_blob(blob_path)
    second = views[1]
    del views
    blob_path.unlink()  # the mapping keeps the data even when the file is gone
    assert bytes(second) == b"second"


def test_frame_blob_and_unframe_blob_match_the_file_form(blob_path):
    segments = sample_segments()
    blob = frame_blob(segments, serializer=SERIALIZER)
    write_blob(blob_path, segments, serializer=SERIALIZER)
    assert type(blob) is bytes
    assert len(blob) == len(read_file(blob_path))
    header, read = unframe_blob(blob)
    assert read == [as_bytes(s) for s in segments]
    assert header.serializer == SERIALIZER
    assert unframe_blob(memoryview(bytearray(blob)))[1] == read


def test_framed_blob_starts_with_the_signature():
    assert frame_blob([], serializer="{}")[:8] == b"\x89FFB\r\n\x1a\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_byte_change_is_detected(tmp_path, data):
    blob = frame_blob(
        [b"abc", b"", np.arange(20, dtype=np.int64), b"z" * 65], serializer='{"type": "pickle"}'
    )
    index = data.draw(st.integers(0, len(blob) - 1), label="index")
    new_byte = data.draw(st.integers(0, 255).filter(lambda b: b != blob[index]), label="new byte")
    damaged = bytearray(blob)
    damaged[index] = new_byte
    with pytest.raises(CorruptResultError):
        unframe_blob(damaged)
    path = tmp_path / "damaged.ffb"
    path.write_bytes(damaged)
    for read in (read_blob, map_blob, small_load, large_load):
        with pytest.raises(CorruptResultError):
            read(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_truncation_is_detected(tmp_path, data):
    blob = frame_blob([b"abc", np.arange(30, dtype=np.float32)], serializer="{}")
    length = data.draw(st.integers(0, len(blob) - 1), label="length")
    with pytest.raises(CorruptResultError):
        unframe_blob(blob[:length])
    path = tmp_path / "truncated.ffb"
    path.write_bytes(blob[:length])
    for read in (read_header, read_blob, map_blob, small_load, large_load):
        with pytest.raises(CorruptResultError, match="truncated|too few"):
            read(path)


def test_trailing_bytes_are_detected_and_the_error_names_the_file(tmp_path):
    path = tmp_path / "longer.ffb"
    path.write_bytes(frame_blob([b"abc"], serializer="{}") + b"\0")
    with pytest.raises(CorruptResultError, match=r"longer\.ffb.*1 unexpected bytes after its end"):
        read_header(path)


def test_corruption_is_a_value_error(tmp_path):
    path = tmp_path / "junk"
    path.write_bytes(b"definitely not a blob at all")
    with pytest.raises(ValueError, match="not a ferroflow blob"):
        read_blob(path)


def test_a_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_blob(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        map_blob(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError):
        load_blob(tmp_path / "missing", 1024)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"serializer": "pickle"}, "JSON text"),
        ({"serializer": "{}", "codec": "snappy"}, "unknown codec 'snappy'|unknown codec \"snappy\""),
        ({"serializer": "{}", "level": 3}, "without a codec"),
    ],
)
def test_invalid_arguments_say_what_to_do(kwargs, message):
    with pytest.raises(ValueError, match=message):
        frame_blob([b"x"], **kwargs)


def test_segments_must_be_contiguous_buffers():
    with pytest.raises(TypeError, match=r"segment 1 \(str\) is not a buffer"):
        frame_blob([b"ok", "text"], serializer="{}")
    with pytest.raises(ValueError, match="segment 0 .* not C-contiguous"):
        frame_blob([np.arange(10)[::2]], serializer="{}")
    with pytest.raises(TypeError, match=r"not a single bytes object; pass \[data\]"):
        frame_blob(b"abc", serializer="{}")
    with pytest.raises(TypeError, match="not a single ndarray object"):
        frame_blob(np.arange(3), serializer="{}")
    with pytest.raises(TypeError, match="iterable of buffers"):
        frame_blob(42, serializer="{}")


@pytest.mark.parametrize("codec", _core.CODECS)
def test_compressed_blobs_round_trip(blob_path, codec):
    segments = [b"pickle stream " * 100, b"", np.repeat(np.arange(50, dtype=np.int64), 2000)]
    raw = [as_bytes(s) for s in segments]
    written = write_blob(blob_path, segments, serializer=SERIALIZER, codec=codec, level=1)
    assert (written.codec, written.level) == (codec, 1)
    assert written.segment_raw_lengths == [len(r) for r in raw]
    assert written.stored_length < written.raw_length / 4
    assert read_header(blob_path).to_dict() == written.to_dict()

    assert read_blob(blob_path)[1] == raw
    assert unframe_blob(frame_blob(segments, serializer=SERIALIZER, codec=codec))[1] == raw
    _, views = map_blob(blob_path)
    assert [bytes(view) for view in views] == raw
    array = np.frombuffer(views[2], dtype=np.int64)
    array[0] = 99  # decompressed views are writable too, like the mapped ones
    assert read_blob(blob_path)[1][2] == raw[2]


def test_compression_threads_give_the_same_data(blob_path):
    data = np.arange(2_000_000, dtype=np.int64)
    write_blob(blob_path, [data], serializer="{}", codec="zstd", threads=2)
    assert np.array_equal(np.frombuffer(read_blob(blob_path)[1][0], dtype=np.int64), data)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_in_a_compressed_blob_is_detected(data):
    blob = frame_blob([b"abc" * 40, b"xyz" * 50], serializer="{}", codec="zlib")
    index = data.draw(st.integers(0, len(blob) - 1), label="index")
    damaged = bytearray(blob)
    damaged[index] ^= data.draw(st.integers(1, 255), label="xor")
    with pytest.raises(CorruptResultError):
        unframe_blob(damaged)


def with_new_header(blob: bytes, major: int, minor: int, **changes) -> bytes:
    """`blob` as a writer of format `major.minor` would have framed it, header fields changed."""
    body_length = int.from_bytes(blob[12:16], "little")
    header_end = 16 + body_length + 8
    alignment = unframe_blob(blob)[0].alignment
    payload = blob[-(-header_end // alignment) * alignment :]
    body = json.loads(blob[16 : 16 + body_length]) | changes
    encoded = json.dumps(body).encode()
    header = (
        blob[:8]
        + major.to_bytes(2, "little")
        + minor.to_bytes(2, "little")
        + len(encoded).to_bytes(4, "little")
    )
    header += encoded
    header += int(hash_buffers([header], "xxh3-64"), 16).to_bytes(8, "little")
    return header + bytes(-len(header) % alignment) + payload


LARGE = b"defg" * 1024  # a payload of 4 KiB or more keeps the 1.x header


def test_a_newer_minor_version_with_unknown_fields_is_read():
    blob = frame_blob([b"abc", LARGE], serializer="{}")
    header, segments = unframe_blob(with_new_header(blob, 1, 9, added_later={"x": 1}))
    assert segments == [b"abc", LARGE]
    assert header.format_version == "1.9"
    compact = frame_blob([b"abc", b"defg"], serializer="{}")
    header, segments = unframe_blob(with_new_header(compact, 2, 9, added_later={"x": 1}))
    assert segments == [b"abc", b"defg"]
    assert header.format_version == "2.9"


def test_a_newer_major_version_is_refused_naming_both_versions(tmp_path):
    path = tmp_path / "future.ffb"
    path.write_bytes(with_new_header(frame_blob([LARGE], serializer="{}"), 4, 1))
    for read in (read_header, read_blob, map_blob):
        with pytest.raises(
            UnsupportedFormatError,
            match=r"future\.ffb.*format version 4\.1.*reads formats 1\.x, 2\.x and 3\.x; upgrade ferroflow",
        ):
            read(path)


# --- format 1.1/2.0: the key, the decompressed size, tiny results -------------------------------


def test_a_blob_read_under_another_key_is_refused_as_corrupt(tmp_path):
    path = tmp_path / "a"
    write_blob(path, [b"value of a"], serializer="{}", key="results/a")
    for read in (read_header, read_blob, map_blob, small_load, large_load):
        assert read(path) is not None  # without a key: no check
        with pytest.raises(CorruptResultError, match=r'written under the key "results/a", not "results/b"'):
            read_with_key(read, path, "results/b")
        read_with_key(read, path, "results/a")
    with pytest.raises(CorruptResultError, match="copied or moved"):
        unframe_blob(read_file(path), key="results/b")


def read_with_key(read, path, key):
    if read in (small_load, large_load):
        return load_blob(path, 2**62 if read is small_load else 0, key=key)
    return read(path, key=key)


def test_a_decompression_bomb_is_refused_before_any_memory_is_allocated(tmp_path):
    path = tmp_path / "bomb"
    # 64 MiB of zeros compress to a few KiB; the header says (rightly) how big they get.
    write_blob(path, [bytes(64 << 20)], serializer="{}", codec="zstd")
    assert path.stat().st_size < 64 * 1024
    policy = _core.ReadPolicy(max_decompressed_length=1 << 20)
    for read in (read_header, read_blob, map_blob):
        with pytest.raises(
            CorruptResultError, match=r"67108864 bytes, over the limit of 1048576.*MAX_DECOMPRESSED"
        ):
            read(path, policy=policy)
    with pytest.raises(CorruptResultError, match="over the limit"):
        load_blob(path, 0, policy=policy)
    with pytest.raises(CorruptResultError, match="over the limit"):
        unframe_blob(read_file(path), policy=policy)
    # An uncompressed blob is bounded by its file, and is not refused.
    write_blob(path, [bytes(2 << 20)], serializer="{}")
    assert len(read_blob(path, policy=policy)[1][0]) == 2 << 20


def test_a_lying_header_cannot_make_a_small_file_allocate_its_claim(tmp_path):
    # A header that claims 2 GiB for a few KiB of zstd (its checksum made to match): the limit
    # refuses it from the header alone, before a byte is decompressed.
    blob = frame_blob([bytes(1 << 20)], serializer="{}", codec="zstd")
    header = unframe_blob(blob)[0]
    assert header.format_version == "2.0"  # the compact header: `g` holds the segments
    stored = header.segment_stored_lengths[0]
    claim = 2 << 30
    lying = with_new_header(blob, 2, 0, g=[[claim, stored]])
    with pytest.raises(CorruptResultError, match="2147483648 bytes, over the limit of 1073741824"):
        unframe_blob(lying, policy=_core.ReadPolicy(max_decompressed_length=1 << 30))


@pytest.mark.parametrize("codec", _core.CODECS)
def test_compression_that_would_grow_a_payload_is_skipped_and_the_header_says_so(tmp_path, codec):
    path = tmp_path / "tiny"
    written = write_blob(path, [b"43 bytes of a pickled value, roughly......."], serializer="{}", codec=codec)
    assert (written.codec, written.codec_skipped, written.level) == ("none", codec, None)
    header, segments = read_blob(path)
    assert header.codec_skipped == codec and segments == [b"43 bytes of a pickled value, roughly......."]
    compressible = write_blob(path, [b"a" * 10_000], serializer="{}", codec=codec)
    assert (compressible.codec, compressible.codec_skipped) == (codec, None)


def test_a_tiny_result_carries_at_most_256_bytes_beyond_its_payload(tmp_path):
    from ferroflow.results.blobs import description_json
    from ferroflow.serializers import resolve_serializer

    serializer = resolve_serializer("pickle")
    payload = pickle.dumps({"answer": 42, "question": "?"}, protocol=5)
    path = tmp_path / "0123456789abcdef0123456789abcdef"  # the length of a generated key
    description = description_json(serializer)
    header = write_blob(path, [payload], serializer=description, key=path.name, codec="zstd")
    # Format 3.0: the description short in the file, whole again in every header read.
    assert header.format_version == "3.0" and header.alignment == 8
    assert path.stat().st_size - len(payload) <= 256, path.stat().st_size
    assert description.encode() not in path.read_bytes()
    assert read_header(path).serializer == description
    assert read_blob(path, key=path.name)[1] == [payload]


def test_a_tiny_blob_whose_description_does_not_shorten_keeps_format_2_0_and_its_text(tmp_path):
    path = tmp_path / "tiny"
    description = '{"type": "yaml", "indent": 2}'  # nothing a 3.0 reader would put back
    assert write_blob(path, [b"abc"], serializer=description).format_version == "2.0"
    assert read_header(path).serializer == description
