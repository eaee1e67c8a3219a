import bz2
import gzip
import lzma
import pickle
import zlib

import numpy as np
import pytest
from serializer_samples import EVERY_TYPE

from ferroflow import serializers
from ferroflow.exceptions import SerializationError
from ferroflow.serializers import CompressedSerializer, JSONSerializer, PickleSerializer
from ferroflow.serializers import compressed as compression


def test_lzma_compressed_pickle_is_the_plain_xz_of_the_pickle():
    value = {"text": "héllo " * 1000, "n": list(range(100))}
    compressed = CompressedSerializer(serializer="pickle").dumps(value)
    assert lzma.decompress(compressed) == PickleSerializer().dumps(value)


@pytest.mark.parametrize("codec, stdlib_decompress", [("bz2", bz2.decompress), ("zlib", zlib.decompress)])
def test_core_codecs_write_the_standard_formats(codec, stdlib_decompress):
    serializer = CompressedSerializer(serializer="json", compressionlib=codec)
    value = {"a": [1, 2, 3] * 100}
    assert stdlib_decompress(serializer.dumps(value)) == JSONSerializer().dumps(value)
    assert serializer.loads(serializer.dumps(value)) == value


@pytest.mark.parametrize("codec", serializers.CORE_CODECS)
@pytest.mark.parametrize("inner", ["pickle", "json"])
def test_every_core_codec_round_trips(codec, inner):
    serializer = CompressedSerializer(serializer=inner, compressionlib=codec, level=1)
    assert serializer.loads(serializer.dumps(EVERY_TYPE)) == EVERY_TYPE


def test_large_lzma_inputs_use_the_threaded_encoder_and_stay_standard_xz(monkeypatch):
    calls = []
    import ferroflow._core as core

    real_compress = core.compress

    def spy(data, codec, **options):
        calls.append(options)
        return real_compress(data, codec, **options)

    monkeypatch.setattr(compression, "LZMA_THREADED_MIN_SIZE", 1000)
    monkeypatch.setattr(core, "compress", spy)
    value = bytes(range(256)) * 100
    compressed = CompressedSerializer(serializer="pickle").dumps(value)
    assert calls == [{"level": None, "threads": 0}]
    assert lzma.decompress(compressed) == PickleSerializer().dumps(value)


def test_any_module_with_compress_and_decompress_can_be_used():
    serializer = CompressedSerializer(serializer="pickle", compressionlib="gzip")
    data = serializer.dumps([1, 2, 3])
    assert pickle.loads(gzip.decompress(data)) == [1, 2, 3]
    assert serializer.loads(data) == [1, 2, 3]


def test_a_compressionlib_without_compress_is_refused_by_name():
    with pytest.raises(SerializationError) as error:
        CompressedSerializer(compressionlib="json")
    message = str(error.value)
    assert "compressionlib 'json' cannot be used: it has no compress() or decompress() function" in message
    assert "lzma, bz2, zlib, zstd" in message


def test_decompressing_foreign_bytes_is_a_serialization_error():
    with pytest.raises(SerializationError, match="Cannot decompress the result with lzma"):
        CompressedSerializer().loads(b"definitely not xz")


def test_compressed_segments_let_the_frame_compress_each_segment():
    array = np.arange(1000)
    serializer = CompressedSerializer(serializer="pickle", compressionlib="zstd", level=3)
    segments = serializer.dump_segments(array)
    assert serializer.frame_codec == ("zstd", 3)
    assert len(segments) == 2
    assert np.shares_memory(np.frombuffer(segments[1], dtype=array.dtype), array)
    np.testing.assert_array_equal(serializer.load_segments(segments), array)


def test_a_custom_compression_module_compresses_in_python_as_one_segment():
    serializer = CompressedSerializer(serializer="pickle", compressionlib="gzip")
    segments = serializer.dump_segments(np.arange(10))
    assert serializer.frame_codec == ("none", None)
    assert len(segments) == 1
    np.testing.assert_array_equal(serializer.load_segments(segments), np.arange(10))


def test_a_custom_compression_module_that_would_grow_the_payload_hands_back_the_inner_bytes():
    serializer = CompressedSerializer(serializer="pickle", compressionlib="gzip")
    writer, segments = serializer.dump_for_storage([1, 2, 3])
    assert writer is serializer.serializer and writer.frame_codec == ("none", None)
    assert segments == [serializer.serializer.dumps([1, 2, 3])]
    assert writer.load_segments(segments) == [1, 2, 3]
    assert gzip.decompress(serializer.dumps([1, 2, 3])) == segments[0]  # dumps itself still compresses
    large = list(range(1000)) * 10
    writer, segments = serializer.dump_for_storage(large)
    assert writer is serializer and len(segments) == 1
    assert len(segments[0]) < len(serializer.serializer.dumps(large))
    assert writer.load_segments(segments) == large


def test_core_codecs_leave_skipping_to_the_frame():
    serializer = CompressedSerializer(serializer="pickle", compressionlib="zlib")
    writer, segments = serializer.dump_for_storage([1, 2, 3])
    assert writer is serializer and writer.frame_codec == ("zlib", None)
    assert writer.load_segments(segments) == [1, 2, 3]


def test_uncompressed_serializers_ask_for_no_frame_codec():
    assert PickleSerializer().frame_codec == ("none", None)
    assert JSONSerializer().frame_codec == ("none", None)


def test_compressed_description_nests_the_inner_description():
    description = CompressedSerializer(serializer="json").to_description()
    assert description["serializer"]["type"] == "json"
    assert description["serializer"]["jsonlib"] == "json"


def test_a_compressed_document_beyond_the_decompressed_bound_is_refused_before_it_is_expanded():
    # A Prefect 2 style compressed document is decompressed in Python's path; the same bound as
    # framed blobs applies (FERROFLOW_RESULTS_MAX_DECOMPRESSED_SIZE).
    from ferroflow.settings import temporary_settings

    serializer = CompressedSerializer(serializer="pickle", compressionlib="zlib")
    bomb = serializer.dumps(b"0" * 10_000_000)
    assert len(bomb) < 100_000
    with temporary_settings(results_max_decompressed_size=1_000_000):
        with pytest.raises(SerializationError, match="decompresses to more than 1,000,000 bytes"):
            serializer.loads(bomb)
    assert serializer.loads(bomb) == b"0" * 10_000_000
