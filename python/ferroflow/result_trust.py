"""What readers and writers of result blobs trust, from the settings: the key that signs every
result written (`FERROFLOW_RESULTS_SIGNING_KEY` or `..._FILE`), the keys whose signatures are
accepted (that key and `FERROFLOW_RESULTS_VERIFICATION_KEYS`), whether a signature is required
(`FERROFLOW_RESULTS_REQUIRE_SIGNATURE`) and the largest decompressed size
(`FERROFLOW_RESULTS_MAX_DECOMPRESSED_SIZE`). The core does the checking (`_core.ReadPolicy`);
this module only turns the settings into its arguments, once per change of the settings."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import ferroflow._core as _core
from ferroflow.exceptions import InvalidSettingError, UntrustedResultError
from ferroflow.settings import Settings, get_current_settings


def signing_key(settings: Settings | None = None) -> _core.SigningKey | None:
    """The key that signs every result written, or None when results are not signed."""
    settings = settings or get_current_settings()
    secret = settings.results_signing_key
    key_file = settings.results_signing_key_file
    if secret is not None and key_file is not None:
        raise InvalidSettingError(
            "Both FERROFLOW_RESULTS_SIGNING_KEY and FERROFLOW_RESULTS_SIGNING_KEY_FILE are set; "
            "set one of them."
        )
    if key_file is not None:
        return _key_from_file(key_file, _file_version(key_file))
    if secret is not None:
        return _key_from_secret(secret.get_secret_value(), "FERROFLOW_RESULTS_SIGNING_KEY")
    return None


_last_policy: tuple[Settings, _core.ReadPolicy] | None = None
"""The settings `read_policy` was last made from (without a key file), and the policy."""


def read_policy(settings: Settings | None = None) -> _core.ReadPolicy:
    """The checks every read of a result blob makes besides its checksums. Made once per
    settings object (settings are frozen), except with a key file, which is checked each time
    (a rotated key is read again)."""
    settings = settings or get_current_settings()
    last = _last_policy
    if last is not None and last[0] is settings:
        return last[1]
    policy = _read_policy(settings)
    if settings.results_signing_key_file is None:
        _remember_policy(settings, policy)
    return policy


def _remember_policy(settings: Settings, policy: _core.ReadPolicy) -> None:
    global _last_policy
    _last_policy = (settings, policy)


def _read_policy(settings: Settings) -> _core.ReadPolicy:
    own = signing_key(settings)
    others = settings.results_verification_keys
    return _policy(
        own,
        others.get_secret_value() if others is not None else "",
        settings.results_require_signature,
        settings.results_max_decompressed_size,
    )


def refuse_unsigned_document(what: str) -> None:
    """JSON result documents (the export form, Prefect 2's files) cannot be signed: with
    FERROFLOW_RESULTS_REQUIRE_SIGNATURE on, they are refused before they are decoded."""
    if get_current_settings().results_require_signature:
        raise UntrustedResultError(
            f"{what} is a JSON result document, which cannot be signed, and "
            "FERROFLOW_RESULTS_REQUIRE_SIGNATURE is on: it was not loaded. Turn the setting off "
            "to read it, or write the result again as a signed blob."
        )


@functools.lru_cache(maxsize=16)
def _policy(
    own: _core.SigningKey | None, others: str, require: bool, max_decompressed: int
) -> _core.ReadPolicy:
    keys = [own] if own is not None else []
    for index, secret in enumerate(part.strip() for part in others.split(",")):
        if secret:
            keys.append(_key_from_secret(secret, f"key {index + 1} of FERROFLOW_RESULTS_VERIFICATION_KEYS"))
    return _core.ReadPolicy(
        verification_keys=keys, require_signature=require, max_decompressed_length=max_decompressed
    )


@functools.lru_cache(maxsize=16)
def _key_from_secret(secret: str, setting: str) -> _core.SigningKey:
    try:
        return _core.SigningKey(secret.encode())
    except ValueError as error:
        raise InvalidSettingError(f"{setting} is not a usable key: {error}") from None


def _file_version(path: Path) -> tuple[str, int, int]:
    """What tells a changed key file apart (so a rotated key is read again)."""
    try:
        stat = os.stat(path)
    except OSError as error:
        raise InvalidSettingError(
            f"FERROFLOW_RESULTS_SIGNING_KEY_FILE={str(path)!r} cannot be read: {error.strerror}. "
            "Point it to a file holding the key, or unset it."
        ) from None
    return (str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _key_from_file(path: Path, version: tuple[str, int, int]) -> _core.SigningKey:
    del version  # part of the cache key only
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as error:
        raise InvalidSettingError(
            f"FERROFLOW_RESULTS_SIGNING_KEY_FILE={str(path)!r} cannot be read: {error.strerror}. "
            "Point it to a file holding the key, or unset it."
        ) from None
    try:
        return _core.SigningKey(secret)
    except ValueError as error:
        raise InvalidSettingError(
            f"The key in FERROFLOW_RESULTS_SIGNING_KEY_FILE={str(path)!r} is not usable: {error}"
        ) from None


__all__ = ["read_policy", "refuse_unsigned_document", "signing_key"]
