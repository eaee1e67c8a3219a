import datetime
import json
import threading
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from serializer_samples import EVERY_TYPE, Holder

from ferroflow.exceptions import SerializationError
from ferroflow.serializers import JSONSerializer


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


# -- property: any mix of supported values round-trips through both JSON libraries ------------

_json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    st.datetimes(timezones=st.none() | st.just(datetime.UTC)),
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
