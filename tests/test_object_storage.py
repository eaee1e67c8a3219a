"""Results on object storage (`S3`, `RemoteFileSystem`), against moto's S3 server started on
loopback by the `s3_server` fixture; GCS and Azure go through the same core code and are tested
with the core's in-memory store (no server for them runs here)."""

import datetime
import os
import pickle
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from ferroflow import _core, flow, task
from ferroflow.exceptions import (
    BucketNotFoundError,
    CorruptResultError,
    MissingResult,
    StoragePermissionError,
    StorageUnavailableError,
    UnsafeKeyError,
    UntrustedResultError,
)
from ferroflow.filesystems import S3, RemoteFileSystem, WritableFileSystem, resolve_storage
from ferroflow.results import PersistedResult, ResultRef
from ferroflow.results.cache_locks import try_acquire
from ferroflow.results.cache_records import (
    CacheRecord,
    cached_reference,
    delete_record,
    record_storage_for,
    remembered_reference,
    write_record,
)
from ferroflow.serializers import PickleSerializer
from ferroflow.settings import temporary_settings
from other_homes import run_in_home
from s3_servers import Relay, start_moto

MIB = 1024 * 1024
SECRET = "test-secret-key"


def keys_in(server, bucket, prefix=""):
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(entry["Key"] for page in pages for entry in page.get("Contents", []))


def write_value(storage, key, value):
    return PersistedResult._write(
        value, storage=storage, serializer=PickleSerializer(), storage_key=key, cache_in_memory=False
    )


# -- the storage ---------------------------------------------------------------------------------


def test_a_64_mib_result_round_trips_as_a_multipart_upload(s3_env):
    # The threshold of a cloud endpoint: to the loopback (http://) server, results up to 1 GiB
    # would go in one PUT.
    storage = S3(bucket_path="results/multipart", multipart_threshold=64 * MIB)
    array = np.arange(64 * MIB // 8, dtype=np.int64)
    result = write_value(storage, "big", array)

    head = s3_env.client().head_object(Bucket="results", Key="multipart/big")
    assert head["ContentLength"] > 64 * MIB
    assert head["ETag"].strip('"').endswith("-9")  # 8 MiB parts: a multipart upload's ETag
    np.testing.assert_array_equal(result.get(), array)


@pytest.mark.parametrize(
    "value",
    [os.urandom(20 * MIB), np.arange(20 * MIB // 8, dtype=np.float64)],
    ids=["bytes", "array"],
)
def test_results_are_read_as_concurrent_ranged_gets(s3_env, value):
    # A cloud endpoint's reads: 8 MiB ranges, 4 in flight, each only of the same object
    # (If-Match), the largest segment received into the object it becomes. The loopback server
    # answers real range requests, so this is the path an https:// endpoint takes.
    write_value(S3(bucket_path="results/ranged"), "value", value)
    relay = Relay(int(s3_env.endpoint.rsplit(":", 1)[1]))
    try:
        storage = S3(bucket_path="results/ranged", endpoint_url=relay.endpoint, reads_in_flight=4)
        read = PersistedResult(
            storage=storage, storage_key="value", serializer_type="pickle", cache_in_memory=False
        )
        got = read.get()
    finally:
        relay.cut()

    if isinstance(value, bytes):
        assert got == value
    else:
        np.testing.assert_array_equal(got, value)
    ranges = [get.lower() for get in relay.gets if "range: bytes=" in get.lower()]
    assert len(ranges) == 3  # 20 MiB and a header in 8 MiB ranges
    assert all("if-match:" in get for get in ranges[1:])  # the first learns the object's tag


def test_a_header_is_read_without_the_payload(s3_env):
    storage = S3(bucket_path="results/header")
    write_value(storage, "big", b"x" * (16 * MIB))
    relay = Relay(int(s3_env.endpoint.rsplit(":", 1)[1]))
    try:
        through_relay = S3(bucket_path="results/header", endpoint_url=relay.endpoint)
        header = through_relay.read_header("big")
    finally:
        relay.cut()
    assert header.raw_length > 16 * MIB
    assert relay.returned < 256 * 1024  # one ranged GET of the first 64 KiB


def test_a_create_only_put_does_not_replace_an_object(s3_env):
    storage = S3(bucket_path="results/locks")
    assert storage.put_if_absent("lock", b"first") is True
    assert storage.put_if_absent("lock", b"second") is False
    assert storage.read_path("lock") == b"first"


def test_small_objects_and_listing(s3_env):
    storage = RemoteFileSystem(basepath="s3://results/listing")
    storage.write_path("a/one", [b"he", b"llo"])
    storage.write_path("a/two", b"x" * 10)
    storage.write_path("b", b"")
    assert storage.read_path("b") == b""  # no first byte to range over: read whole
    assert [(info.key, info.size) for info in storage.list_objects("a")] == [("a/one", 5), ("a/two", 10)]
    assert [info.key for info in storage.list_objects()] == ["a/one", "a/two", "b"]
    storage.delete("a/one")
    assert not storage.exists("a/one") and storage.exists("a/two")
    with pytest.raises(FileNotFoundError, match="s3://results/listing/a/one"):
        storage.delete("a/one", missing_ok=False)
    with pytest.raises(FileNotFoundError):
        storage.read_path("a/one")
    with pytest.raises(UnsafeKeyError):
        storage.write_path("../escape", b"x")


def test_a_missing_bucket_is_named(s3_env):
    storage = S3(bucket_path="no-such-bucket/prefix")
    with pytest.raises(BucketNotFoundError, match='"no-such-bucket".*create it'):
        storage.write_path("key", b"data")
    with pytest.raises(BucketNotFoundError, match="no-such-bucket"):
        storage.check()


@pytest.fixture(scope="module")
def s3_server_checking_credentials(tmp_path_factory):
    """A second moto server that, unlike the shared one, checks credentials against its own
    (empty) IAM: every access key is unknown to it."""
    server = start_moto(tmp_path_factory.mktemp("moto-auth"), env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    yield server
    server.stop()


def test_refused_credentials_say_what_to_check_without_the_secret(s3_env, s3_server_checking_credentials):
    storage = S3(
        bucket_path="results",
        endpoint_url=s3_server_checking_credentials.endpoint,
        aws_access_key_id="AKIDUNKNOWN",
        aws_secret_access_key="very-secret-value",
    )
    with pytest.raises(StoragePermissionError) as raised:
        storage.write_path("key", b"data")
    message = str(raised.value)
    assert "AWS_ACCESS_KEY_ID" in message and "refused the credentials" in message
    assert "very-secret-value" not in message and "very-secret-value" not in repr(storage)


def test_an_unreachable_endpoint_fails_in_bounded_time(s3_env):
    from s3_servers import free_port

    storage = S3(bucket_path="results", endpoint_url=f"http://127.0.0.1:{free_port()}", retry_timeout=2.0)
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError, match="could not connect"):
        storage.write_path("key", b"data")
    assert time.monotonic() - started < 10


# -- flows ---------------------------------------------------------------------------------------


def test_a_flow_checks_its_storage_before_any_task_runs(s3_env):
    ran = []

    @task
    def work():
        ran.append(1)
        return "done"

    @flow(result_storage=S3(bucket_path="no-such-bucket"), persist_result=True)
    def pipeline():
        return work()

    with pytest.raises(BucketNotFoundError, match="no-such-bucket"):
        pipeline()
    assert ran == []


def test_the_endpoint_going_down_mid_flow(s3_env):
    """The relay in front of the server is cut while the second task's 32 MiB result uploads:
    the flow fails in bounded time with a clear error, and no object (complete or partial) is
    left under its key."""
    relay = Relay(int(s3_env.endpoint.rsplit(":", 1)[1]))
    storage = S3(bucket_path="results/down", endpoint_url=relay.endpoint, retry_timeout=2.0, max_retries=1)

    @task(result_storage_key="first", persist_result=True)
    def first():
        return b"a" * 1000

    @task(result_storage_key="second", persist_result=True)
    def second():
        relay.cut_after_bytes = relay.forwarded + 12 * MIB
        return os.urandom(32 * MIB)

    @flow(result_storage=storage, persist_result=True)
    def pipeline():
        first()
        return second()

    started = time.monotonic()
    with pytest.raises(StorageUnavailableError, match="results"):
        pipeline()
    assert time.monotonic() - started < 30
    assert relay.is_cut
    # The parts that reached the server belong to an upload that was never completed: no object.
    # (An abort cannot reach a server that is down; a lifecycle rule removes such parts.)
    assert keys_in(s3_env, "results", "down/") == ["down/first"]


def test_persistence_caching_and_memory_options_work_on_s3(s3_env):
    calls = []

    @task(cache_key_fn=lambda context, parameters: f"square-{parameters['x']}", cache_result_in_memory=False)
    def square(x):
        calls.append(x)
        return x * x

    @flow(result_storage=S3(bucket_path="results/cache"), persist_result=True)
    def pipeline(x):
        return square(x, return_state=True)

    first = pipeline(3)
    second = pipeline(3)
    assert first.result() == second.result() == 9
    assert calls == [3]
    assert second.is_completed() and second.name == "Cached"
    assert not first.data.has_cached_object()  # cache_result_in_memory=False: read from S3
    assert first.data.storage_key in [
        key.removeprefix("cache/") for key in keys_in(s3_env, "results", "cache/")
    ]


def test_flow_retries_reuse_results_stored_on_s3(s3_env):
    calls = []
    attempts = []

    @task
    def expensive():
        calls.append(1)
        return np.ones(1000)

    @flow(result_storage=S3(bucket_path="results/retries"), retries=1)
    def pipeline():
        values = expensive()
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails after the task")
        return float(values.sum())

    assert pipeline() == 1000.0
    assert calls == [1]


def test_a_result_is_read_back_in_another_process(s3_env, tmp_path):
    @flow(result_storage=S3(bucket_path="results/shared"), persist_result=True)
    def produce():
        return {"rows": list(range(10))}

    state = produce(return_state=True)
    (tmp_path / "result.pickle").write_bytes(pickle.dumps(state.data))
    script = "import pickle, sys; print(pickle.loads(open(sys.argv[1], 'rb').read()).get()['rows'][-1])"
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "result.pickle")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "9"


def test_a_deleted_object_is_a_missing_result(s3_env):
    storage = S3(bucket_path="results/gone")
    result = write_value(storage, "value", [1, 2, 3])
    storage.delete("value")
    with pytest.raises(MissingResult, match="missing"):
        result.get()


async def test_async_code_awaits_the_storage_calls(s3_env):
    storage = S3(bucket_path="results/async")
    await storage.write_path("key", b"async bytes")
    assert await storage.read_path("key") == b"async bytes"


# -- configuration -------------------------------------------------------------------------------


def test_a_saved_s3_storage_is_used_by_slug_and_keeps_its_secrets(s3_env, isolated_home):
    storage = S3(
        bucket_path="results/saved", aws_access_key_id="test-access-key", aws_secret_access_key=SECRET
    )
    assert storage.save("dev") == "s3/dev"
    saved = next((isolated_home / "storages" / "s3").glob("dev.json"))
    assert SECRET in saved.read_text()
    assert oct(saved.stat().st_mode & 0o777) == oct(0o600)

    loaded = resolve_storage("s3/dev")
    assert loaded == storage
    assert SECRET not in repr(loaded) and SECRET not in str(loaded.to_description())
    # A description names the saved storage, so a reader elsewhere gets the secrets from it.
    assert WritableFileSystem.from_description(loaded.to_description()) == storage

    @flow(result_storage="s3/dev", persist_result=True)
    def pipeline():
        return "on the bucket"

    state = pipeline(return_state=True)
    assert state.result() == "on the bucket"
    assert keys_in(s3_env, "results", "saved/") == [f"saved/{state.data.storage_key}"]


def test_remote_file_system_takes_fsspec_settings(s3_env, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name)
    storage = RemoteFileSystem(
        basepath="s3://results/fsspec",
        settings={
            "key": "test-access-key",
            "secret": SECRET,
            "client_kwargs": {"endpoint_url": s3_env.endpoint},
        },
    )
    assert SECRET not in repr(storage) and SECRET not in str(storage.to_description())
    storage.write_path("k", b"v")
    assert keys_in(s3_env, "results", "fsspec/") == ["fsspec/k"]


def test_credentials_come_from_the_aws_profile_files(s3_env, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_REGION")
    (tmp_path / "credentials").write_text(
        "[work]\naws_access_key_id = AKWORK\naws_secret_access_key = SKWORK\n"
    )
    (tmp_path / "config").write_text("[profile work]\nregion = eu-west-3\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "work")
    options = dict(S3(bucket_path="results")._store_options())
    assert options == {
        "aws_access_key_id": "AKWORK",
        "aws_secret_access_key": "SKWORK",
        "aws_region": "eu-west-3",
    }
    S3(bucket_path="results/profile").write_path("k", b"v")  # moto takes any key
    monkeypatch.delenv("AWS_PROFILE")
    assert keys_in(s3_env, "results", "profile/") == ["profile/k"]


def test_in_memory_stores_stand_in_for_gcs_and_azure():
    storage = RemoteFileSystem(basepath="memory://shared/results")
    result = write_value(storage, "value", np.arange(10))
    np.testing.assert_array_equal(result.get(), np.arange(10))
    assert RemoteFileSystem(basepath="memory://shared/results").exists("value")
    assert storage.read_header("value").raw_length > 0


@pytest.mark.parametrize("basepath", ["gs://bucket/prefix", "az://container/prefix"])
def test_gcs_and_azure_urls_open_stores(basepath, monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "account")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "a2V5")
    monkeypatch.setenv("GOOGLE_SKIP_SIGNATURE", "true")
    storage = RemoteFileSystem(basepath=basepath)
    assert storage.store.kind == ("gcs" if basepath.startswith("gs") else "azure")
    assert storage.url_of("key") == f"{basepath}/key"


@pytest.mark.parametrize("basepath", ["/local/path", "s3://", "ftp://host/x"])
def test_remote_file_system_refuses_what_is_no_object_store_url(basepath):
    with pytest.raises(ValueError, match="object store URL"):
        RemoteFileSystem(basepath=basepath)


def test_the_gil_is_released_during_network_calls(s3_env):
    """A thread keeps counting while a 32 MiB upload runs."""
    storage = S3(bucket_path="results/gil")
    counted = []
    done = threading.Event()

    def count():
        while not done.is_set():
            counted.append(1)
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        storage.write_path("big", os.urandom(32 * MIB))
    finally:
        done.set()
        counter.join()
    assert len(counted) > 5


# -- cache records and locks kept in the bucket ----------------------------------------------------

SHARED_CACHE_SCRIPT = """
import sys
from ferroflow import flow, task
from ferroflow.filesystems import S3
from ferroflow.tasks import task_input_hash

@task(cache_key_fn=task_input_hash, result_storage=S3(bucket_path=sys.argv[1]), persist_result=True)
def double(x):
    return x * 2

@flow
def run(x):
    return double(x, return_state=True)

state = run(21)
print(state.name, state.result())
"""


def test_two_homes_sharing_a_bucket_share_cache_hits(s3_env, tmp_path):
    # Two "machines" with their own run stores find each other's cache records in the bucket.
    script = tmp_path / "cached_on_s3.py"
    script.write_text(SHARED_CACHE_SCRIPT)
    outputs = []
    for machine in ("machine-a", "machine-b"):
        outputs.append(run_in_home(tmp_path / machine, script, "results/shared-cache"))
    assert outputs == ["Completed 42", "Cached 42"]
    records = keys_in(s3_env, "results", "shared-cache/.ferroflow-cache/records/")
    assert len(records) == 1


def test_cache_records_and_locks_on_a_bucket(s3_env):
    records = record_storage_for(S3(bucket_path="results/records"))
    assert records.create_only(".ferroflow-cache/records/k", b"first") is True
    assert records.create_only(".ferroflow-cache/records/k", b"second") is False
    assert records.read(".ferroflow-cache/records/k") == b"first"
    records.replace(".ferroflow-cache/records/k", b"third")
    assert records.read(".ferroflow-cache/records/k") == b"third"
    assert list(records.list_keys(".ferroflow-cache/records/")) == [".ferroflow-cache/records/k"]
    assert records.delete(".ferroflow-cache/records/k") is True
    assert records.delete(".ferroflow-cache/records/k") is False
    assert records.read(".ferroflow-cache/records/k") is None

    held = try_acquire(records, "cache-key", lease_seconds=60)
    assert held is not None
    assert try_acquire(records, "cache-key", lease_seconds=60) is None  # SERIALIZABLE: one holder
    held.release()
    again = try_acquire(records, "cache-key", lease_seconds=60)
    assert again is not None
    again.release()


# -- signed results and read checks --------------------------------------------------------------


def test_results_on_s3_are_signed_and_read_with_the_read_checks(s3_env):
    storage = S3(bucket_path="results/signed")
    with temporary_settings(results_signing_key="a long enough signing secret"):
        header = storage.write_blob("signed", [b"payload" * 1000], serializer_json="{}")
        assert header.signed_by == _core.SigningKey(b"a long enough signing secret").key_id
        assert storage.read_header("signed").signed_by == header.signed_by
        _, segments = storage.read_blob("signed")
        assert segments == [b"payload" * 1000]
    storage.write_blob("unsigned", [b"x"], serializer_json="{}")

    with temporary_settings(results_require_signature=True):
        # Signed by a key this reader does not have, and not signed at all: both refused.
        for key in ("signed", "unsigned"):
            with pytest.raises(UntrustedResultError):
                storage.read_blob(key)
            with pytest.raises(UntrustedResultError):
                storage.read_header(key)
    with temporary_settings(
        results_signing_key="a long enough signing secret", results_require_signature=True
    ):
        assert storage.read_header("signed").signed_by == header.signed_by

    # An object copied under another key is refused, as a moved file is.
    copied = S3(bucket_path="results/signed")
    copied.write_path("copy", storage.read_path("unsigned"))
    with pytest.raises(CorruptResultError, match='written under the key "unsigned", not "copy"'):
        copied.read_blob("copy")


def test_a_compressed_result_over_the_decompressed_bound_is_refused_on_s3(s3_env):
    storage = S3(bucket_path="results/bound")
    storage.write_blob("big", [bytes(1_000_000)], serializer_json="{}", codec="zstd")
    with temporary_settings(results_max_decompressed_size=1000):
        with pytest.raises(CorruptResultError, match="over the limit"):
            storage.read_header("big")
        with pytest.raises(CorruptResultError, match="over the limit"):
            storage.read_blob("big")


def test_records_remembered_on_a_bucket_are_kept_apart_by_endpoint(s3_env):
    here = record_storage_for(S3(bucket_path="results/remembered"))
    # A bucket of the same name on another server: what this process found here is not its.
    elsewhere = record_storage_for(S3(bucket_path="results/remembered", endpoint_url="http://127.0.0.1:9"))
    record = CacheRecord(
        key="remembered-key",
        result=ResultRef.persisted('{"type": "s3"}', "some-result", "pickle"),
        task_name="t",
        created=datetime.datetime.now(datetime.UTC),
    )
    assert write_record(here, record, replace_existing=True)
    assert remembered_reference(here, "remembered-key") == record.result
    assert remembered_reference(record_storage_for(S3(bucket_path="results/remembered")), "remembered-key")
    assert remembered_reference(elsewhere, "remembered-key") is None
    assert delete_record(here, "remembered-key")
    assert remembered_reference(here, "remembered-key") is None
    assert cached_reference(here, "remembered-key") is None
