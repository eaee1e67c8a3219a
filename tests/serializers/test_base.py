import copy
import json
import pickle
from pathlib import Path
from typing import Literal

import pytest

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

COMPAT = Path(__file__).parent.parent / "data" / "prefect2-results"


class UpperSerializer(Serializer):
    """A custom serializer used by the tests below (registered by being defined)."""

    type: Literal["test-upper"] = "test-upper"

    def dumps(self, obj):
        return str(obj).upper().encode()

    def loads(self, blob):
        return bytes(blob).decode()


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


def test_custom_serializers_compress_by_type_name_or_through_an_instance():
    by_name = Serializer.from_type_name("compressed/test-upper")
    assert by_name.type == "compressed/test-upper"
    assert by_name.serializer == UpperSerializer()
    assert by_name.loads(by_name.dumps("abc")) == "ABC"
    assert Serializer.from_description(by_name.to_description()) == by_name

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
