import bz2
import copy
import dataclasses
import datetime
import decimal
import enum
import gzip
import json
import lzma
import pathlib
import pickle
import threading
import uuid
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from ferroflow import serializers
from ferroflow.exceptions import SerializationError
from ferroflow.serializers import (
    CompressedJSONSerializer,
    CompressedPickleSerializer,
    CompressedSerializer,
    JSONSerializer,
    PickleSerializer,
    Serializer,
    resolve_serializer,
)
from ferroflow.settings import temporary_settings

COMPAT = Path(__file__).parent / "data" / "prefect2-results"


# -- values used below (module level, so JSON can name their classes) -----------------------


class Color(enum.Enum):
    RED = "red"


class Point(BaseModel):
    x: int
    y: float


class Reading(BaseModel):
    at: datetime.datetime
    where: Point
    tags: set[str]
    id: uuid.UUID


@dataclasses.dataclass
class Span:
    start: datetime.date
    days: int


class Holder:
    def __init__(self) -> None:
        self.number = 1
        self.lock = threading.Lock()


class UpperSerializer(Serializer):
    """A custom serializer used by the tests below (registered by being defined)."""

    type: Literal["test-upper"] = "test-upper"

    def dumps(self, obj):
        return str(obj).upper().encode()

    def loads(self, blob):
        return bytes(blob).decode()


EVERY_TYPE = {
    "datetime": datetime.datetime(2026, 11, 25, 12, 30, 5, 123456, tzinfo=datetime.timezone.utc),
    "naive": datetime.datetime(2026, 11, 25, 12, 0),
    "date": datetime.date(2026, 11, 25),
    "time": datetime.time(23, 59, 58, 7),
    "timedelta": datetime.timedelta(days=-1, seconds=5, microseconds=3),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "decimal": decimal.Decimal("3.14159265358979323846"),
    "bytes": b"\x00\xffraw",
    "bytearray": bytearray(b"abc"),
    "set": {1, 2, 3},
    "frozenset": frozenset({"a", "b"}),
    "tuple": (1, ("nested", 2.5)),
    "enum": Color.RED,
    "path": pathlib.Path("/data/results"),
    "model": Reading(
        at=datetime.datetime(2026, 1, 1),
        where=Point(x=1, y=2.5),
        tags={"a"},
        id=uuid.UUID(int=7),
    ),
    "dataclass": Span(start=datetime.date(2026, 1, 1), days=3),
    "complex": 1 + 2j,
    "big_int": 2**100,
    "infinity": float("inf"),
    "non_str_keys": {1: "one", (2, 3): "pair"},
    "looks_tagged": {"__ferroflow_type__": "uuid", "value": "not a uuid"},
    "looks_prefect": {"__class__": "uuid.UUID", "data": "not a uuid"},
    "plain": [1, 2.5, "x", None, True, {"k": []}],
}


# -- pickle --------------------------------------------------------------------------------


def test_pickle_round_trips_arbitrary_objects():
    serializer = PickleSerializer()
    value = {"lambda": (lambda x: x + 1), "model": EVERY_TYPE["model"], "array": np.arange(5)}
    back = serializer.loads(serializer.dumps(value))
    assert back["lambda"](1) == 2
    assert back["model"] == value["model"]
    np.testing.assert_array_equal(back["array"], value["array"])


def test_pickle_uses_protocol_5_and_records_the_library_version():
    import cloudpickle

    serializer = PickleSerializer()
    assert serializer.dumps(1)[:2] == b"\x80\x05"
    assert serializer.picklelib_version == cloudpickle.__version__
    assert serializer.to_description() == {
        "type": "pickle",
        "picklelib": "cloudpickle",
        "picklelib_version": cloudpickle.__version__,
    }


def test_pickle_with_the_stdlib_library():
    serializer = PickleSerializer(picklelib="pickle")
    assert pickle.loads(serializer.dumps({"a": 1})) == {"a": 1}


def test_pickle_warns_when_loading_with_another_library_version():
    with pytest.warns(UserWarning, match=r"pickled with cloudpickle 0\.0\.1, but .* is installed"):
        PickleSerializer.from_description({"type": "pickle", "picklelib_version": "0.0.1"})


def test_pickle_refuses_a_library_without_dumps_and_loads():
    message = r"picklelib 'math' cannot be used: it has no dumps\(\) or loads\(\)"
    with pytest.raises(SerializationError, match=message):
        PickleSerializer(picklelib="math")
    with pytest.raises(SerializationError, match="Cannot import the picklelib 'no_such_pickle'"):
        PickleSerializer(picklelib="no_such_pickle")


def test_an_unpicklable_value_names_the_attribute_path():
    with pytest.raises(SerializationError) as error:
        PickleSerializer().dumps({"fine": [1, 2], "outer": Holder()})
    message = str(error.value)
    assert "result['outer'].lock: cannot pickle '_thread.lock' object" in message
    assert "__getstate__" in message  # says what to do


def test_an_unloadable_pickle_says_what_is_needed():
    with pytest.raises(SerializationError, match="A pickle loads only where the same classes are importable"):
        PickleSerializer().loads(b"\x80\x05\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x08no_such\x94\x8c\x01x\x94\x93\x94.")


def test_out_of_band_segments_are_the_arrays_own_memory():
    array = np.arange(1_000_000, dtype=np.float64)
    other = np.ones((10, 10), dtype=np.int32)
    serializer = PickleSerializer()
    segments = serializer.dump_segments({"a": array, "b": other, "n": 3})
    assert len(segments) == 3
    assert np.shares_memory(np.frombuffer(segments[1], dtype=np.float64), array)
    assert np.shares_memory(np.frombuffer(segments[2], dtype=np.int32), other)
    assert len(segments[0]) < 1000  # the stream holds no array data


@pytest.mark.parametrize("picklelib", ["cloudpickle", "pickle"])
def test_a_large_bytes_result_is_its_own_segment_not_copied_into_the_stream(picklelib):
    data = bytes(range(256)) * 1024
    serializer = PickleSerializer(picklelib=picklelib)
    stream, segment = serializer.dump_segments(data)
    assert len(stream) < 200
    assert np.shares_memory(np.frombuffer(segment, dtype=np.uint8), np.frombuffer(data, dtype=np.uint8))
    for stored in (segment, bytes(segment), memoryview(bytearray(segment))):
        back = serializer.load_segments([stream, stored])
        assert type(back) is bytes and back == data


def test_small_bytes_stay_in_the_pickle_stream():
    assert len(PickleSerializer().dump_segments(b"small")) == 1


def test_load_segments_rebuilds_arrays_on_the_given_buffers_without_copying():
    array = np.arange(1000, dtype=np.int64)
    serializer = PickleSerializer()
    stream, data = serializer.dump_segments([array])
    stored = bytearray(data)  # stands for a memory-mapped file
    back = serializer.load_segments([stream, memoryview(stored)])[0]
    np.testing.assert_array_equal(back, array)
    assert np.shares_memory(back, np.frombuffer(stored, dtype=np.int64))


def test_arrays_loaded_from_read_only_segments_are_writable():
    serializer = PickleSerializer()
    stream, data = serializer.dump_segments(np.arange(10))
    back = serializer.load_segments([stream, bytes(data)])
    back[0] = 42  # a plain unpickle gives a writable array; so does this
    assert back[0] == 42


def test_a_picklelib_without_protocol_or_buffers_gets_one_segment():
    serializer = PickleSerializer(picklelib=f"{__name__}")
    assert serializer.dump_segments([1]) == [b"[1]"]
    assert serializer.load_segments([b"[1]"]) == [1]


def dumps(obj):
    """This test module doubles as a minimal picklelib (dumps/loads without keywords)."""
    return repr(obj).encode()


def loads(data):
    import ast

    return ast.literal_eval(bytes(data).decode())


def test_non_contiguous_arrays_go_in_band():
    strided = np.arange(100)[::2]
    serializer = PickleSerializer()
    segments = serializer.dump_segments(strided)
    np.testing.assert_array_equal(serializer.load_segments(segments), strided)


def test_pickle_dumps_equals_the_single_segment_stream_without_buffers():
    serializer = PickleSerializer()
    assert serializer.dump_segments({"a": 1}) == [serializer.dumps({"a": 1})]


# -- JSON ----------------------------------------------------------------------------------


@pytest.mark.parametrize("jsonlib", ["json", "orjson"])
def test_json_round_trips_every_supported_type(jsonlib):
    serializer = JSONSerializer(jsonlib=jsonlib)
    back = serializer.loads(serializer.dumps(EVERY_TYPE))
    assert back == EVERY_TYPE
    for key, value in EVERY_TYPE.items():
        assert type(back[key]) is type(value), key


@pytest.mark.parametrize("jsonlib", ["json", "orjson"])
def test_json_round_trips_exceptions(jsonlib):
    serializer = JSONSerializer(jsonlib=jsonlib)
    back = serializer.loads(serializer.dumps(ValueError("bad value", 3)))
    assert type(back) is ValueError
    assert back.args == ("bad value", 3)


def test_json_and_orjson_load_what_the_other_wrote():
    plain, fast = JSONSerializer(), JSONSerializer(jsonlib="orjson")
    assert fast.loads(plain.dumps(EVERY_TYPE)) == EVERY_TYPE
    assert plain.loads(fast.dumps(EVERY_TYPE)) == EVERY_TYPE


def test_json_output_is_readable_tagged_json():
    document = json.loads(JSONSerializer().dumps({"when": datetime.date(2026, 1, 2), "n": 1}))
    assert document == {"when": {"__ferroflow_type__": "date", "value": "2026-01-02"}, "n": 1}


def test_json_accepts_any_bytes_like_input():
    serializer = JSONSerializer()
    assert serializer.loads(memoryview(b'{"a": [1]}')) == {"a": [1]}


def test_json_reads_prefect_2_class_objects():
    document = b'{"id": {"__class__": "uuid.UUID", "data": "12345678-1234-5678-1234-567812345678"}}'
    assert JSONSerializer().loads(document) == {"id": uuid.UUID("12345678-1234-5678-1234-567812345678")}
    assert JSONSerializer(jsonlib="orjson").loads(document)["id"].int == 0x12345678123456781234567812345678


def test_json_unsupported_type_names_the_type_and_path_and_suggests_pickle():
    with pytest.raises(SerializationError) as error:
        JSONSerializer().dumps({"rows": [1, {"lock": threading.Lock()}]})
    message = str(error.value)
    assert "result['rows'][1]['lock'] is a _thread.lock" in message
    assert "result_serializer='pickle'" in message


def test_json_refuses_a_class_defined_in_a_function():
    class Local(BaseModel):
        a: int

    with pytest.raises(SerializationError, match="defined inside a function"):
        JSONSerializer().dumps([Local(a=1)])


def test_json_custom_encoder_and_decoder_hooks():
    serializer = JSONSerializer(object_encoder=f"{__name__}.encode_holder", object_decoder=None)
    assert json.loads(serializer.dumps([Holder()])) == [{"holder": 1}]


def encode_holder(obj):
    if isinstance(obj, Holder):
        return {"holder": obj.number}
    raise TypeError(f"{type(obj)} unsupported")


def test_jsonlib_without_dumps_and_loads_is_refused():
    with pytest.raises(SerializationError, match=r"jsonlib 'math' cannot be used"):
        JSONSerializer(jsonlib="math")


def test_invalid_json_is_a_serialization_error():
    with pytest.raises(SerializationError, match="not valid JSON"):
        JSONSerializer().loads(b"{not json")


# -- compression ---------------------------------------------------------------------------


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

    monkeypatch.setattr(serializers, "LZMA_THREADED_MIN_SIZE", 1000)
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


def test_uncompressed_serializers_ask_for_no_frame_codec():
    assert PickleSerializer().frame_codec == ("none", None)
    assert JSONSerializer().frame_codec == ("none", None)


# -- type names, descriptions, registration --------------------------------------------------


@pytest.mark.parametrize(
    "type_name, expected_class",
    [
        ("pickle", PickleSerializer),
        ("json", JSONSerializer),
        ("compressed", CompressedSerializer),
        ("compressed/pickle", CompressedPickleSerializer),
        ("compressed/json", CompressedJSONSerializer),
    ],
)
def test_type_names_give_default_instances(type_name, expected_class):
    serializer = Serializer.from_type_name(type_name)
    assert type(serializer) is expected_class
    assert serializer.type == type_name


@pytest.mark.parametrize(
    "serializer",
    [
        PickleSerializer(),
        JSONSerializer(jsonlib="orjson", dumps_kwargs={"option": 0}),
        CompressedSerializer(serializer=JSONSerializer(), compressionlib="bz2", level=9),
        CompressedPickleSerializer(),
        CompressedJSONSerializer(compressionlib="zstd"),
    ],
    ids=lambda s: s.type,
)
def test_descriptions_round_trip_through_json(serializer):
    description = json.loads(json.dumps(serializer.to_description()))
    assert Serializer.from_description(description) == serializer


@pytest.mark.parametrize(
    "serializer",
    [
        PickleSerializer(),
        JSONSerializer(jsonlib="orjson"),
        CompressedSerializer(serializer="json", compressionlib="gzip"),
        CompressedSerializer(serializer=UpperSerializer()),
    ],
    ids=lambda s: s.type,
)
def test_serializers_can_be_pickled_and_copied(serializer):
    duplicates = [pickle.loads(pickle.dumps(serializer)), copy.deepcopy(serializer), copy.copy(serializer)]
    for duplicate in duplicates:
        assert duplicate == serializer
        assert duplicate.loads(duplicate.dumps("value")) == serializer.loads(serializer.dumps("value"))


def test_compressed_description_nests_the_inner_description():
    description = CompressedSerializer(serializer="json").to_description()
    assert description["serializer"]["type"] == "json"
    assert description["serializer"]["jsonlib"] == "json"


def test_unknown_type_lists_the_known_ones():
    with pytest.raises(SerializationError) as error:
        Serializer.from_type_name("yaml")
    assert "Unknown serializer type 'yaml'" in str(error.value)
    assert "compressed/pickle, json, pickle" in str(error.value)


def test_invalid_description_is_a_serialization_error():
    with pytest.raises(SerializationError, match="mapping with a 'type' key"):
        Serializer.from_description({"jsonlib": "json"})
    message = "Invalid JSONSerializer options: jsonlibb: Extra inputs are not permitted"
    with pytest.raises(SerializationError, match=message):
        Serializer.from_description({"type": "json", "jsonlibb": "json"})


def test_custom_serializers_register_by_subclassing():
    assert type(Serializer.from_type_name("test-upper")) is UpperSerializer
    assert type(Serializer.from_description({"type": "test-upper"})) is UpperSerializer
    assert "test-upper" in serializers.known_serializer_types()
    assert UpperSerializer().loads(UpperSerializer().dumps("abc")) == "ABC"


def test_custom_serializers_compress_only_through_an_instance():
    with pytest.raises(SerializationError) as error:
        Serializer.from_type_name("compressed/test-upper")
    assert "only covers ferroflow's own serializers" in str(error.value)
    assert "CompressedSerializer(serializer='test-upper')" in str(error.value)

    wrapped = CompressedSerializer(serializer=UpperSerializer())
    assert wrapped.loads(wrapped.dumps("abc")) == "ABC"
    assert Serializer.from_description(wrapped.to_description()) == wrapped


def test_a_custom_serializer_cannot_take_a_built_in_name():
    with pytest.raises(TypeError, match="belongs to ferroflow's JSONSerializer"):

        class FakeJSON(Serializer):
            type: Literal["json"] = "json"

            def dumps(self, obj):
                return b""

            def loads(self, blob):
                return None


def test_subclasses_that_keep_the_type_do_not_replace_it():
    class Tweaked(PickleSerializer):
        pass

    assert type(Serializer.from_type_name("pickle")) is PickleSerializer


def test_resolve_serializer_uses_the_default_setting():
    assert type(resolve_serializer(None)) is PickleSerializer
    with temporary_settings(results_default_serializer="compressed/json"):
        assert type(resolve_serializer(None)) is CompressedJSONSerializer
    assert type(resolve_serializer("json")) is JSONSerializer
    assert type(resolve_serializer({"type": "pickle"})) is PickleSerializer
    with pytest.raises(SerializationError, match="got int"):
        resolve_serializer(3)


# -- Prefect 2 result files ------------------------------------------------------------------


def prefect_expected_value():
    return json.loads((COMPAT / "manifest.json").read_text())["value"]


@pytest.mark.parametrize("file_name", ["pickle.json", "json.json", "compressed_pickle.json"])
def test_prefect_2_descriptions_give_serializers_that_read_their_files(file_name):
    document = json.loads((COMPAT / file_name).read_text())
    serializer = Serializer.from_description(document["serializer"])
    assert serializer.loads_prefect2(document["data"].encode()) == prefect_expected_value()


def test_prefect_2_compressed_description_keeps_its_options():
    document = json.loads((COMPAT / "compressed_pickle.json").read_text())
    serializer = Serializer.from_description(document["serializer"])
    assert type(serializer) is CompressedPickleSerializer
    assert serializer.compressionlib == "lzma"
    assert type(serializer.serializer) is PickleSerializer


def test_bad_prefect_2_data_is_a_serialization_error():
    with pytest.raises(SerializationError, match="not the base64 text"):
        PickleSerializer().loads_prefect2(b"abc")


# -- property: any mix of supported values round-trips through both JSON libraries ------------

_json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    st.datetimes(timezones=st.none() | st.just(datetime.timezone.utc)),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.uuids(),
    st.decimals(allow_nan=False),
    st.sampled_from(["__ferroflow_type__", "__class__", "data", "value"]),
)
_hashable = st.one_of(st.integers(), st.text(), st.tuples(st.integers(), st.text()))
_json_values = st.recursive(
    _json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.frozensets(_hashable, max_size=4),
        st.dictionaries(st.text(max_size=12) | st.sampled_from(["__class__", "data"]), children, max_size=4),
        st.dictionaries(_hashable, children, max_size=3),
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(value=_json_values)
def test_json_round_trips_any_mix_of_supported_values(value):
    for serializer in (JSONSerializer(), JSONSerializer(jsonlib="orjson")):
        back = serializer.loads(serializer.dumps(value))
        assert back == value
        assert type(back) is type(value)
