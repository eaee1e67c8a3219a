"""Prefect 2's result constructors: `LiteralResult.create`, `UnpersistedResult.create`,
`PersistedResult.create`, and `has_cached_object()`."""

import pytest

from ferroflow.exceptions import MissingResult
from ferroflow.filesystems import LocalFileSystem
from ferroflow.results import LiteralResult, PersistedResult, UnpersistedResult
from ferroflow.serializers import JSONSerializer


@pytest.mark.parametrize("value", [None, True, False])
def test_literal_result_create(value):
    result = LiteralResult.create(value)
    assert result.get() is value
    assert result.has_cached_object()


def test_literal_result_create_refuses_other_values():
    with pytest.raises(TypeError):
        LiteralResult.create("not a literal")


def test_unpersisted_result_create():
    result = UnpersistedResult.create({"a": 1})
    assert result.get() == {"a": 1}
    assert result.has_cached_object()

    dropped = UnpersistedResult.create({"a": 1}, cache_object=False)
    assert not dropped.has_cached_object()
    with pytest.raises(MissingResult):
        dropped.get()


def test_persisted_result_create_with_prefect_2_s_arguments(tmp_path):
    storage = LocalFileSystem(basepath=tmp_path)
    result = PersistedResult.create(
        {"a": 1},
        storage_block_id=None,
        storage_block=storage,
        storage_key_fn=lambda: "my-result",
        serializer=JSONSerializer(),
        cache_object=False,
    )
    assert result.storage_key == "my-result"
    assert (tmp_path / "my-result").exists()
    assert not result.has_cached_object()
    assert result.get() == {"a": 1}
    assert not result.has_cached_object()  # cache_object=False: read again each time


def test_persisted_result_create_keeps_the_value_by_default(tmp_path):
    result = PersistedResult.create([1, 2], storage=LocalFileSystem(basepath=tmp_path), serializer="json")
    assert result.has_cached_object()
    reopened = PersistedResult(storage=result.storage, storage_key=result.storage_key, serializer_type="json")
    assert not reopened.has_cached_object()
    assert reopened.get() == [1, 2]
    assert reopened.has_cached_object()


def test_persisted_result_create_takes_a_saved_storage_s_slug(tmp_path):
    slug = LocalFileSystem(basepath=tmp_path).save("results")
    result = PersistedResult.create("value", storage=slug, serializer=None)
    assert result.storage == LocalFileSystem(basepath=tmp_path)
    assert result.get() == "value"


def test_persisted_result_create_needs_a_storage():
    with pytest.raises(TypeError, match="storage="):
        PersistedResult.create("value", serializer=JSONSerializer())
