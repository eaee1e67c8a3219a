"""`serializer_for_reading`: a stored result's description of its serializer is checked before
anything it names is imported or called (the reader decides what code runs, not the file)."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferroflow import _core, flow, task
from ferroflow.exceptions import CachedResultUnavailableWarning, CorruptResultError, SerializationError
from ferroflow.filesystems import LocalFileSystem
from ferroflow.results import PersistedResult, read_result
from ferroflow.serializers import (
    JSONSerializer,
    PickleSerializer,
    register_json_hook,
    register_library,
    serializer_for_reading,
)

COMPAT = Path(__file__).parent.parent / "data" / "prefect2-results"
MARKER_ENV = "FERROFLOW_TEST_MARKER"


class WritesMarker:
    """Unpickling this creates the file `path`: the proof that a pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def touch_marker(obj):
    """A would-be object_decoder that nobody registered: calling it leaves a marker file."""
    Path(obj["marker"]).touch()
    return obj


def forged_blob(path: Path, description: dict, payload: bytes) -> None:
    """Replace the result file at `path` by one whose header describes `description`."""
    Path(path).unlink(missing_ok=True)
    _core.write_blob(str(path), [payload], serializer=json.dumps(description, sort_keys=True))


def json_result(tmp_path: Path, value=None) -> PersistedResult:
    storage = LocalFileSystem(basepath=str(tmp_path / "results"))
    written = PersistedResult.create({"a": 1} if value is None else value, storage=storage, serializer="json")
    # A fresh reference, as another process or a later run has it: nothing cached in memory.
    return PersistedResult(storage=storage, storage_key=written.storage_key, serializer_type="json")


# --- a file cannot choose its libraries or hooks --------------------------------------------------


def test_a_json_result_whose_header_names_pickle_as_jsonlib_is_refused_unloaded(tmp_path):
    result = json_result(tmp_path)
    marker = tmp_path / "pickle-ran"
    forged_blob(
        result.storage.path_of(result.storage_key),
        {"type": "json", "jsonlib": "pickle", "object_decoder": None},
        pickle.dumps(WritesMarker(marker)),
    )
    with pytest.raises(SerializationError, match=r"jsonlib='pickle', which is not a known jsonlib"):
        result.get()
    assert not marker.exists()


def test_a_json_result_whose_header_names_an_unregistered_hook_does_not_call_it(tmp_path):
    result = json_result(tmp_path)
    marker = tmp_path / "hook-ran"
    forged_blob(
        result.storage.path_of(result.storage_key),
        {"type": "json", "jsonlib": "json", "object_decoder": f"{__name__}.touch_marker"},
        json.dumps({"marker": str(marker)}).encode(),
    )
    with pytest.raises(
        SerializationError, match=r"object_decoder=.*touch_marker.*not a registered JSON hook"
    ):
        result.get()
    assert not marker.exists()


@pytest.mark.parametrize("hook", ["subprocess.call", "os.system", "builtins.exec"])
def test_hooks_that_run_commands_are_refused_before_they_are_imported(hook):
    description = {"type": "json", "jsonlib": "json", "object_decoder": hook}
    with pytest.raises(SerializationError, match="register_json_hook"):
        serializer_for_reading(description, expected_type="json")


def test_a_json_result_whose_file_says_pickle_is_refused_as_replaced(tmp_path):
    result = json_result(tmp_path)
    marker = tmp_path / "pickle-ran"
    forged_blob(
        result.storage.path_of(result.storage_key),
        PickleSerializer(picklelib="pickle").to_description(),
        pickle.dumps(WritesMarker(marker)),
    )
    with pytest.raises(CorruptResultError, match="says it was written by the 'pickle' serializer"):
        result.get()
    assert not marker.exists()


def test_compressed_json_cannot_carry_a_pickle_inside():
    description = {
        "type": "compressed/json",
        "compressionlib": "lzma",
        "level": None,
        "serializer": PickleSerializer().to_description(),
    }
    with pytest.raises(CorruptResultError, match="'pickle' serializer"):
        serializer_for_reading(description, expected_type="compressed/json")
    with pytest.raises(CorruptResultError, match="'pickle' serializer"):
        serializer_for_reading(description)  # even when the reader expects nothing in particular


def test_a_compressed_result_may_be_described_by_its_wrapped_type_only():
    # A compressed serializer stores its wrapped serializer's bytes when compressing would grow them.
    pickle_description = PickleSerializer().to_description()
    assert serializer_for_reading(pickle_description, expected_type="compressed/pickle") == PickleSerializer()
    assert serializer_for_reading(pickle_description, expected_type="compressed") == PickleSerializer()
    with pytest.raises(CorruptResultError, match="'pickle' serializer"):
        serializer_for_reading(pickle_description, expected_type="compressed/json")
    with pytest.raises(CorruptResultError, match="'compressed/pickle' serializer"):
        serializer_for_reading({"type": "compressed/pickle"}, expected_type="pickle")


@pytest.mark.parametrize(
    "description",
    [
        {"type": "pickle", "picklelib": "antigravity"},
        {"type": "compressed", "compressionlib": "this", "serializer": {"type": "pickle"}},
        {"type": "json", "jsonlib": "marshal"},
    ],
    ids=["picklelib", "compressionlib", "jsonlib"],
)
def test_unknown_libraries_are_refused_before_they_are_imported(description):
    # Importing `antigravity` opens a web browser and `this` prints a poem: neither may happen.
    with pytest.raises(SerializationError, match="register_library"):
        serializer_for_reading(description)
    assert "antigravity" not in sys.modules and "this" not in sys.modules


@pytest.mark.parametrize("description", [None, [], "json", {"jsonlib": "json"}, {"type": 3}])
def test_a_description_that_is_not_one_is_corrupt(description):
    with pytest.raises(CorruptResultError, match="serializer description"):
        serializer_for_reading(description)


def test_pickle_modules_can_never_be_registered_as_json_libraries():
    for name in ("pickle", "cloudpickle", "dill", "marshal", "pickle.foo"):
        with pytest.raises(SerializationError, match="loads pickles or code, not JSON"):
            register_library("jsonlib", name)
    with pytest.raises(SerializationError, match="loads pickles or code, not JSON"):
        JSONSerializer(jsonlib="pickle")


def test_register_library_checks_its_role():
    with pytest.raises(SerializationError, match="Unknown library role 'yamllib'"):
        register_library("yamllib", "yaml")


# --- what the reader asks for still loads ---------------------------------------------------------


@pytest.mark.parametrize(
    "name, type_name, other_type",
    [
        ("pickle.json", "pickle", "compressed/json"),
        ("json.json", "json", "compressed/pickle"),
        ("compressed_pickle.json", "compressed/pickle", "compressed/json"),
    ],
)
def test_prefect_2_files_load_when_the_reader_asks_for_their_serializer(name, type_name, other_type):
    value = json.loads((COMPAT / "manifest.json").read_text())["value"]
    assert read_result(COMPAT / name, serializer=type_name) == value
    with pytest.raises(CorruptResultError, match="ferroflow reads a result only with the serializer"):
        read_result(COMPAT / name, serializer=other_type)


def test_read_result_refuses_a_file_of_another_type_than_asked(tmp_path):
    result = json_result(tmp_path)
    path = result.storage.path_of(result.storage_key)
    assert read_result(path, serializer=JSONSerializer()) == {"a": 1}
    with pytest.raises(CorruptResultError):
        read_result(path, serializer="pickle")


def test_hooks_and_libraries_this_program_configures_are_known(tmp_path):
    serializer = JSONSerializer(object_encoder=f"{__name__}.encode_marker_free", object_decoder=None)
    storage = LocalFileSystem(basepath=str(tmp_path))
    written = PersistedResult.create({"b": 2}, storage=storage, serializer=serializer)
    fresh = PersistedResult(storage=storage, storage_key=written.storage_key, serializer_type="json")
    assert fresh.get() == {"b": 2}


def encode_marker_free(obj):
    raise TypeError("no stand-in")


def test_register_json_hook_takes_a_function_or_its_path():
    description = {"type": "json", "jsonlib": "json", "object_decoder": f"{__name__}.decode_registered"}
    with pytest.raises(SerializationError):
        serializer_for_reading(description)
    register_json_hook(decode_registered)
    assert serializer_for_reading(description).loads(b'{"x": 1}') == {"x": 1, "decoded": True}


def decode_registered(obj):
    return {**obj, "decoded": True}


READER = """
import sys
from ferroflow.results import read_result
from ferroflow.serializers import register_library
if sys.argv[2] == "register":
    register_library("picklelib", "{module}")
print(read_result(sys.argv[1]))
"""


def test_a_reader_process_must_register_a_library_it_did_not_configure(tmp_path, monkeypatch):
    # A pickle library of the user's own: known to this process, which configured it, but not
    # to another one that only reads the file.
    (tmp_path / "rowlib.py").write_text(
        "import ast\n"
        "def dumps(obj): return repr(obj).encode()\n"
        "def loads(data): return ast.literal_eval(bytes(data).decode())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    storage = LocalFileSystem(basepath=str(tmp_path / "results"))
    written = PersistedResult.create([1, 2], storage=storage, serializer=PickleSerializer(picklelib="rowlib"))
    path = str(storage.path_of(written.storage_key))
    script = READER.replace("{module}", "rowlib")
    env = {"PYTHONPATH": f"{Path(_core.__file__).parent.parent}:{tmp_path}", "PATH": ""}
    run = [sys.executable, "-c", script, path]
    refused = subprocess.run([*run, "-"], capture_output=True, text=True, env=env, check=False)
    assert refused.returncode != 0
    assert "picklelib='rowlib', which is not a known picklelib" in refused.stderr
    accepted = subprocess.run([*run, "register"], capture_output=True, text=True, env=env, check=False)
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.strip() == "[1, 2]"


# --- in a flow: a replaced cached result is recomputed, never loaded --------------------------------


def test_a_cached_json_result_replaced_by_a_pickle_recomputes_and_never_unpickles(tmp_path):
    calls = []
    marker = tmp_path / "pickle-ran"

    @task(
        result_serializer="json",
        cache_key_fn=lambda: "fixed",
        result_storage=LocalFileSystem(basepath=str(tmp_path / "r")),
    )
    def compute():
        calls.append(1)
        return {"value": len(calls)}

    @flow
    def pipeline():
        return compute(return_state=True)

    first = pipeline()
    path = Path(first.data.storage.path_of(first.data.storage_key))
    forged_blob(
        path,
        {"type": "json", "jsonlib": "pickle", "object_decoder": None},
        pickle.dumps(WritesMarker(marker)),
    )
    with pytest.warns(CachedResultUnavailableWarning, match="not a known jsonlib"):
        second = pipeline()
    assert second.result() == {"value": 2} and len(calls) == 2
    assert not marker.exists()


@pytest.mark.parametrize("option", ["object_pairs_hook", "parse_float", "cls"])
def test_a_file_cannot_name_functions_through_loads_kwargs(option):
    description = {"type": "json", "jsonlib": "json", "loads_kwargs": {option: "subprocess.call"}}
    with pytest.raises(
        SerializationError, match=rf"loads_kwargs \['{option}'\], options that take functions"
    ):
        serializer_for_reading(description, expected_type="json")
    plain = {"type": "json", "jsonlib": "json", "loads_kwargs": {"strict": False}}
    assert serializer_for_reading(plain).loads(b'["a\\tb"]') == ["a\tb"]


# Harmless standard modules nothing else imports: importing one is what a file must not cause.
_module_names = st.sampled_from(
    ["colorsys", "wave", "tabnanny", "colorsys.rgb_to_hsv", "json", "pickle", "lzma"]
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12) | _module_names,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
_option_names = st.sampled_from(
    [
        "type",
        "jsonlib",
        "picklelib",
        "compressionlib",
        "object_encoder",
        "object_decoder",
        "loads_kwargs",
        "dumps_kwargs",
        "serializer",
        "level",
        "picklelib_version",
    ]
)
_type_names = st.sampled_from(
    ["json", "pickle", "compressed", "compressed/json", "compressed/pickle", "nope"]
)


@st.composite
def _stored_descriptions(draw):
    description = draw(st.dictionaries(_option_names, _json_values, max_size=5))
    if draw(st.booleans()):
        description["type"] = draw(_type_names)
    if draw(st.booleans()):
        description["serializer"] = {
            "type": draw(_type_names),
            **draw(st.dictionaries(_option_names, _json_values, max_size=2)),
        }
    return description


@settings(max_examples=300, deadline=None)
@given(description=_stored_descriptions(), expected=st.none() | _type_names)
def test_any_stored_description_gives_a_serializer_or_a_ferroflow_error(description, expected):
    modules_before = set(sys.modules)
    try:
        serializer = serializer_for_reading(description, expected_type=expected)
    except (CorruptResultError, SerializationError):
        pass
    else:
        # Or the wrapped type, which a compressed serializer writes when compressing would not shrink.
        assert expected in (None, serializer.type, "compressed", f"compressed/{serializer.type}")
    imported = set(sys.modules) - modules_before
    known = {
        "json",
        "orjson",
        "simplejson",
        "ujson",
        "pickle",
        "cloudpickle",
        "dill",
        "lzma",
        "bz2",
        "zlib",
        "gzip",
    }
    assert not (imported & (_texts_in(description) - known))  # nothing else the file named was imported


def _texts_in(value):
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(set(), *(_texts_in(key) | _texts_in(item) for key, item in value.items()))
    if isinstance(value, list):
        return set().union(set(), *(_texts_in(item) for item in value))
    return set()


@pytest.mark.parametrize(
    "header",
    [
        '"json"',
        "null",
        "[1]",
        '{"type": 3}',
        '{"serializer": {}}',
        '{"type": "json", "level": ' + "9" * 5000 + "}",
    ],
)
def test_a_header_whose_serializer_text_is_not_a_description_is_corrupt(tmp_path, header):
    result = json_result(tmp_path)
    path = Path(result.storage.path_of(result.storage_key))
    path.unlink()
    _core.write_blob(str(path), [b"{}"], serializer=header)
    with pytest.raises(CorruptResultError):
        result.get()
    with pytest.raises(CorruptResultError):
        read_result(path)
