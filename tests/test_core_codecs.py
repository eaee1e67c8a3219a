"""ferroflow._core codecs: interoperability with the stdlib, every buffer kind, errors."""

import bz2
import lzma
import pickle
import threading
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferroflow import _core
from ferroflow._core import CorruptResultError

# Structured, compressible data such as a pickled list of records.
RECORDS = pickle.dumps(
    [{"id": i, "name": f"item-{i % 97}", "score": i * 7919 % 1000, "ok": i % 3 == 0} for i in range(3000)],
    protocol=5,
)

STDLIB_CODECS = ("lzma", "bz2", "zlib")
STDLIB_COMPRESS: dict[str, Callable[[bytes, int], bytes]] = {
    "lzma": lambda data, level: lzma.compress(data, preset=level),
    "bz2": lambda data, level: bz2.compress(data, compresslevel=level),
    "zlib": lambda data, level: zlib.compress(data, level),
}
STDLIB_DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "lzma": lzma.decompress,
    "bz2": bz2.decompress,
    "zlib": zlib.decompress,
}
STDLIB_LEVELS = {"lzma": range(10), "bz2": range(1, 10), "zlib": range(10)}


def all_levels(codec: str) -> list[int]:
    return list(STDLIB_LEVELS[codec]) if codec in STDLIB_LEVELS else [-7, -1, 1, 3, 9, 19, 22]


def test_codecs_lists_the_four_codecs():
    assert _core.CODECS == ("lzma", "bz2", "zlib", "zstd")


@pytest.mark.parametrize(
    ("codec", "level"), [(c, level) for c in STDLIB_CODECS for level in STDLIB_LEVELS[c]]
)
def test_stdlib_reads_what_we_write_at_every_level(codec, level):
    packed = _core.compress(RECORDS, codec, level=level)
    assert STDLIB_DECOMPRESS[codec](packed) == RECORDS


@pytest.mark.parametrize("codec", STDLIB_CODECS)
def test_we_read_what_the_stdlib_writes_at_every_level(codec):
    for level in STDLIB_LEVELS[codec]:
        packed = STDLIB_COMPRESS[codec](RECORDS, level)
        assert _core.decompress(packed, codec) == RECORDS


@pytest.mark.parametrize("level", all_levels("zstd"))
def test_zstd_round_trips_at_fast_and_strong_levels(level):
    assert _core.decompress(_core.compress(RECORDS, "zstd", level=level), "zstd") == RECORDS


def test_lzma_extreme_and_the_multithreaded_encoder_write_standard_xz():
    data = RECORDS * 40  # a few MiB, so the threaded encoder cuts several blocks
    for options in ({"extreme": True, "level": 2}, {"threads": 2}, {"threads": 0}):
        packed = _core.compress(data, "lzma", **options)
        assert lzma.decompress(packed, format=lzma.FORMAT_XZ) == data


@pytest.mark.parametrize("codec", ("bz2", "zlib"))
def test_threads_are_ignored_by_the_single_threaded_codecs(codec):
    assert _core.compress(RECORDS, codec, threads=2) == _core.compress(RECORDS, codec)


def test_zstd_with_worker_threads_round_trips():
    data = RECORDS * 40
    assert _core.decompress(_core.compress(data, "zstd", threads=2), "zstd") == data


@pytest.mark.parametrize("codec", ("lzma", "bz2"))
def test_concatenated_stdlib_streams_decode_as_one(codec):
    joined = STDLIB_COMPRESS[codec](b"first part ", 6) + STDLIB_COMPRESS[codec](RECORDS, 6)
    assert _core.decompress(joined, codec) == b"first part " + RECORDS


def test_concatenated_zstd_frames_decode_as_one():
    joined = _core.compress(b"one", "zstd") + _core.compress(b"two", "zstd")
    assert _core.decompress(joined, "zstd") == b"onetwo"


@pytest.mark.parametrize("codec", _core.CODECS)
def test_empty_input_round_trips(codec):
    assert _core.decompress(_core.compress(b"", codec), codec) == b""


BUFFER_KINDS: dict[str, Callable[[bytes], object]] = {
    "bytes": bytes,
    "bytearray": bytearray,
    "memoryview": memoryview,
    "memoryview slice": lambda data: memoryview(b"xx" + data)[2:],
    "PickleBuffer": pickle.PickleBuffer,
}


@pytest.mark.parametrize("codec", _core.CODECS)
@pytest.mark.parametrize("kind", BUFFER_KINDS)
def test_every_buffer_kind_compresses_and_decompresses(codec, kind):
    wrap = BUFFER_KINDS[kind]
    packed = _core.compress(wrap(RECORDS), codec)
    assert _core.decompress(wrap(packed), codec) == RECORDS


@pytest.mark.parametrize("codec", _core.CODECS)
@pytest.mark.parametrize("dtype", ["uint8", "int16", "int64", "float32", "float64", "complex128", "bool"])
def test_numpy_arrays_of_any_dtype_are_compressed_as_their_bytes(codec, dtype):
    array = (np.arange(20_000) % 251).astype(dtype).reshape(100, 200)
    packed = _core.compress(array, codec)
    restored = np.frombuffer(_core.decompress(packed, codec), dtype=dtype).reshape(array.shape)
    np.testing.assert_array_equal(restored, array)


@pytest.mark.parametrize(
    "strided",
    [
        lambda a: a[:, ::2],
        lambda a: a.T,
        lambda a: np.asfortranarray(a),
        lambda a: memoryview(a.tobytes())[::2],
    ],
    ids=["column slice", "transpose", "fortran order", "strided memoryview"],
)
def test_non_contiguous_input_is_refused_with_a_way_out(strided):
    array = np.arange(600, dtype="float64").reshape(20, 30)
    with pytest.raises(ValueError, match="not C-contiguous.*ascontiguousarray"):
        _core.compress(strided(array), "zlib")


def test_a_non_buffer_is_a_type_error_naming_its_type():
    with pytest.raises(TypeError, match="bytes-like object.*str"):
        _core.compress("text", "zlib")  # type: ignore[arg-type]


def test_unknown_codec_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r'unknown codec "gzip"; choose one of: lzma, bz2, zlib, zstd'):
        _core.compress(b"x", "gzip")


@pytest.mark.parametrize(("codec", "level"), [("lzma", 10), ("bz2", 0), ("zlib", 11), ("zstd", 23)])
def test_out_of_range_level_lists_the_valid_range(codec, level):
    with pytest.raises(ValueError, match=f"level {level} is out of range for {codec}; choose a level from"):
        _core.compress(b"x", codec, level=level)


def test_extreme_is_refused_outside_lzma():
    with pytest.raises(ValueError, match="extreme=True applies only to lzma"):
        _core.compress(b"x", "zstd", extreme=True)


def test_too_many_threads_is_refused():
    with pytest.raises(ValueError, match="threads=100000 is too many"):
        _core.compress(b"x", "lzma", threads=100_000)


@pytest.mark.parametrize("codec", _core.CODECS)
def test_truncated_data_is_a_corrupt_result_naming_the_codec(codec):
    packed = _core.compress(RECORDS, codec)
    with pytest.raises(CorruptResultError, match=f"^{codec}: .*truncated"):
        _core.decompress(packed[:-3], codec)


@pytest.mark.parametrize("codec", _core.CODECS)
def test_empty_data_is_a_corrupt_result(codec):
    with pytest.raises(CorruptResultError, match="is empty"):
        _core.decompress(b"", codec)


def test_corrupt_result_error_is_a_value_error():
    assert issubclass(CorruptResultError, ValueError)


@pytest.mark.parametrize("codec", _core.CODECS)
def test_exact_generous_and_short_size_hints_all_give_the_data(codec):
    packed = _core.compress(RECORDS, codec)
    for hint in (len(RECORDS), len(RECORDS) + 100, 1, 0):
        assert _core.decompress(packed, codec, size_hint=hint) == RECORDS


@pytest.mark.parametrize("codec", _core.CODECS)
def test_a_hint_larger_than_memory_falls_back_to_growing(codec):
    packed = _core.compress(b"small", codec)
    assert _core.decompress(packed, codec, size_hint=2**62) == b"small"


@pytest.mark.parametrize("codec", _core.CODECS)
def test_max_output_stops_a_decompression_bomb(codec):
    bomb = _core.compress(bytes(8 * 2**20), codec)
    with pytest.raises(
        ValueError, match=f"^{codec}: the data decompresses to more than max_output=1000000 bytes"
    ):
        _core.decompress(bomb, codec, max_output=1_000_000)
    with pytest.raises(ValueError, match="max_output"):
        _core.decompress(bomb, codec, size_hint=2_000_000, max_output=1_000_000)
    assert len(_core.decompress(bomb, codec, max_output=8 * 2**20)) == 8 * 2**20


def test_codecs_run_concurrently_in_threads():
    results: list[bytes] = []

    def work():
        results.append(_core.decompress(_core.compress(RECORDS, "lzma", level=1), "lzma"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [RECORDS] * 4


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5000), codec=st.sampled_from(_core.CODECS), level=st.integers(1, 9))
def test_any_bytes_round_trip(data, codec, level):
    assert _core.decompress(_core.compress(data, codec, level=level), codec) == data


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=3000), codec=st.sampled_from(_core.CODECS), hint=st.integers(0, 6000))
def test_any_size_hint_gives_the_same_bytes(data, codec, hint):
    assert _core.decompress(_core.compress(data, codec), codec, size_hint=hint) == data


@settings(max_examples=300, deadline=None)
@given(garbage=st.binary(max_size=2000), codec=st.sampled_from(_core.CODECS))
def test_random_garbage_never_crashes(garbage, codec):
    # Any outcome but CorruptResultError (a panic, another exception) fails the test.
    try:
        _core.decompress(garbage, codec)
    except CorruptResultError as error:
        assert str(error).startswith(f"{codec}: ")


@settings(max_examples=150, deadline=None)
@given(
    codec=st.sampled_from(_core.CODECS),
    position=st.floats(0, 1, exclude_max=True),
    flip=st.integers(1, 255),
)
def test_damage_is_detected_or_harmless(codec, position, flip):
    original = RECORDS[:3000]
    packed = bytearray(_core.compress(original, codec))
    packed[int(position * len(packed))] ^= flip
    try:
        restored = _core.decompress(packed, codec, size_hint=len(original))
    except CorruptResultError:
        return
    # Every codec checks its content (CRC32/64, Adler-32, XXH64), so wrong output is never returned.
    assert restored == original
