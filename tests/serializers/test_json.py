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
from ferroflow.serializers.json_tags import MAX_JSON_DEPTH


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


# -- values JSON cannot hold: a SerializationError naming where, never a raw library error ------------

JSON_LIBRARIES = ["json", "orjson"]


def nested_lists(depth):
    value = outer = []
    for _ in range(depth - 1):
        inner = []
        value.append(inner)
        value = inner
    return outer


@pytest.mark.parametrize("jsonlib", JSON_LIBRARIES)
def test_a_list_that_contains_itself_names_where(jsonlib):
    value = [1, 2]
    value.append(value)
    with pytest.raises(SerializationError, match=r"result\[2\] is result itself: the value contains itself"):
        JSONSerializer(jsonlib=jsonlib).dumps(value)


@pytest.mark.parametrize("jsonlib", JSON_LIBRARIES)
def test_a_dict_deep_inside_that_refers_back_names_both_places(jsonlib):
    value = {"a": [0, 1, 2, {"b": None}]}
    value["a"][3]["b"] = value["a"]
    message = r"result\['a'\]\[3\]\['b'\] is result\['a'\] itself"
    with pytest.raises(SerializationError, match=message):
        JSONSerializer(jsonlib=jsonlib).dumps(value)


@pytest.mark.parametrize("jsonlib", JSON_LIBRARIES)
def test_values_nested_up_to_the_bound_round_trip_and_deeper_ones_are_refused(jsonlib):
    serializer = JSONSerializer(jsonlib=jsonlib)
    deepest = nested_lists(MAX_JSON_DEPTH)
    assert serializer.loads(serializer.dumps(deepest)) == deepest
    with pytest.raises(
        SerializationError,
        match=rf"result\[0\].*\[0\] is a builtins.list \(nested deeper than {MAX_JSON_DEPTH} levels",
    ):
        serializer.dumps(nested_lists(MAX_JSON_DEPTH + 1))
    with pytest.raises(SerializationError, match=r"…\(\d+ more\)…"):  # a long path is cut short
        serializer.dumps({"rows": nested_lists(100_000)})


@pytest.mark.parametrize("jsonlib", JSON_LIBRARIES)
def test_an_integer_too_long_for_text_names_where(jsonlib):
    with pytest.raises(
        SerializationError,
        match=r"result\['n'\]\[1\] is a builtins.int \(an integer of about 5001 digits.*set_int_max_str_digits",
    ):
        JSONSerializer(jsonlib=jsonlib).dumps({"n": [1, 10**5000]})
    big = 10**4000  # within Python's limit: still written, as a tagged integer
    assert JSONSerializer(jsonlib=jsonlib).loads(JSONSerializer(jsonlib=jsonlib).dumps(big)) == big


@pytest.mark.parametrize("jsonlib", JSON_LIBRARIES)
@pytest.mark.parametrize(
    "value, where",
    [
        ({"a": ["ok", "x\ud800y"]}, r"result\['a'\]\[1\] is a builtins.str \(a string"),
        ({"k\udc80": 1}, r"result\['k\\udc80'\] is a builtins.str \(a key"),
        (
            {("t", "\udfff"): 1},
            r"result\[\('t', '\\udfff'\)\]\[1\] is a builtins.str \(a string",
        ),  # in that key
    ],
    ids=["value", "key", "tuple key"],
)
def test_text_that_is_not_valid_unicode_names_where(jsonlib, value, where):
    with pytest.raises(SerializationError, match=rf"{where} that is not valid Unicode: a lone surrogate"):
        JSONSerializer(jsonlib=jsonlib).dumps(value)


@pytest.mark.parametrize("jsonlib", JSON_LIBRARIES)
@pytest.mark.parametrize(
    "document",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b"1" * 5000,
        b'{"__ferroflow_type__": "int", "value": "' + b"1" * 5000 + b'"}',
    ],
    ids=["nested", "long number", "long tagged integer"],
)
def test_documents_beyond_the_bounds_are_serialization_errors(jsonlib, document):
    with pytest.raises(SerializationError):
        JSONSerializer(jsonlib=jsonlib).loads(document)


_any_text = st.text(st.characters(codec=None, categories=None), max_size=8)  # lone surrogates included
_awkward_values = st.recursive(
    st.none() | st.integers(min_value=-(10**5000), max_value=10**5000) | _any_text | st.floats(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_any_text, children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(value=_awkward_values)
def test_any_value_round_trips_or_is_a_serialization_error(value):
    for serializer in (JSONSerializer(), JSONSerializer(jsonlib="orjson")):
        try:
            data = serializer.dumps(value)
        except SerializationError:
            continue
        back = serializer.loads(data)
        assert json.dumps(back, default=repr) == json.dumps(value, default=repr)  # NaN != NaN
