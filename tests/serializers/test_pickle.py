import pickle

import numpy as np
import pytest
from serializer_samples import EVERY_TYPE, Holder

from ferroflow.exceptions import SerializationError
from ferroflow.serializers import PickleSerializer


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
        PickleSerializer().loads(
            b"\x80\x05\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x08no_such\x94\x8c\x01x\x94\x93\x94."
        )


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
