"""Result storage: where persisted results live.

`WritableFileSystem` is the interface a storage implements: plain files (`write_path`/`read_path`)
and framed result blobs (`write_blob`/`read_blob`/`map_blob`/`read_header`), plus `exists` and
`delete`. Keys are relative paths such as "a1b2c3" or "flow/a1b2c3"; a key that would leave the
storage (`..`, an absolute path) is refused.

`LocalFileSystem(basepath=...)` keeps results in a folder; all byte work (framing, checksums,
atomic writes, memory maps) runs in ferroflow's Rust core. `S3` is a named placeholder: it can be
configured (so `result_storage=S3(bucket_path=...)` can be written) but raises on use.

A storage can be saved under a name (`LocalFileSystem(basepath="/data").save("dev")`) and used
from any process as `LocalFileSystem.load("dev")` or by its slug `"local-file-system/dev"`
(`resolve_storage`). Saved storages are JSON files in `${FERROFLOW_HOME}/storages/<type>/<name>.json`.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import json
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, ParamSpec, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

import ferroflow._core as _core
from ferroflow._asyncutils import in_async_caller
from ferroflow.exceptions import StorageNotAvailableError, StorageNotFoundError
from ferroflow.result_trust import read_policy, signing_key
from ferroflow.settings import get_current_settings

_storage_types: dict[str, type[WritableFileSystem]] = {}

_SAVED_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")

P = ParamSpec("P")
R = TypeVar("R")

# Methods that async code awaits, as it did with Prefect 2's storage blocks.
_AWAITABLE_IN_ASYNC_CODE = ("save", "write_path", "read_path")


def _awaitable_in_async_code(method: Callable[P, R]) -> Callable[P, R]:
    """`method` returning a coroutine when called from async code (the work then runs in a
    worker thread, keeping the event loop free) and its value when called from sync code."""
    if getattr(method, "_awaitable_in_async_code", False):
        return method

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        if in_async_caller():
            return asyncio.to_thread(method, *args, **kwargs)  # type: ignore[return-value]
        return method(*args, **kwargs)

    call._awaitable_in_async_code = True  # type: ignore[attr-defined]
    return call


class WritableFileSystem(BaseModel, abc.ABC):
    """The interface of a result storage. Subclasses set `type_slug` and implement the methods."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Names the storage type in slugs ("local-file-system/dev") and in descriptions.
    type_slug: ClassVar[str]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        slug = cls.__dict__.get("type_slug")
        if slug is not None:
            _storage_types[slug] = cls
        for name in _AWAITABLE_IN_ASYNC_CODE:
            method = cls.__dict__.get(name)
            if callable(method):
                setattr(cls, name, _awaitable_in_async_code(method))

    # -- plain files --------------------------------------------------------------------------

    @abc.abstractmethod
    def write_path(self, key: str, data: Any | Sequence[Any], *, durable: bool | None = None) -> str:
        """Write a buffer (or the concatenation of several) at `key`, atomically; returns its path."""

    @abc.abstractmethod
    def read_path(self, key: str) -> bytes:
        """The bytes stored at `key`."""

    # -- result blobs -------------------------------------------------------------------------

    @abc.abstractmethod
    def write_blob(
        self,
        key: str,
        segments: Sequence[Any],
        *,
        serializer_json: str,
        codec: str = "none",
        level: int | None = None,
        threads: int = 1,
        durable: bool | None = None,
    ) -> Any:
        """Frame `segments` as a checksummed result blob at `key`; returns its BlobHeader.

        `serializer_json` is the serializer's description as JSON text, kept in the header with
        `key`; the blob is signed with FERROFLOW_RESULTS_SIGNING_KEY when it is set.
        `durable=None` follows the FERROFLOW_RESULTS_FSYNC setting.
        """

    @abc.abstractmethod
    def read_blob(self, key: str) -> tuple[Any, list[bytes]]:
        """(header, segments) of the blob at `key`, verified and decompressed. A blob written
        under another key, or refused by the settings (signature, decompressed size), raises
        CorruptResultError (UntrustedResultError for the signature) before anything is read."""

    @abc.abstractmethod
    def map_blob(self, key: str) -> tuple[Any, list[memoryview]]:
        """Like `read_blob`, but uncompressed segments are zero-copy views of a memory map."""

    @abc.abstractmethod
    def read_header(self, key: str) -> Any:
        """The BlobHeader of the blob at `key`, without reading its payload."""

    # -- keys ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether something is stored at `key`."""

    @abc.abstractmethod
    def delete(self, key: str, *, missing_ok: bool = True) -> None:
        """Remove what is stored at `key`."""

    # -- configuration ------------------------------------------------------------------------

    def to_description(self) -> dict[str, Any]:
        """A JSON-able description from which `WritableFileSystem.from_description` rebuilds it."""
        return {"type": self.type_slug, **self.model_dump(mode="json")}

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> WritableFileSystem:
        fields = dict(description)
        return _storage_type(str(fields.pop("type", ""))).model_validate(fields)

    @_awaitable_in_async_code
    def save(self, name: str, *, overwrite: bool = False) -> str:
        """Save this configuration under `name`; returns its slug, e.g. "local-file-system/dev"."""
        path = _saved_path(self.type_slug, _checked_name(name))
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"A {self.type_slug} storage named {name!r} is already saved ({path}). "
                "Pass overwrite=True to replace it."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        document = json.dumps(self.to_description(), indent=2, sort_keys=True) + "\n"
        _core.atomic_write(str(path), [document.encode()])
        return f"{self.type_slug}/{name}"

    @classmethod
    def load(cls, name: str) -> WritableFileSystem:
        """The storage saved under `name` (by `save`, in this or another process)."""
        slug = cls.__dict__.get("type_slug")
        if slug is None:
            raise TypeError(
                f"Call load() on a storage type, e.g. LocalFileSystem.load({name!r}), or pass "
                "a slug such as 'local-file-system/dev' to resolve_storage()."
            )
        path = _saved_path(slug, _checked_name(name))
        try:
            data = _core.read_file(str(path))
        except FileNotFoundError:
            raise StorageNotFoundError(
                f"No {slug} storage named {name!r} is saved in {path.parent}. "
                f"{_saved_list(slug)} Save one with {cls.__name__}(...).save({name!r})."
            ) from None
        except OSError as exc:  # a folder in its place, no permission to read it, ...
            raise _damaged_saved_storage(cls, slug, name, path, f"it cannot be read ({exc})") from exc
        return _saved_storage_from(cls, slug, name, path, data)


def _saved_storage_from(
    storage_type: type[WritableFileSystem], slug: str, name: str, path: Path, data: bytes
) -> WritableFileSystem:
    """The storage a saved file's bytes describe, or a StorageNotFoundError naming the file and
    saying what is wrong with it (hand-edited, truncated or damaged files)."""
    try:
        description = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested beyond reason
        raise _damaged_saved_storage(
            storage_type, slug, name, path, f"it is not valid JSON ({exc})"
        ) from None
    if not isinstance(description, dict):
        kind = _JSON_KINDS.get(type(description), type(description).__name__)
        what = f"its JSON is {kind}, not an object of the storage's settings"
        raise _damaged_saved_storage(storage_type, slug, name, path, what)
    if description.get("type", slug) != slug:
        what = f"it describes a {description.get('type')!r} storage, not a {slug} one"
        raise _damaged_saved_storage(storage_type, slug, name, path, what)
    try:
        return storage_type.from_description({**description, "type": slug})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
        raise _damaged_saved_storage(
            storage_type, slug, name, path, f"its settings are invalid ({problems})"
        ) from None


_JSON_KINDS = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _damaged_saved_storage(
    storage_type: type[WritableFileSystem], slug: str, name: str, path: Path, what: str
) -> StorageNotFoundError:
    return StorageNotFoundError(
        f"The saved {slug} storage {name!r} cannot be used: {what}. Its file is {path}. Save it "
        f"again with {storage_type.__name__}(...).save({name!r}, overwrite=True), or delete the file."
    )


def _storage_type(slug: str, where: str = "") -> type[WritableFileSystem]:
    storage_type = _storage_types.get(slug)
    if storage_type is None:
        raise StorageNotFoundError(
            f"Unknown storage type {slug!r}{where}. Known types: "
            f"{', '.join(sorted(_storage_types))}. {_saved_list()}"
        )
    return storage_type


def _checked_name(name: str) -> str:
    if not isinstance(name, str) or not _SAVED_NAME.fullmatch(name):
        raise ValueError(
            f"Invalid storage name {name!r}: use lowercase letters, digits, '-' and '_', "
            "starting with a letter or digit (e.g. 'dev')."
        )
    return name


def _saved_root() -> Path:
    return get_current_settings().home / "storages"


def _saved_path(slug: str, name: str) -> Path:
    return _saved_root() / slug / f"{name}.json"


def saved_storages() -> list[str]:
    """Slugs of every saved storage, e.g. ["local-file-system/dev"]."""
    root = _saved_root()
    return sorted(f"{path.parent.name}/{path.stem}" for path in root.glob("*/*.json"))


def _saved_list(slug: str | None = None) -> str:
    slugs = [s for s in saved_storages() if slug is None or s.startswith(slug + "/")]
    return f"Saved: {', '.join(slugs)}." if slugs else "None is saved yet."


def resolve_storage(value: WritableFileSystem | str | None = None) -> WritableFileSystem:
    """A storage from an instance, a slug ("local-file-system/dev"), or None.

    None gives a LocalFileSystem at FERROFLOW_LOCAL_STORAGE_PATH.
    """
    if isinstance(value, WritableFileSystem):
        return value
    if value is None:
        return LocalFileSystem()
    if not isinstance(value, str):
        raise TypeError(
            "A result storage must be a storage instance such as LocalFileSystem(basepath=...) "
            f"or a slug such as 'local-file-system/dev'; got {type(value).__name__}."
        )
    slug, sep, name = value.partition("/")
    if not sep or not slug or not name:
        raise StorageNotFoundError(
            f"Invalid storage slug {value!r}: expected '<storage-type>/<saved-name>', e.g. "
            f"'local-file-system/dev'. {_saved_list()}"
        )
    return _storage_type(slug, f" in {value!r}").load(name)


# ---------------------------------------------------------------------------------------------
# Local folder


class LocalFileSystem(WritableFileSystem):
    """Results as files in a local folder.

    `basepath` is expanded (`~`) and made absolute when the storage is created, so a saved or
    recorded storage means the same folder from any working directory. Without it, the folder
    is FERROFLOW_LOCAL_STORAGE_PATH (default ~/.ferroflow/storage). Folders are created on the
    first write.
    """

    type_slug: ClassVar[str] = "local-file-system"

    basepath: str | None = None

    @field_validator("basepath", mode="before")
    @classmethod
    def _absolute(cls, value: Any) -> Any:
        if not isinstance(value, (str, os.PathLike)):
            return value  # None stays unset; other types get pydantic's "not a string" error
        return str(Path(os.fsdecode(value)).expanduser().absolute())

    @property
    def root(self) -> str:
        """The folder the keys are relative to."""
        if self.basepath is not None:
            return self.basepath
        return str(get_current_settings().local_storage_path)

    def path_of(self, key: str) -> str:
        """The file for `key`; refuses keys that would leave the folder (UnsafeKeyError)."""
        return _core.resolve_key(self.root, key)

    def write_path(self, key: str, data: Any | Sequence[Any], *, durable: bool | None = None) -> str:
        path = self.path_of(key)
        segments: list[Any] = list(data) if isinstance(data, (list, tuple)) else [data]
        _create_parent_on_missing(lambda: _core.atomic_write(path, segments, durable=_durable(durable)), path)
        unfinished_writes.sweep_now_and_then(os.path.dirname(path))
        return path

    def read_path(self, key: str) -> bytes:
        return _core.read_file(self.path_of(key))

    def write_blob(
        self,
        key: str,
        segments: Sequence[Any],
        *,
        serializer_json: str,
        codec: str = "none",
        level: int | None = None,
        threads: int = 1,
        durable: bool | None = None,
    ) -> Any:
        path = self.path_of(key)
        header = _create_parent_on_missing(
            lambda: _core.write_blob(
                path,
                segments,
                serializer=serializer_json,
                codec=codec,
                level=level,
                threads=threads,
                durable=_durable(durable),
                key=key,
                signing_key=signing_key(),
            ),
            path,
        )
        unfinished_writes.sweep_now_and_then(os.path.dirname(path))
        return header

    def read_blob(self, key: str) -> tuple[Any, list[bytes]]:
        return _core.read_blob(self.path_of(key), key=key, policy=read_policy())

    def map_blob(self, key: str) -> tuple[Any, list[memoryview]]:
        return _core.map_blob(self.path_of(key), key=key, policy=read_policy())

    def read_header(self, key: str) -> Any:
        return _core.read_header(self.path_of(key), key=key, policy=read_policy())

    def exists(self, key: str) -> bool:
        return os.path.isfile(self.path_of(key))

    def delete(self, key: str, *, missing_ok: bool = True) -> None:
        try:
            os.unlink(self.path_of(key))
        except FileNotFoundError:
            if not missing_ok:
                raise


def is_unfinished_write(name: str) -> bool:
    """Whether a file name is that of an atomic write's temporary file, left behind when its
    writer was killed before the rename (the core, which names them, answers)."""
    return _core.is_temporary_file_name(name)


class _UnfinishedWriteSweeper:
    """Removes the temporary files that killed writers left in the folders this process writes
    results to, so that they do not pile up until someone runs `ferroflow results prune`.

    A folder is swept at most once per `interval` seconds per process, on a background thread
    (a write never waits for it), and only files older than FERROFLOW_RESULTS_UNFINISHED_WRITE_MAX_AGE
    are removed: a younger one may be another process's write in progress.
    """

    def __init__(self, interval: float = 600.0) -> None:
        self.interval = interval
        self._last_sweep: dict[str, float] = {}
        self._lock = threading.Lock()
        self.last_thread: threading.Thread | None = None  # the latest sweep (tests wait for it)

    def sweep_now_and_then(self, folder: str) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last_sweep.get(folder)
            if last is not None and now - last < self.interval:
                return
            if len(self._last_sweep) > 4096:  # a process writing to ever new folders
                self._last_sweep.clear()
            self._last_sweep[folder] = now
        max_age = get_current_settings().results_unfinished_write_max_age
        thread = threading.Thread(
            target=remove_unfinished_writes, args=(folder, max_age), name="ferroflow-sweep", daemon=True
        )
        self.last_thread = thread
        thread.start()


unfinished_writes = _UnfinishedWriteSweeper()


def remove_unfinished_writes(folder: str | os.PathLike[str], older_than: float) -> list[str]:
    """Remove the temporary files of unfinished writes (`is_unfinished_write`) directly in
    `folder` whose last change is more than `older_than` seconds ago; returns their paths.
    Files that vanish meanwhile, or cannot be removed, are left to the next sweep."""
    cutoff = time.time() - older_than
    removed: list[str] = []
    try:
        entries = os.scandir(folder)
    except OSError:  # the folder went away, or cannot be listed: nothing to do here
        return removed
    with entries:
        for entry in entries:
            if not is_unfinished_write(entry.name):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                    continue
                os.unlink(entry.path)
            except OSError:
                continue
            removed.append(entry.path)
    return removed


def _durable(durable: bool | None) -> bool:
    return get_current_settings().results_fsync if durable is None else durable


def _create_parent_on_missing(write: Any, path: str) -> Any:
    """Run `write`; if its folder does not exist yet, create it and write again.

    Trying first keeps the common case (folder already there) to a single system call.
    """
    try:
        return write()
    except FileNotFoundError:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return write()


# ---------------------------------------------------------------------------------------------
# S3 placeholder


class S3(WritableFileSystem):
    """Amazon S3 storage: NOT available yet.

    It can be created, so that code such as `my_flow.with_options(result_storage=S3(bucket_path=
    "my-bucket"))` can be written ahead of time, but reading, writing or saving it raises
    StorageNotAvailableError. Use LocalFileSystem (on a mounted bucket if needed) meanwhile.
    """

    type_slug: ClassVar[str] = "s3"

    bucket_path: str

    def _unavailable(self, *_args: Any, **_kwargs: Any) -> Any:
        raise StorageNotAvailableError(
            f"S3 result storage (bucket_path={self.bucket_path!r}) is not available in ferroflow "
            "yet. Use LocalFileSystem(basepath=...) for results instead, e.g. on a folder where "
            "the bucket is mounted."
        )

    write_path = read_path = write_blob = read_blob = map_blob = read_header = _unavailable
    exists = delete = save = _unavailable  # type: ignore[assignment]


__all__ = [
    "LocalFileSystem",
    "S3",
    "WritableFileSystem",
    "resolve_storage",
    "saved_storages",
]
