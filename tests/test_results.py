"""Result types, the result factory's persistence rules, and reading result files."""

import base64
import gzip
import json
import lzma
import pickle
import random
import re
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferroflow import _core
from ferroflow.exceptions import (
    CorruptResultError,
    MissingResult,
    PersistenceConfigurationError,
    SerializationError,
)
from ferroflow.filesystems import LocalFileSystem
from ferroflow.results import (
    MAP_FROM_BYTES,
    LiteralResult,
    PersistedResult,
    PersistedResultBlob,
    ResultFactory,
    UnpersistedResult,
    read_result,
    result_from_reference,
)
from ferroflow.results.blobs import is_result_file, read_blob_header, read_result_document
from ferroflow.serializers import (
    CompressedSerializer,
    JSONSerializer,
    PickleSerializer,
    known_serializer_types,
    resolve_serializer,
)
from ferroflow.serializers.base import _registry as serializer_registry
from ferroflow.settings import temporary_settings

COMPAT = Path(__file__).parent / "data" / "prefect2-results"


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def storage_path(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "storage"
    monkeypatch.setenv("FERROFLOW_LOCAL_STORAGE_PATH", str(path))
    return path


# --- literal and unpersisted results -------------------------------------------------------------


@pytest.mark.parametrize("value", [None, True, False])
def test_literal_result_keeps_the_value_inline(value):
    result = LiteralResult(value=value)
    assert result.get() is value
    assert json.loads(result.json())["type"] == "result"


def test_literal_result_json_matches_the_spec_example():
    assert json.loads(LiteralResult(value=None).json()) == {"type": "result", "value": "null"}


def test_literal_result_refuses_other_values():
    with pytest.raises(TypeError, match="None, True or False"):
        LiteralResult(value=1)


def test_unpersisted_result_without_memory_raises_a_clear_missing_result():
    with pytest.raises(MissingResult, match="cache_result_in_memory=False"):
        UnpersistedResult("big", keep_in_memory=False).get()


@pytest.mark.parametrize("value", [None, True, False])
def test_literals_are_never_written_even_when_persisting(storage_path, value):
    factory = ResultFactory(persist_result=True)
    assert isinstance(factory.create_result(value), LiteralResult)
    assert not storage_path.exists() or stored_files(storage_path) == []


# --- persisted results -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "serializer",
    [
        PickleSerializer(),
        JSONSerializer(),
        CompressedSerializer(serializer="pickle", compressionlib="zlib"),
        CompressedSerializer(serializer="json", compressionlib="lzma"),
    ],
    ids=lambda s: s.type,
)
def test_persisted_result_round_trips_through_storage(tmp_path, serializer):
    storage = LocalFileSystem(basepath=str(tmp_path))
    value = {"numbers": [1, 2, 3], "text": "héllo"}
    result = PersistedResult.create(value, storage=storage, serializer=serializer, cache_in_memory=False)
    assert (tmp_path / result.storage_key).is_file()
    assert result.get() == value
    reopened = result_from_reference(json.loads(json.dumps(result.to_reference())))
    assert isinstance(reopened, PersistedResult)
    assert reopened.get() == value


def test_persisted_result_rereads_storage_when_not_cached_in_memory(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))
    result = PersistedResult.create(
        "first", storage=storage, serializer=PickleSerializer(), cache_in_memory=False
    )
    assert result.get() == "first"
    # Replace the blob behind the key: an uncached result must see the new content.
    PersistedResult.create(
        "second", storage=storage, serializer=PickleSerializer(), storage_key=result.storage_key
    )
    assert result.get() == "second"


def test_persisted_result_caches_the_value_by_default(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))
    result = PersistedResult.create([1], storage=storage, serializer=PickleSerializer())
    (tmp_path / result.storage_key).unlink()
    assert result.get() == [1]


def test_result_file_keys_are_clock_ordered_uuids(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))
    keys = [
        PersistedResult.create(i, storage=storage, serializer=PickleSerializer()).storage_key
        for i in range(3)
    ]
    assert {uuid.UUID(key).version for key in keys} == {8}  # see ferroflow.runstore.ids
    assert len(set(keys)) == 3


def test_missing_result_file_raises_missing_result_naming_the_key(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))
    result = PersistedResult.create(
        [1], storage=storage, serializer=PickleSerializer(), cache_in_memory=False
    )
    (tmp_path / result.storage_key).unlink()
    with pytest.raises(MissingResult, match=result.storage_key):
        result.get()


def test_corrupted_result_file_raises_corruption_error_not_data(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))
    result = PersistedResult.create(
        list(range(1000)), storage=storage, serializer=PickleSerializer(), cache_in_memory=False
    )
    path = tmp_path / result.storage_key
    blob = bytearray(path.read_bytes())
    blob[-20] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(CorruptResultError):
        result.get()


@pytest.mark.parametrize("size", [10, MAP_FROM_BYTES * 2], ids=["read whole", "mapped"])
def test_a_damaged_result_file_is_detected_whether_read_or_mapped(tmp_path, size):
    storage = LocalFileSystem(basepath=str(tmp_path))
    value = b"x" * size
    result = PersistedResult.create(
        value, storage=storage, serializer=PickleSerializer(), cache_in_memory=False
    )
    path = tmp_path / result.storage_key
    assert (path.stat().st_size < MAP_FROM_BYTES) == (size < MAP_FROM_BYTES)
    assert result.get() == value
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(CorruptResultError):
        result.get()
    path.unlink()
    with pytest.raises(MissingResult, match=result.storage_key):
        result.get()


def test_numpy_result_is_read_back_through_the_memory_map(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))
    array = np.arange(1_000_000, dtype=np.float64)
    result = PersistedResult.create(
        array, storage=storage, serializer=PickleSerializer(), cache_in_memory=False
    )
    loaded = result.get()
    np.testing.assert_array_equal(loaded, array)
    # The array's memory is the map, not a fresh copy: it does not own its data.
    assert not loaded.flags.owndata
    loaded[0] = -1.0  # a private map: writable, and the file is unchanged
    assert result.get()[0] == 0.0


def test_concurrent_gets_load_once_and_agree(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))
    result = PersistedResult.create(
        {"k": list(range(100))}, storage=storage, serializer=PickleSerializer(), cache_in_memory=False
    )
    result.cache_in_memory = True
    values = []
    threads = [threading.Thread(target=lambda: values.append(result.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(values) == 8 and all(v is values[0] for v in values)


# --- the persisted document (export form) and read_result ------------------------------------------


def test_blob_document_round_trips_and_holds_base64_data():
    blob = PersistedResultBlob(
        serializer=PickleSerializer().to_description(), data=PickleSerializer().dumps([1, 2])
    )
    document = json.loads(blob.to_json())
    assert set(document) == {"serializer", "data", "ferroflow_version"}
    assert base64.b64decode(document["data"]) == blob.data
    assert PersistedResultBlob.from_json(blob.to_json()).load() == [1, 2]


def test_persisted_result_exports_to_the_document_form(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))
    result = PersistedResult.create({"a": 1}, storage=storage, serializer=JSONSerializer())
    exported = tmp_path / "exported.json"
    exported.write_text(result.to_blob().to_json())
    assert read_result(exported) == {"a": 1}


def test_read_result_reads_framed_files(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))
    result = PersistedResult.create(
        {"x": 1}, storage=storage, serializer=CompressedSerializer(serializer="pickle")
    )
    assert read_result(tmp_path / result.storage_key) == {"x": 1}


@pytest.mark.parametrize("name", ["pickle.json", "json.json", "compressed_pickle.json"])
def test_read_result_reads_prefect2_files(name):
    manifest = json.loads((COMPAT / "manifest.json").read_text())
    assert name in manifest["files"]
    assert read_result(COMPAT / name) == manifest["value"]


def test_read_result_of_a_truncated_framed_file_raises_corruption(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))
    result = PersistedResult.create(b"x" * 10_000, storage=storage, serializer=PickleSerializer())
    path = tmp_path / result.storage_key
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptResultError):
        read_result(path)


def test_compressed_pickle_dumps_is_a_plain_xz_stream_of_the_pickle():
    value = {"a": list(range(10))}
    dumped = CompressedSerializer(serializer="pickle").dumps(value)
    assert pickle.loads(lzma.decompress(dumped)) == value


# --- tiny results, and the files of earlier versions -----------------------------------------------

TINY = {"answer": 42, "ok": True}

# Every built-in serializer type with its defaults, and the compressed ones with other core codecs.
BUILT_IN_SERIALIZERS = {
    **{name: name for name in ("pickle", "json", "compressed/pickle", "compressed/json", "compressed")},
    "pickle with the stdlib pickle": PickleSerializer(picklelib="pickle"),
    "json with orjson": JSONSerializer(jsonlib="orjson"),
    **{
        f"compressed/pickle with {codec}": CompressedSerializer(serializer="pickle", compressionlib=codec)
        for codec in _core.CODECS
    },
    "compressed/json with zstd level 19": CompressedSerializer(
        serializer="json", compressionlib="zstd", level=19
    ),
    "compressed/pickle with zlib level 9": CompressedSerializer(
        serializer="pickle", compressionlib="zlib", level=9
    ),
}


def test_every_built_in_serializer_type_is_measured():
    # Other tests register serializers of their own: only ferroflow's classes are built in.
    built_in = {
        name
        for name in known_serializer_types()
        if serializer_registry[name].__module__.startswith("ferroflow.serializers.")
    }
    assert built_in == {"pickle", "json", "compressed/pickle", "compressed/json", "compressed"}
    assert built_in <= set(BUILT_IN_SERIALIZERS)


@pytest.mark.parametrize("serializer", BUILT_IN_SERIALIZERS.values(), ids=BUILT_IN_SERIALIZERS)
def test_a_tiny_result_s_file_carries_at_most_256_bytes_beyond_its_payload(tmp_path, serializer):
    serializer = resolve_serializer(serializer)
    storage = LocalFileSystem(basepath=str(tmp_path))
    result = PersistedResult.create(TINY, storage=storage, serializer=serializer, cache_in_memory=False)
    path = tmp_path / result.storage_key
    header = read_blob_header(path)
    # The description is stored short (format 3.0) and read back whole: the writer's own.
    assert header["format_version"] == "3.0"
    assert json.loads(header["serializer"]) == serializer.to_description()
    assert path.stat().st_size - header["stored_length"] <= 256, (path.stat().st_size, header)
    assert result.get() == TINY
    assert read_result(path, serializer=serializer.type) == TINY


@pytest.mark.parametrize("codec", _core.CODECS)
@pytest.mark.parametrize("inner", ["pickle", "json"])
def test_compression_that_would_grow_a_tiny_result_is_skipped_and_the_header_says_so(tmp_path, codec, inner):
    serializer = CompressedSerializer(serializer=inner, compressionlib=codec)
    storage = LocalFileSystem(basepath=str(tmp_path))
    tiny = PersistedResult.create(TINY, storage=storage, serializer=serializer, cache_in_memory=False)
    header = read_blob_header(tmp_path / tiny.storage_key)
    assert (header["codec"], header["codec_skipped"]) == ("none", codec)
    assert header["stored_length"] == header["raw_length"] == len(serializer.serializer.dumps(TINY))
    assert tiny.get() == TINY
    compressible = {"text": "abc" * 300}
    small = PersistedResult.create(
        compressible, storage=storage, serializer=serializer, cache_in_memory=False
    )
    header = read_blob_header(tmp_path / small.storage_key)
    assert (header["codec"], header["codec_skipped"], header["format_version"]) == (codec, None, "3.0")
    assert header["stored_length"] < header["raw_length"]
    assert small.get() == compressible


@pytest.mark.parametrize("inner", ["pickle", "json"])
def test_a_python_compression_module_that_would_grow_a_tiny_result_is_skipped_and_the_header_says_so(
    tmp_path, inner
):
    serializer = CompressedSerializer(serializer=inner, compressionlib="gzip")
    storage = LocalFileSystem(basepath=str(tmp_path))
    uncompressed = serializer.serializer.dumps(TINY)
    assert len(gzip.compress(uncompressed)) > len(uncompressed)  # what skipping avoids
    tiny = PersistedResult.create(TINY, storage=storage, serializer=serializer, cache_in_memory=False)
    path = tmp_path / tiny.storage_key
    header = read_blob_header(path)
    # Described as written by the wrapped serializer, uncompressed: what its bytes are.
    assert json.loads(header["serializer"]) == serializer.serializer.to_description()
    assert header["codec"] == "none"
    assert header["stored_length"] == header["raw_length"] == len(uncompressed)
    assert tiny.serializer_type == serializer.type  # the result keeps the type it was written with
    assert tiny.get() == TINY
    assert read_result(path, serializer=serializer.type) == TINY
    assert read_result(path) == TINY
    assert result_from_reference(tiny.to_reference()).get() == TINY
    assert tiny.to_blob().load(expected_type=serializer.type) == TINY


def test_a_compressible_result_is_still_compressed_by_a_python_compression_module(tmp_path):
    serializer = CompressedSerializer(serializer="pickle", compressionlib="gzip")
    storage = LocalFileSystem(basepath=str(tmp_path))
    large = {"text": "abc" * 30000}
    result = PersistedResult.create(large, storage=storage, serializer=serializer, cache_in_memory=False)
    header = read_blob_header(tmp_path / result.storage_key)
    assert json.loads(header["serializer"]) == serializer.to_description()
    assert header["codec"] == "none"  # gzip ran in Python, on the one segment
    assert header["stored_length"] < len(serializer.serializer.dumps(large)) // 10
    stored = _core.load_blob(str(tmp_path / result.storage_key), 1 << 30)[1][0]
    assert pickle.loads(gzip.decompress(stored)) == large
    assert result.get() == large


def test_a_compressed_json_result_is_never_read_from_a_file_described_as_pickle(tmp_path):
    storage = LocalFileSystem(basepath=str(tmp_path))
    written = PersistedResult.create(TINY, storage=storage, serializer="pickle", cache_in_memory=False)
    for expected in ("compressed/json", "json"):
        reader = PersistedResult(
            storage=storage, storage_key=written.storage_key, serializer_type=expected, cache_in_memory=False
        )
        with pytest.raises(CorruptResultError, match="says it was written by the 'pickle' serializer"):
            reader.get()
    reader = PersistedResult(
        storage=storage,
        storage_key=written.storage_key,
        serializer_type="compressed/pickle",
        cache_in_memory=False,
    )
    assert reader.get() == TINY


EARLIER_FILES = Path(__file__).parent / "data" / "blobs"
EARLIER_MANIFEST = json.loads((EARLIER_FILES / "manifest.json").read_text())
EARLIER_VALUES = {
    "tiny": TINY,
    "small": {"text": "abc" * 300},
    "large": {"text": "abc" * 3000, "noise": random.Random(16).randbytes(6000)},
}


@pytest.mark.parametrize("name", EARLIER_MANIFEST["files"])
def test_result_files_written_by_ferroflow_0_1_0_still_read(name):
    written = EARLIER_MANIFEST["files"][name]
    assert EARLIER_MANIFEST["values"][written["value"]]  # the manifest says how each value was made
    header = read_blob_header(EARLIER_FILES / name)
    assert header["format_version"] == written["format_version"] in ("1.1", "2.0")
    assert (header["codec"], header["codec_skipped"]) == (written["codec"], written["codec_skipped"])
    expected = EARLIER_VALUES[written["value"]]
    assert read_result(EARLIER_FILES / name, serializer=written["serializer"]) == expected
    result = PersistedResult(
        storage=LocalFileSystem(basepath=str(EARLIER_FILES)),
        storage_key=name,
        serializer_type=written["serializer"],
        cache_in_memory=False,
    )
    assert result.get() == expected


def test_earlier_files_cover_both_earlier_formats_and_every_built_in_type():
    files = EARLIER_MANIFEST["files"].values()
    assert {f["format_version"] for f in files} == {"1.1", "2.0"}
    assert {f["serializer"] for f in files} == {"pickle", "json", "compressed/pickle", "compressed/json"}


# --- when to persist (the factory's rules) ---------------------------------------------------------


class Definition:
    """A stand-in for a flow or task: the factory reads only these attributes."""

    def __init__(self, name="thing", **options):
        self.name = name
        self.persist_result = options.pop("persist_result", None)
        self.cache_result_in_memory = options.pop("cache_result_in_memory", True)
        self.cache_key_fn = options.pop("cache_key_fn", None)
        self.retries = options.pop("retries", 0)
        self.result_storage = options.pop("result_storage", None)
        self.result_serializer = options.pop("result_serializer", None)
        assert not options


def test_persistence_is_off_by_default():
    assert ResultFactory.from_task(Definition()).persist_result is False
    assert ResultFactory.from_flow(Definition()).persist_result is False


def test_a_cache_key_function_turns_persistence_on():
    assert ResultFactory.from_task(Definition(cache_key_fn=lambda c, p: "k")).persist_result is True


def test_dropping_the_result_from_memory_turns_persistence_on():
    assert ResultFactory.from_task(Definition(cache_result_in_memory=False)).persist_result is True


def test_flow_retries_persist_tasks_and_subflows_but_not_the_flow_itself():
    flow_factory = ResultFactory.from_flow(Definition(retries=2))
    assert flow_factory.persist_result is False
    assert ResultFactory.from_task(Definition(), flow_factory).persist_result is True
    assert ResultFactory.from_flow(Definition(), flow_factory).persist_result is True


def test_persist_by_default_setting_turns_it_on_but_false_still_wins():
    with temporary_settings(results_persist_by_default=True):
        assert ResultFactory.from_task(Definition()).persist_result is True
        assert ResultFactory.from_task(Definition(persist_result=False)).persist_result is False


def test_persist_false_with_a_cache_key_is_an_error_naming_task_and_feature():
    with pytest.raises(PersistenceConfigurationError, match=r"task 'fetch'.*cache_key_fn"):
        ResultFactory.from_task(Definition("fetch", persist_result=False, cache_key_fn=lambda c, p: "k"))


def test_persist_false_under_a_retried_flow_is_an_error_naming_the_flow():
    flow_factory = ResultFactory.from_flow(Definition("pipeline", retries=1))
    with pytest.raises(PersistenceConfigurationError, match=r"task 'load'.*flow 'pipeline' has retries=1"):
        ResultFactory.from_task(Definition("load", persist_result=False), flow_factory)


def test_persist_false_with_no_memory_cache_is_allowed_and_loses_the_result():
    factory = ResultFactory.from_task(Definition(persist_result=False, cache_result_in_memory=False))
    with pytest.raises(MissingResult):
        factory.create_result("big").get()


def test_tasks_inherit_the_flow_storage_and_serializer(tmp_path):
    flow_factory = ResultFactory.from_flow(
        Definition(result_storage=LocalFileSystem(basepath=str(tmp_path)), result_serializer="json")
    )
    task_factory = ResultFactory.from_task(Definition(persist_result=True), flow_factory)
    result = task_factory.create_result({"v": 1})
    assert isinstance(result, PersistedResult)
    assert result.serializer_type == "json"
    assert (tmp_path / result.storage_key).is_file()


def test_a_task_storage_overrides_the_flow_storage(tmp_path):
    flow_factory = ResultFactory.from_flow(
        Definition(result_storage=LocalFileSystem(basepath=str(tmp_path / "flow")))
    )
    task_factory = ResultFactory.from_task(
        Definition(persist_result=True, result_storage=LocalFileSystem(basepath=str(tmp_path / "task"))),
        flow_factory,
    )
    result = task_factory.create_result("x")
    assert (tmp_path / "task" / result.storage_key).is_file()


def test_without_any_storage_results_go_to_the_local_storage_path(storage_path):
    result = ResultFactory.from_task(Definition(persist_result=True)).create_result("x")
    assert (storage_path / result.storage_key).is_file()


def test_default_serializer_comes_from_the_setting(storage_path):
    with temporary_settings(results_default_serializer="compressed/json"):
        result = ResultFactory.from_task(Definition(persist_result=True)).create_result({"a": 1})
    assert result.serializer_type == "compressed/json"
    header = _core.read_header(storage_path / result.storage_key)
    assert json.loads(header.serializer)["type"] == "compressed/json"


# --- a saved storage is read when the run starts ---------------------------------------------------


def damage_saved_storage(home: Path, tmp_path: Path) -> Path:
    LocalFileSystem(basepath=str(tmp_path / "saved")).save("dev")
    path = home / "storages" / "local-file-system" / "dev.json"
    path.write_text('{"basepath": ')
    return path


def test_a_damaged_saved_storage_fails_a_task_before_its_function_runs(isolated_home, tmp_path):
    from ferroflow import flow, task
    from ferroflow.exceptions import StorageNotFoundError

    path = damage_saved_storage(isolated_home, tmp_path)
    ran = []

    @task(result_storage="local-file-system/dev", persist_result=True)
    def expensive():
        ran.append(1)
        return [1, 2]

    @flow
    def pipeline():
        return expensive(return_state=True)

    state = pipeline(return_state=True)
    assert state.is_failed() and ran == []
    with pytest.raises(
        StorageNotFoundError, match=f"cannot be used: it is not valid JSON .*Its file is {path}"
    ):
        state.result()


def test_a_damaged_default_storage_block_fails_a_flow_before_it_runs(isolated_home, tmp_path):
    from ferroflow import flow
    from ferroflow.exceptions import StorageNotFoundError

    path = damage_saved_storage(isolated_home, tmp_path)
    ran = []

    @flow(persist_result=True)
    def pipeline():
        ran.append(1)
        return [1]

    with temporary_settings(default_result_storage_block="local-file-system/dev"):
        with pytest.raises(StorageNotFoundError, match=f"Its file is {path}"):
            pipeline()
    assert ran == []


def test_a_run_that_persists_nothing_does_not_read_its_saved_storage(isolated_home, tmp_path):
    damage_saved_storage(isolated_home, tmp_path)
    factory = ResultFactory.from_task(
        Definition(persist_result=False, result_storage="local-file-system/dev")
    )
    assert factory.create_result("in memory").get() == "in memory"


# --- damaged JSON result documents are CorruptResultError ------------------------------------------

JSON_DOCUMENT = PersistedResultBlob(
    serializer=JSONSerializer().to_description(), data=b'{"a": [1, 2]}'
).to_json()

DAMAGED_DOCUMENTS = {
    "truncated": ('{"serializer": {"type": "json"}, "da', "is not valid JSON"),
    "not UTF-8": (b'{"serializer": \xff}', "is not valid JSON"),
    "nested beyond reason": ("{" + '"a":[' * 50_000, "is not valid JSON"),
    "no data": ('{"serializer": {"type": "json"}}', "has no 'data' field"),
    "no serializer": ('{"data": "e30="}', "has no 'serializer' field"),
    "serializer is text": (
        '{"serializer": "json", "data": "e30="}',
        "its 'serializer' is 'json', not an object",
    ),
    "serializer without type": (
        '{"serializer": {"jsonlib": "json"}, "data": "e30="}',
        "not an object with a 'type'",
    ),
    "type is a number": ('{"serializer": {"type": 7}, "data": "e30="}', "not an object with a 'type'"),
    "data is a number": ('{"serializer": {"type": "json"}, "data": 3}', "its 'data' is a JSON int"),
    "data is null": (
        '{"serializer": {"type": "json"}, "data": null, "prefect_version": "2.7"}',
        "its 'data' is a JSON NoneType",
    ),
    "data not base64": ('{"serializer": {"type": "json"}, "data": "e30"}', "not base64"),
    "prefect 2 without data": (
        '{"serializer": {"type": "pickle"}, "prefect_version": "2.7.12"}',
        "has no 'data' field",
    ),
}


@pytest.mark.parametrize("document, problem", DAMAGED_DOCUMENTS.values(), ids=DAMAGED_DOCUMENTS)
def test_a_damaged_result_document_is_corrupt_and_named(tmp_path, document, problem):
    path = tmp_path / "result.json"
    path.write_bytes(document if isinstance(document, bytes) else document.encode())
    with pytest.raises(CorruptResultError, match=f"{re.escape(str(path))}.*{problem}"):
        read_result(path)
    if "base64" not in problem:  # the data is decoded only when the value is read
        with pytest.raises(CorruptResultError):
            read_result_document(path)
        assert not is_result_file(path)


def test_from_json_of_a_damaged_document_is_corrupt():
    with pytest.raises(
        CorruptResultError, match="The JSON text is not a result document: it has no 'data' field"
    ):
        PersistedResultBlob.from_json('{"serializer": {"type": "json"}}')
    assert PersistedResultBlob.from_json(JSON_DOCUMENT).load() == {"a": [1, 2]}


def _mutated_documents():
    """Result documents (ferroflow's and Prefect 2's JSON one) with bytes flipped, cut short or
    replaced, or with a field swapped for another JSON value. Pickle samples get structural
    changes only: flipping a pickle's bytes would run arbitrary opcodes."""
    samples = [JSON_DOCUMENT.encode(), (COMPAT / "json.json").read_bytes()]
    pickles = [(COMPAT / "pickle.json").read_bytes(), (COMPAT / "compressed_pickle.json").read_bytes()]
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
        ),
        max_leaves=6,
    )

    @st.composite
    def flipped(draw):
        data = bytearray(draw(st.sampled_from(samples)))
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)

    @st.composite
    def cut(draw):
        data = draw(st.sampled_from(samples + pickles))
        return data[: draw(st.integers(1, len(data) - 1))]

    @st.composite
    def swapped_field(draw):
        fields = json.loads(draw(st.sampled_from(samples + pickles)))
        path = draw(
            st.sampled_from(
                [
                    ("serializer",),
                    ("data",),
                    ("serializer", "type"),
                    ("serializer", "jsonlib"),
                    ("serializer", "object_decoder"),
                    ("serializer", "serializer"),
                ]
            )
        )
        target = fields
        for name in path[:-1]:
            target = target[name]
        if draw(st.booleans()):
            target[path[-1]] = draw(json_values)
        else:
            target.pop(path[-1], None)
        return json.dumps(fields).encode()

    return st.one_of(flipped(), cut(), swapped_field())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=_mutated_documents())
def test_any_damage_to_a_result_document_is_a_ferroflow_error(tmp_path, document):
    path = tmp_path / "result.json"
    path.write_bytes(document)
    try:
        read_result(path)
    except (CorruptResultError, SerializationError):
        pass  # the document is damaged, or its data does not load with its serializer


def test_a_result_file_moved_under_another_key_is_refused_and_a_cached_task_recomputes(tmp_path):
    from ferroflow import flow, task
    from ferroflow.exceptions import CorruptResultError
    from ferroflow.tasks import CachedResultUnavailableWarning

    calls = []
    storage = LocalFileSystem(basepath=str(tmp_path))

    @task(cache_key_fn=lambda context, parameters: f"square-{parameters['x']}", result_storage=storage)
    def square(x):
        calls.append(x)
        return x * x

    @flow
    def run(x):
        return square(x, return_state=True)

    two, three = run(2), run(3)
    # Someone copies the result of square(2) over that of square(3): a cache hit for 3 would
    # now return 4.
    Path(storage.path_of(three.data.storage_key)).write_bytes(
        Path(storage.path_of(two.data.storage_key)).read_bytes()
    )
    moved = PersistedResult.from_reference(three.data.to_reference(), cache_in_memory=False)
    with pytest.raises(CorruptResultError, match="copied or moved"):
        moved.get()
    with pytest.warns(CachedResultUnavailableWarning, match="copied or moved"):
        again = run(3)
    assert again.name == "Completed" and again.result() == 9
    assert calls == [2, 3, 3]


def test_a_fifo_at_a_cached_results_path_is_recomputed_not_waited_on(tmp_path):
    import os
    import threading

    from ferroflow import flow, task
    from ferroflow.tasks import CachedResultUnavailableWarning

    storage = LocalFileSystem(basepath=str(tmp_path))

    @task(cache_key_fn=lambda: "fixed", result_storage=storage)
    def value():
        return [1, 2, 3]

    @flow
    def run():
        return value(return_state=True)

    first = run()
    path = storage.path_of(first.data.storage_key)
    os.unlink(path)
    os.mkfifo(path)
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(run()), daemon=True)
    with pytest.warns(CachedResultUnavailableWarning, match="FIFO"):
        thread.start()
        thread.join(timeout=60)
    if thread.is_alive():
        open(path, "wb").close()
        pytest.fail("the flow blocked on a FIFO at the result's path")
    assert outcome[0].result() == [1, 2, 3]
