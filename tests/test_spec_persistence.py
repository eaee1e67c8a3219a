"""The spec's "Persisting results" and "Caching of results in memory" examples, each with only the
import renamed, plus the checks that make them prove something (what reached storage)."""

from datetime import timedelta
from pathlib import Path

import pytest

from ferroflow.exceptions import MissingResult


def stored_files(root: Path) -> list[Path]:
    """The result files under `root` (the task cache's records live beside them, in
    `.ferroflow-cache`, and are not results)."""
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and ".ferroflow-cache" not in p.parts)


@pytest.fixture
def storage_path(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "storage"
    monkeypatch.setenv("FERROFLOW_LOCAL_STORAGE_PATH", str(path))
    return path


def test_flow_retries_persist_task_results(storage_path):
    from ferroflow import flow, task

    @task
    def my_task():
        return "hello world!"

    @flow(retries=2)
    def my_flow():
        # This task does not have persistence toggled off and it is needed for the flow feature,
        # so Prefect will persist its result at runtime
        my_task()

    my_flow()
    # The task's result, and only it (the flow's own result is None, a literal).
    assert len(stored_files(storage_path)) == 1


def test_task_with_cache_key_persists_and_the_other_task_does_not(storage_path):
    from ferroflow import flow, task

    @task(cache_key_fn=lambda: "always", cache_expiration=timedelta(seconds=20))
    def my_task():
        # This task uses caching so its result will be persisted by default
        return "hello world!"

    @task
    def my_other_task(): ...

    @flow
    def my_flow():
        # This task uses a feature that requires result persistence
        my_task()

        # This task does not use a feature that requires result persistence and the
        # flow does not use any features that require task result persistence so its
        # result will not be persisted by default
        my_other_task()

    my_flow()
    assert len(stored_files(storage_path)) == 1


def test_manual_persistence_toggles(storage_path):
    from ferroflow import flow, task

    @flow(persist_result=True)
    def my_flow():
        # This flow will persist its result even if not necessary for a feature.
        ...

    @task(persist_result=False)
    def my_task():
        # This task will never persist its result.
        # If persistence needed for a feature, an error will be raised.
        ...

    assert my_flow.persist_result is True
    assert my_task.persist_result is False

    @flow(persist_result=True)
    def returns_text():
        return "kept"

    returns_text()
    assert len(stored_files(storage_path)) == 1


def test_persist_false_where_a_feature_needs_it_raises(storage_path):
    from ferroflow import flow, task
    from ferroflow.exceptions import PersistenceConfigurationError

    @task(persist_result=False)
    def my_task():
        return 1

    @flow(retries=1)
    def my_flow():
        return my_task()

    with pytest.raises(PersistenceConfigurationError, match="my_task"):
        my_flow()


def test_result_storage_example(storage_path, s3_env):
    from ferroflow import flow, task
    from ferroflow.filesystems import S3, LocalFileSystem

    @flow(persist_result=True)
    def my_flow():
        my_task()  # This task will use the flow's result storage

    @task(persist_result=True)
    def my_task(): ...

    my_flow()  # The flow has no result storage configured and no parent, the local file system will be used.

    # Reconfigure the flow to use a different storage type
    new_flow = my_flow.with_options(result_storage=S3(bucket_path="my-bucket"))

    new_flow()  # The flow and task within it will use S3 for result storage.

    # Both return None, a literal kept in the state. A value that needs writing goes to the
    # bucket (on the S3 server the test started; only AWS_* variables configure it).
    @task(persist_result=True)
    def my_valued_task():
        return "needs storage"

    @flow(persist_result=True)
    def my_valued_flow():
        return my_valued_task()

    state = my_valued_flow.with_options(result_storage=S3(bucket_path="my-bucket"))(return_state=True)
    assert state.result() == "needs storage"
    stored = {entry["Key"] for entry in s3_env.client().list_objects_v2(Bucket="my-bucket")["Contents"]}
    assert state.data.storage_key in stored

    # A storage instance and a storage slug work in the same place.
    LocalFileSystem(basepath=str(storage_path.parent / "dev")).save("dev")

    @task(persist_result=True)
    def produce():
        return "to the saved storage"

    @flow(result_storage="local-file-system/dev")
    def slug_flow():
        return produce()

    assert slug_flow() == "to the saved storage"
    assert len(stored_files(storage_path.parent / "dev")) == 1


def test_result_serializer_and_compression_options(storage_path):
    from ferroflow import flow, task
    from ferroflow.serializers import CompressedSerializer, JSONSerializer

    @task(persist_result=True, result_serializer="compressed/json")
    def by_type_name():
        return {"a": 1}

    @task(persist_result=True, result_serializer=JSONSerializer(jsonlib="orjson"))
    def by_instance():
        return {"b": 2}

    @task(
        persist_result=True,
        result_serializer=CompressedSerializer(serializer="pickle", compressionlib="lzma"),
    )
    def compressed():
        return {"c": 3}

    @flow
    def my_flow():
        return by_type_name(), by_instance(), compressed()

    assert my_flow() == ({"a": 1}, {"b": 2}, {"c": 3})
    assert len(stored_files(storage_path)) == 3


def test_cache_result_in_memory_false_persists_and_reads_back(storage_path):
    from ferroflow import flow, task

    @flow(cache_result_in_memory=False)
    def foo():
        return "pretend this is large data"

    @task(cache_result_in_memory=False)
    def bar():
        return "pretend this is biiiig data"

    @flow
    def uses_bar():
        result = bar()
        state = bar(return_state=True)

        # The result will be retrieved from storage here
        assert state.result() == "pretend this is biiiig data"

        future = bar.submit()
        # The result will be retrieved from storage here
        assert future.result() == "pretend this is biiiig data"
        return result

    assert foo() == "pretend this is large data"
    assert uses_bar() == "pretend this is biiiig data"
    # foo's result and three results of bar.
    assert len(stored_files(storage_path)) == 4


def test_without_memory_cache_or_persistence_results_are_unavailable(storage_path):
    from ferroflow import flow, task

    @task(persist_result=False, cache_result_in_memory=False)
    def bar():
        return "pretend this is biiiig data"

    @flow
    def foo():
        # Raises an error
        with pytest.raises(MissingResult):
            bar()

        # This is oaky
        state = bar(return_state=True)

        # Raises an error
        with pytest.raises(MissingResult):
            state.result()

        # This is okay
        future = bar.submit()

        # Raises an error
        with pytest.raises(MissingResult):
            future.result()
        return True

    assert foo() is True
    assert stored_files(storage_path) == []
