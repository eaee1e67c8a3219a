"""Signed results (`ferroflow.result_trust`, the core's MAC): the settings that sign and verify,
refusal before anything is deserialized, key rotation, and what a cached task does with a result
it cannot trust."""

import json
import pickle
from pathlib import Path

import pytest

from ferroflow import _core, flow, task
from ferroflow.exceptions import CorruptResultError, InvalidSettingError, UntrustedResultError
from ferroflow.filesystems import LocalFileSystem
from ferroflow.result_trust import read_policy, signing_key
from ferroflow.results import PersistedResult, PersistedResultBlob, read_result
from ferroflow.settings import temporary_settings
from ferroflow.tasks import CachedResultUnavailableWarning, task_input_hash

KEY = "an old but long enough signing secret"
NEW_KEY = "the new signing secret, also long"


class Exploding:
    """Unpickling it fails the test: a refused result must never reach the deserializer."""

    def __reduce__(self):
        return (pytest.fail, ("the result was deserialized",))


def persisted(tmp_path, value, **settings):
    storage = LocalFileSystem(basepath=str(tmp_path))
    with temporary_settings(**settings):
        return PersistedResult.create(value, storage=storage, cache_in_memory=False)


def load(result, **settings):
    """A fresh reference (no value in memory) read with `settings`."""
    reopened = PersistedResult.from_reference(result.to_reference(), cache_in_memory=False)
    with temporary_settings(**settings):
        return reopened.get()


def test_a_signing_key_signs_every_blob_and_its_holder_reads_it(tmp_path):
    result = persisted(tmp_path, {"a": 1}, results_signing_key=KEY)
    header = result.storage.read_header(result.storage_key)
    assert header.signed_by == _core.SigningKey(KEY.encode()).key_id
    assert header.format_version == "1.1"
    assert header.key == result.storage_key
    assert load(result, results_signing_key=KEY, results_require_signature=True) == {"a": 1}


def test_a_key_file_signs_like_the_key(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    result = persisted(tmp_path / "store", [1, 2], results_signing_key_file=str(key_file))
    assert result.storage.read_header(result.storage_key).signed_by == signing_key_id(KEY)
    assert load(result, results_signing_key=KEY, results_require_signature=True) == [1, 2]


def signing_key_id(secret):
    return _core.SigningKey(secret.encode()).key_id


def test_unsigned_results_are_refused_before_deserializing_when_a_signature_is_required(tmp_path):
    result = persisted(tmp_path, Exploding())
    with pytest.raises(UntrustedResultError, match="not signed.*FERROFLOW_RESULTS_REQUIRE_SIGNATURE"):
        load(result, results_signing_key=KEY, results_require_signature=True)
    # The same file without the requirement is read (and here, deserialized).
    with pytest.raises(pytest.fail.Exception, match="deserialized"):
        load(result)


def test_a_result_signed_by_an_unknown_key_is_refused_naming_both_keys(tmp_path):
    result = persisted(tmp_path, Exploding(), results_signing_key=NEW_KEY)
    with pytest.raises(UntrustedResultError) as raised:
        load(result, results_signing_key=KEY, results_require_signature=True)
    assert signing_key_id(NEW_KEY) in str(raised.value)
    assert signing_key_id(KEY) in str(raised.value)
    assert "FERROFLOW_RESULTS_VERIFICATION_KEYS" in str(raised.value)


def test_keys_rotate_through_the_verification_keys(tmp_path):
    old = persisted(tmp_path, "old", results_signing_key=KEY)
    new = persisted(tmp_path, "new", results_signing_key=NEW_KEY)
    rotated = {
        "results_signing_key": NEW_KEY,
        "results_verification_keys": f"{KEY}, another key nobody uses",
        "results_require_signature": True,
    }
    assert load(old, **rotated) == "old"
    assert load(new, **rotated) == "new"
    assert read_policy_ids(rotated) == [
        signing_key_id(NEW_KEY),
        signing_key_id(KEY),
        signing_key_id("another key nobody uses"),
    ]


def read_policy_ids(settings):
    with temporary_settings(**settings):
        return read_policy().verification_key_ids


def forge_payload(path: Path, new_payload: bytes) -> None:
    """Replaces a one-segment uncompressed blob's payload by another of the same length, with a
    correct checksum: what someone who can write to the storage, but has no key, can do."""
    blob = bytearray(path.read_bytes())
    header, segments = _core.unframe_blob(bytes(blob))
    assert len(segments) == 1 and len(new_payload) == len(segments[0])
    start = bytes(blob).index(segments[0])
    blob[start : start + len(new_payload)] = new_payload
    checksum = bytes.fromhex(_core.hash_buffers([new_payload], "xxh3-64"))[::-1]
    blob[-8:] = checksum
    _core.unframe_blob(bytes(blob))  # integrity holds
    path.write_bytes(bytes(blob))


def test_a_signed_result_whose_payload_was_changed_is_refused_even_when_not_required(tmp_path):
    result = persisted(tmp_path, "a" * 40, results_signing_key=KEY)
    path = Path(result.storage.path_of(result.storage_key))
    [stored] = _core.read_blob(path)[1]
    forge_payload(path, stored.replace(b"a" * 40, b"b" * 40))
    assert load(result) == "b" * 40  # without the key, the forgery passes every checksum
    with pytest.raises(UntrustedResultError, match="does not match its content"):
        load(result, results_signing_key=KEY)
    assert issubclass(UntrustedResultError, CorruptResultError)


def test_a_header_swapped_for_another_serializer_is_refused(tmp_path):
    # The attack signatures stop: a file whose header names another deserializer.
    result = persisted(tmp_path, {"x": 1}, results_signing_key=KEY)
    path = Path(result.storage.path_of(result.storage_key))
    blob = path.read_bytes()
    swapped = blob.replace(b'"type":"pickle"', b'"type":"json!!"')
    assert swapped != blob
    body_end = 16 + int.from_bytes(blob[12:16], "little")
    checksum = bytes.fromhex(_core.hash_buffers([swapped[:body_end]], "xxh3-64"))[::-1]
    path.write_bytes(swapped[:body_end] + checksum + swapped[body_end + 8 :])
    assert "json!!" in _core.read_header(path).serializer  # integrity alone accepts it
    with pytest.raises(UntrustedResultError, match="does not match"):
        load(result, results_signing_key=KEY)


def test_read_result_and_json_documents_obey_the_requirement(tmp_path):
    result = persisted(tmp_path, 5, results_signing_key=KEY)
    path = result.storage.path_of(result.storage_key)
    with temporary_settings(results_signing_key=KEY, results_require_signature=True):
        assert read_result(path) == 5
    unsigned = persisted(tmp_path, Exploding())
    document = tmp_path / "document.json"
    document.write_text(PersistedResultBlob({"type": "pickle"}, pickle.dumps(1)).to_json())
    with temporary_settings(results_signing_key=KEY, results_require_signature=True):
        with pytest.raises(UntrustedResultError):
            read_result(unsigned.storage.path_of(unsigned.storage_key))
        with pytest.raises(UntrustedResultError, match="JSON result document"):
            read_result(document)
        with pytest.raises(UntrustedResultError, match="JSON result document"):
            PersistedResultBlob.from_json(document.read_text()).load()


def test_a_cached_task_recomputes_an_untrusted_result_with_a_warning(tmp_path):
    calls = []

    @task(cache_key_fn=task_input_hash, result_storage=LocalFileSystem(basepath=str(tmp_path)))
    def double(x):
        calls.append(x)
        return {"double": x * 2}

    @flow
    def run(x):
        return double(x, return_state=True)

    first = run(2)  # unsigned
    with temporary_settings(results_signing_key=KEY, results_require_signature=True):
        with pytest.warns(CachedResultUnavailableWarning, match="not signed"):
            again = run(2)
        assert again.name == "Completed" and again.result() == {"double": 4}
        assert run(2).name == "Cached"  # the recomputed result is signed
    assert calls == [2, 2]
    assert first.data.storage_key != again.data.storage_key


def test_settings_that_cannot_make_a_key_are_clear_errors(tmp_path):
    with temporary_settings(results_signing_key="short"):
        with pytest.raises(InvalidSettingError, match="FERROFLOW_RESULTS_SIGNING_KEY.*at least 16 bytes"):
            signing_key()
    with temporary_settings(results_signing_key_file=str(tmp_path / "missing")):
        with pytest.raises(InvalidSettingError, match="missing.*cannot be read"):
            signing_key()
    (tmp_path / "key").write_text(KEY)
    with temporary_settings(results_signing_key=KEY, results_signing_key_file=str(tmp_path / "key")):
        with pytest.raises(InvalidSettingError, match="set one of them"):
            signing_key()
    with temporary_settings(results_verification_keys="ok-but-the-next-is-not-long, tiny"):
        with pytest.raises(InvalidSettingError, match="key 2 of FERROFLOW_RESULTS_VERIFICATION_KEYS"):
            read_policy()


def test_blank_key_settings_mean_unset(monkeypatch):
    monkeypatch.setenv("FERROFLOW_RESULTS_SIGNING_KEY", "  ")
    monkeypatch.setenv("FERROFLOW_RESULTS_SIGNING_KEY_FILE", "")
    assert signing_key() is None


def test_the_key_never_shows_in_reprs_or_settings():
    key = _core.SigningKey(KEY.encode())
    assert KEY not in repr(key) and key.key_id in repr(key)
    with temporary_settings(results_signing_key=KEY) as settings:
        assert KEY not in repr(settings)
        assert KEY not in json.dumps(settings.model_dump(mode="json"))
