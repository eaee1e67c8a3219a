"""Prefect 2 code using serializers: custom serializers declared without annotations, dispatch
by `Serializer(type=...)`, pydantic fields annotated `Serializer`, JSONSerializer options that
Prefect 2 refused, and pydantic v1 models in JSON."""

import ast
import datetime
import json
import pickle

import pytest
from pydantic import BaseModel, ValidationError
from pydantic import v1 as pydantic_v1

from ferroflow import flow, task
from ferroflow.exceptions import SerializationError
from ferroflow.filesystems import LocalFileSystem
from ferroflow.results import read_result
from ferroflow.serializers import (
    CompressedJSONSerializer,
    CompressedPickleSerializer,
    CompressedSerializer,
    JSONSerializer,
    PickleSerializer,
    Serializer,
)


class LiteralSerializer(Serializer):
    """Written as Prefect 2 code wrote it: no annotations (pydantic v1 inferred them)."""

    type = "prefect2-literal"
    encoding = "utf-8"

    def dumps(self, obj):
        return repr(obj).encode(self.encoding)

    def loads(self, blob):
        return ast.literal_eval(bytes(blob).decode(self.encoding))


# --- a custom serializer as Prefect 2 code declares it ----------------------------------------


def test_a_custom_serializer_without_annotations_is_registered():
    assert Serializer.from_type_name("prefect2-literal") == LiteralSerializer()
    assert LiteralSerializer().type == "prefect2-literal"
    assert LiteralSerializer().loads(LiteralSerializer().dumps({"a": (1, 2)})) == {"a": (1, 2)}


def test_its_options_are_configured_like_json_serializer_s():
    latin = LiteralSerializer(encoding="latin-1")
    assert latin.dumps("é") == "'é'".encode("latin-1")
    assert latin.to_description() == {"type": "prefect2-literal", "encoding": "latin-1"}
    assert Serializer.from_description(latin.to_description()) == latin
    with pytest.raises(SerializationError, match="encoding"):
        LiteralSerializer(encoding=8)
    with pytest.raises(SerializationError, match="type"):
        LiteralSerializer(type="other")


def test_flows_and_tasks_use_it_by_type_name_compressed_or_not(tmp_path):
    task_states = []

    @task(persist_result=True, result_serializer="compressed/prefect2-literal")
    def compressed_task():
        return [1, 2, 3]

    @flow(
        persist_result=True,
        result_serializer="prefect2-literal",
        result_storage=LocalFileSystem(basepath=tmp_path),
    )
    def my_flow():
        task_states.append(compressed_task(return_state=True))
        return {"flow": task_states[0].result()}

    flow_state = my_flow(return_state=True)
    assert flow_state.data.serializer_type == "prefect2-literal"
    assert read_result(tmp_path / flow_state.data.storage_key) == {"flow": [1, 2, 3]}
    task_result = task_states[0].data
    assert task_result.serializer_type == "compressed/prefect2-literal"
    header = LocalFileSystem(basepath=tmp_path).read_header(task_result.storage_key)
    # lzma was asked for; on a value this small it would grow the payload, so it was skipped.
    assert (header.codec, header.codec_skipped) == ("none", "lzma")
    assert read_result(tmp_path / task_result.storage_key) == [1, 2, 3]


def test_compressed_custom_types_take_compressed_serializer_options():
    serializer = Serializer(type="compressed/prefect2-literal", compressionlib="bz2")
    assert isinstance(serializer, CompressedSerializer)
    assert serializer.serializer == LiteralSerializer()
    assert serializer.loads(serializer.dumps((1, "two"))) == (1, "two")
    assert Serializer.from_description(serializer.to_description()) == serializer
    assert pickle.loads(pickle.dumps(serializer)) == serializer


def test_compressed_with_an_unregistered_type_names_the_known_ones():
    with pytest.raises(SerializationError, match="Unknown serializer type 'compressed/yaml'.*Known types"):
        Serializer(type="compressed/yaml")


# --- Serializer(type=...) gives the matching subclass -------------------------------------------


@pytest.mark.parametrize(
    ("type_name", "expected"),
    [
        ("pickle", PickleSerializer),
        ("json", JSONSerializer),
        ("compressed/pickle", CompressedPickleSerializer),
        ("compressed/json", CompressedJSONSerializer),
        ("prefect2-literal", LiteralSerializer),
    ],
)
def test_serializer_with_a_type_gives_that_type_s_serializer(type_name, expected):
    serializer = Serializer(type=type_name)
    assert type(serializer) is expected
    assert serializer == expected()


def test_serializer_with_a_type_passes_the_other_options_on():
    assert Serializer(type="json", jsonlib="orjson") == JSONSerializer(jsonlib="orjson")
    assert Serializer(type="compressed/pickle", compressionlib="zlib").compressionlib == "zlib"


def test_serializer_without_a_type_cannot_be_made():
    with pytest.raises(TypeError):
        Serializer()


class ResultSettings(BaseModel):
    serializer: Serializer


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("json", JSONSerializer()),
        ("compressed/pickle", CompressedPickleSerializer()),
        ({"type": "json", "jsonlib": "orjson"}, JSONSerializer(jsonlib="orjson")),
        ({"type": "compressed/prefect2-literal"}, Serializer(type="compressed/prefect2-literal")),
        (PickleSerializer(picklelib="pickle"), PickleSerializer(picklelib="pickle")),
        (LiteralSerializer(encoding="latin-1"), LiteralSerializer(encoding="latin-1")),
    ],
)
def test_a_pydantic_field_annotated_serializer_takes_a_type_name_a_dict_or_an_instance(given, expected):
    assert ResultSettings(serializer=given).serializer == expected
    assert ResultSettings.model_validate({"serializer": given}).serializer == expected


def test_a_pydantic_field_annotated_serializer_refuses_unknown_types():
    with pytest.raises(ValidationError, match="Unknown serializer type 'yaml'"):
        ResultSettings(serializer="yaml")


# --- JSONSerializer options Prefect 2 refused --------------------------------------------------


def test_json_serializer_refuses_a_default_function_in_dumps_kwargs():
    with pytest.raises(SerializationError, match="object_encoder"):
        JSONSerializer(dumps_kwargs={"default": str})


def test_json_serializer_refuses_an_object_hook_in_loads_kwargs():
    with pytest.raises(SerializationError, match="object_decoder"):
        JSONSerializer(loads_kwargs={"object_hook": dict})


def test_json_serializer_keeps_other_library_options():
    serializer = JSONSerializer(dumps_kwargs={"indent": 2}, loads_kwargs={"parse_float": str})
    assert serializer.dumps({"a": 1}) == json.dumps({"a": 1}, indent=2).encode()
    assert serializer.loads(b'{"a": 1.5}') == {"a": "1.5"}


# --- pydantic v1 models in JSON -----------------------------------------------------------------


class Reading(pydantic_v1.BaseModel):
    sensor: str
    taken: datetime.datetime
    values: list[float]


class Batch(pydantic_v1.BaseModel):
    readings: list[Reading]
    note: str | None = None


@pytest.mark.parametrize("jsonlib", ["json", "orjson"])
def test_pydantic_v1_models_round_trip_through_the_json_serializer(jsonlib):
    batch = Batch(
        readings=[Reading(sensor="a", taken=datetime.datetime(2024, 1, 2, 3, 4, 5), values=[1.5, 2.0])],
        note="first",
    )
    serializer = JSONSerializer(jsonlib=jsonlib)
    loaded = serializer.loads(serializer.dumps(batch))
    assert type(loaded) is Batch
    assert loaded == batch
    assert serializer.loads(serializer.dumps({"nested": [batch]})) == {"nested": [batch]}


def test_a_task_returning_a_pydantic_v1_model_persists_it_as_json(tmp_path):
    @task(persist_result=True, result_serializer="json", result_storage=LocalFileSystem(basepath=tmp_path))
    def read_sensor():
        return Reading(sensor="b", taken=datetime.datetime(2024, 5, 6), values=[0.5])

    @flow
    def my_flow():
        return read_sensor(return_state=True)

    state = my_flow()
    assert read_result(tmp_path / state.data.storage_key) == state.result()


def test_prefect_2_json_documents_of_pydantic_v1_models_are_read():
    document = json.dumps(
        {
            "__class__": f"{Reading.__module__}.Reading",
            "data": {"sensor": "c", "taken": "2024-01-01T00:00:00", "values": [1]},
        }
    )
    assert JSONSerializer().loads(document.encode()) == Reading(
        sensor="c", taken=datetime.datetime(2024, 1, 1), values=[1.0]
    )


def test_a_pydantic_field_annotated_serializer_refuses_what_names_no_serializer():
    for value in (None, 42):
        with pytest.raises(ValidationError):
            ResultSettings(serializer=value)


def test_annotated_options_keep_their_annotations_beside_inferred_ones():
    class Mixed(Serializer):
        type = "prefect2-mixed"
        level: int | None = None
        name = "x"

        def dumps(self, obj):
            return b""

        def loads(self, blob):
            return None

    assert Mixed(level=3, name="y").level == 3
    assert Mixed().level is None
    with pytest.raises(SerializationError):
        Mixed(level="high")
