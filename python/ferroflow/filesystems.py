"""Result storage: where persisted results live.

`WritableFileSystem` is the interface a storage implements: plain files (`write_path`/`read_path`)
and framed result blobs (`write_blob`/`read_blob`/`map_blob`/`read_header`), plus `exists` and
`delete`. Keys are relative paths such as "a1b2c3" or "flow/a1b2c3"; a key that would leave the
storage (`..`, an absolute path) is refused.

`LocalFileSystem(basepath=...)` keeps results in a folder; all byte work (framing, checksums,
atomic writes, memory maps) runs in ferroflow's Rust core, and each write starts, now and then,
a sweep of its folder for the temporary files of writes a killed process left. `S3(bucket_path=...)`
and `RemoteFileSystem(basepath="s3://..." / "gs://..." / "az://...")` keep results as objects
through the core's object store: the same blobs, signed and checked on reading as files are; an
upload leaves no temporary object, so buckets are not swept. A bucket storage also keeps the
cache's records and locks (`record_storage`), with create-only puts.

A storage can be saved under a name (`LocalFileSystem(basepath="/data").save("dev")`) and used
from any process as `LocalFileSystem.load("dev")` or by its slug `"local-file-system/dev"`
(`resolve_storage`). Saved storages are JSON files in `${FERROFLOW_HOME}/storages/<type>/<name>.json`.
"""

from __future__ import annotations

import abc
import asyncio
import configparser
import functools
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, ParamSpec, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
)

import ferroflow._core as _core
from ferroflow._asyncutils import in_async_caller
from ferroflow.exceptions import (
    StorageNotFoundError,
    StoragePermissionError,
)
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
        return _storage_type(str(fields.pop("type", "")))._from_fields(fields)

    @classmethod
    def _from_fields(cls, fields: dict[str, Any]) -> WritableFileSystem:
        return cls.model_validate(fields)

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
        document = json.dumps(self._saved_description(), indent=2, sort_keys=True) + "\n"
        _core.atomic_write(str(path), [document.encode()])
        # It may hold credentials: readable by its owner only.
        os.chmod(path, 0o600)
        return f"{self.type_slug}/{name}"

    def _saved_description(self) -> dict[str, Any]:
        """What `save` writes: the description, with any secrets (only the owner can read it)."""
        return self.to_description()

    def _loaded_as(self, slug: str) -> None:
        """Called on a storage `load` made: a storage with secrets remembers its slug, so that the
        result references it describes name the saved storage instead of the secrets."""

    def check(self) -> None:
        """Raise now if the storage cannot be used (missing bucket, refused credentials, endpoint
        out of reach); a flow calls it at its start, before any task runs. Local folders are
        created on the first write, so there is nothing to check."""

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
        storage = _saved_storage_from(cls, slug, name, path, data)
        storage._loaded_as(f"{slug}/{name}")
        return storage


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
# Object storage: S3, Google Cloud Storage, Azure Blob Storage (and an in-memory store)

# How long a successful `check` of a store is trusted: flows started in quick succession then
# pay one round trip, not one each.
_CHECK_VALID_SECONDS = 30.0

# The object a `check` asks for: it need not exist. A GET of a missing object answers "no such
# key" when the bucket exists and the credentials are accepted, and says which of them is wrong
# otherwise (a HEAD's answer has no body to say it).
_CHECK_KEY = ".ferroflow-check"


class _ObjectStorage(WritableFileSystem):
    """What every object store storage shares: the core's `Store` behind it, opened on first use,
    and the storage interface on top of it. Subclasses say which URL and which options."""

    #: A request without an answer for this long fails (seconds); retried requests included.
    timeout: float = Field(default=60.0, gt=0)
    #: Opening a connection fails after this long (seconds).
    connect_timeout: float = Field(default=5.0, gt=0)
    #: Failed requests (connection errors, 5xx and 429 answers) are retried this many times.
    max_retries: int = Field(default=3, ge=0)
    #: No retry starts later than this after the first attempt (seconds).
    retry_timeout: float = Field(default=30.0, gt=0)
    #: Results up to this many bytes are uploaded in one PUT, larger ones as multipart uploads
    #: of 8 MiB parts sent 4 at a time (at most 5 GiB: S3's largest PUT). None: 64 MiB, or
    #: 1 GiB for an http:// endpoint (a local or LAN server, where one request is fastest).
    multipart_threshold: int | None = Field(default=None, ge=0, le=5 * 1024**3)
    #: A result is read as this many concurrent ranged GETs of 8 MiB. None: 4, or one plain GET
    #: for an http:// endpoint (a local or LAN server gains nothing from more connections).
    reads_in_flight: int | None = Field(default=None, ge=1)

    _store: Any = PrivateAttr(default=None)
    _saved_as: str | None = PrivateAttr(default=None)
    _checked_at: float = PrivateAttr(default=0.0)

    @abc.abstractmethod
    def store_url(self) -> str:
        """The URL of the bucket (and prefix) the keys are relative to."""

    @abc.abstractmethod
    def _store_options(self) -> list[tuple[str, str]]:
        """object_store configuration keys and values; what is not here comes from the
        environment."""

    @property
    def store(self) -> Any:
        """The core's handle on the store (`ferroflow._core.Store`), opened on first use."""
        store = self._store
        if store is None:
            store = _core.Store(
                self.store_url(),
                self._store_options(),
                timeout=self.timeout,
                connect_timeout=self.connect_timeout,
                max_retries=self.max_retries,
                retry_timeout=self.retry_timeout,
                multipart_threshold=self.multipart_threshold,
                reads_in_flight=self.reads_in_flight,
            )
            self._store = store
        return store

    def __repr_args__(self) -> Any:
        # The store's own fields first; the tuning fields only when not their defaults.
        fields = type(self).model_fields
        tuning = _ObjectStorage.model_fields
        for name in fields:
            if name not in tuning:
                yield name, getattr(self, name)
        for name, field in tuning.items():
            if getattr(self, name) != field.default:
                yield name, getattr(self, name)

    def url_of(self, key: str) -> str:
        """The URL of the object at `key`, e.g. "s3://bucket/prefix/key"."""
        return f"{self.store_url().rstrip('/')}/{key}"

    # -- plain files --------------------------------------------------------------------------

    def write_path(self, key: str, data: Any | Sequence[Any], *, durable: bool | None = None) -> str:
        # An object is stored durably once its PUT is answered: `durable` changes nothing.
        segments: list[Any] = list(data) if isinstance(data, (list, tuple)) else [data]
        self.store.put(key, segments)
        return self.url_of(key)

    def read_path(self, key: str) -> bytes:
        return self.store.get(key)  # type: ignore[no-any-return]

    def put_if_absent(self, key: str, data: Any) -> bool:
        """Create the object at `key` unless one exists (a create-only PUT); returns whether this
        call created it. For records that must never be overwritten, such as locks."""
        return self.store.put_if_absent(key, data)  # type: ignore[no-any-return]

    # -- result blobs -------------------------------------------------------------------------

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
        # The header records `key`, and is signed as a local write's is; an upload leaves no
        # temporary file behind, so there is nothing to sweep.
        return self.store.write_blob(
            key,
            segments,
            serializer=serializer_json,
            codec=codec,
            level=level,
            threads=threads,
            signing_key=signing_key(),
        )

    def read_blob(self, key: str) -> tuple[Any, list[bytes]]:
        header, views = self.store.read_blob(key, policy=read_policy())
        return header, [bytes(view) for view in views]

    def map_blob(self, key: str) -> tuple[Any, list[memoryview]]:
        """Like `read_blob`, but the segments are views of the one buffer the object was read
        into (no copy)."""
        return self.store.read_blob(key, policy=read_policy())  # type: ignore[no-any-return]

    def read_header(self, key: str) -> Any:
        return self.store.read_header(key, policy=read_policy())

    # -- keys ---------------------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        return self.store.exists(key)  # type: ignore[no-any-return]

    def delete(self, key: str, *, missing_ok: bool = True) -> None:
        # Object stores do not say whether a deleted object existed: ask first when it matters.
        if not missing_ok and not self.store.exists(key):
            raise FileNotFoundError(2, f"{self.url_of(key)} does not exist")
        self.store.delete(key)

    def list_objects(self, prefix: str = "") -> list[Any]:
        """`ObjectInfo` (key, size, last_modified, e_tag) of every object under the folder
        `prefix`, sorted by key."""
        return self.store.list(prefix)  # type: ignore[no-any-return]

    def record_storage(self) -> ObjectRecordStorage:
        """Cache records and locks kept in this bucket prefix, beside the results (see
        `ferroflow.results.cache_records.record_storage_for`)."""
        return ObjectRecordStorage(self)

    def check(self) -> None:
        """Ask the store for an object that need not exist: a missing bucket
        (BucketNotFoundError), refused credentials (StoragePermissionError) or an unreachable
        endpoint (StorageUnavailableError) raise now."""
        if time.monotonic() - self._checked_at < _CHECK_VALID_SECONDS:
            return
        try:
            self.store.read_header(_CHECK_KEY)
        except (FileNotFoundError, ValueError):
            pass  # no such object (or not a blob): the bucket answered
        self._checked_at = time.monotonic()

    # -- configuration ------------------------------------------------------------------------

    def to_description(self) -> dict[str, Any]:
        """The description without secrets; a storage loaded by slug names its slug, so that
        another process reading a result reference loads the secrets from the saved storage."""
        description = super().to_description()
        for name in self._secret_fields():
            description.pop(name, None)
        if self._saved_as is not None:
            description["saved_as"] = self._saved_as
        return description

    @classmethod
    def _from_fields(cls, fields: dict[str, Any]) -> WritableFileSystem:
        saved_as = fields.pop("saved_as", None)
        if isinstance(saved_as, str):
            try:
                return resolve_storage(saved_as)
            except StorageNotFoundError:
                pass  # no longer saved: the credentials come from the environment
        return cls.model_validate(fields)

    def _saved_description(self) -> dict[str, Any]:
        description = super().to_description()
        for name in self._secret_fields():
            value = getattr(self, name)
            description[name] = _reveal(value)
        return description

    def _loaded_as(self, slug: str) -> None:
        self._saved_as = slug

    @classmethod
    def _secret_fields(cls) -> list[str]:
        return [name for name, field in cls.model_fields.items() if _is_secret(field.annotation)]

    def __eq__(self, other: object) -> bool:
        # The open store and the slug it was loaded as are not part of the configuration.
        return type(other) is type(self) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        private = dict(state.get("__pydantic_private__") or {})
        private.update(_store=None, _checked_at=0.0)  # a process opens its own store
        state["__pydantic_private__"] = private
        return state


class ObjectRecordStorage:
    """The cache's record storage (`ferroflow.results.cache_records.RecordStorage`) on a bucket
    prefix: a create-only put is a conditional PUT (`If-None-Match: *`), which S3 and the other
    stores answer atomically, so records and SERIALIZABLE locks work across machines."""

    __slots__ = ("storage", "_identity")

    def __init__(self, storage: _ObjectStorage) -> None:
        self.storage = storage
        self._identity: str | None = None

    def identity(self) -> str:
        """What tells this bucket prefix apart from every other in the process, endpoint
        included (`describe()` names the bucket only): the key under which the cache remembers
        the records it found here (`ferroflow.results.cache_records.remembered_reference`)."""
        identity = self._identity
        if identity is None:
            description = json.dumps(self.storage.to_description(), sort_keys=True)
            identity = self._identity = f"{type(self.storage).__name__}:{description}"
        return identity

    def create_only(self, key: str, data: bytes) -> bool:
        return self.storage.put_if_absent(key, data)

    def replace(self, key: str, data: bytes) -> None:
        self.storage.store.put(key, [data])

    def read(self, key: str) -> bytes | None:
        try:
            return self.storage.store.get(key)  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> bool:
        # A DELETE does not say whether the object existed: ask first. Two deleters racing may
        # both answer True; the callers (lock release, record removal) only need "it is gone".
        if not self.storage.store.exists(key):
            return False
        self.storage.store.delete(key)
        return True

    def list_keys(self, prefix: str) -> Iterator[str]:
        for info in self.storage.store.list(prefix.rstrip("/")):
            yield info.key

    def describe(self) -> str:
        return self.storage.store_url()

    def __repr__(self) -> str:
        return f"ObjectRecordStorage({self.storage.store_url()!r})"


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


def _reveal(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {key: _reveal(item) for key, item in value.items()}
    return value


class S3(_ObjectStorage):
    """Results as objects in an Amazon S3 bucket, or on an S3-compatible server.

    `bucket_path` is "bucket" or "bucket/prefix". The field names are those of Prefect 2's S3
    block. Every field left unset comes from where the AWS tools find it: the environment
    (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` or
    `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`), then the profile `AWS_PROFILE` (default
    "default") of `~/.aws/credentials` and `~/.aws/config`. Secrets are `SecretStr`: never
    shown by `repr`, logs or error messages.
    """

    type_slug: ClassVar[str] = "s3"

    bucket_path: str
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    region_name: str | None = None
    endpoint_url: str | None = None

    @field_validator("bucket_path")
    @classmethod
    def _bucket_named(cls, value: str) -> str:
        bucket_path = value.removeprefix("s3://").strip("/")
        if not bucket_path or bucket_path.startswith("."):
            raise ValueError(
                f"bucket_path must name a bucket, e.g. 'my-bucket' or 'my-bucket/results'; got {value!r}"
            )
        return bucket_path

    def store_url(self) -> str:
        return f"s3://{self.bucket_path}"

    def _store_options(self) -> list[tuple[str, str]]:
        given = {
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": self.aws_secret_access_key,
            "aws_session_token": self.aws_session_token,
            "aws_region": self.region_name,
            "aws_endpoint": self.endpoint_url,
        }
        options = {key: _reveal(value) for key, value in given.items() if value is not None}
        options.update(_aws_profile_fallbacks(options))
        if "aws_access_key_id" not in options and not _aws_credentials_elsewhere():
            raise StoragePermissionError(
                f"No AWS credentials for the S3 storage of bucket_path={self.bucket_path!r}: pass "
                "aws_access_key_id and aws_secret_access_key, set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or add a profile to ~/.aws/credentials (AWS_PROFILE "
                "chooses it). The instance metadata service is off (AWS_EC2_METADATA_DISABLED)."
            )
        return sorted(options.items())


def _aws_profile_fallbacks(options: dict[str, str]) -> dict[str, str]:
    """What the AWS tools would read from the shared files (`~/.aws/credentials`,
    `~/.aws/config`, profile `AWS_PROFILE`) for what neither `options` nor the environment give.
    (The core's client reads the environment itself.)"""
    env = os.environ
    found: dict[str, str] = {}
    profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
    if "aws_access_key_id" not in options and "AWS_ACCESS_KEY_ID" not in env:
        credentials = _ini_section(env.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"), profile)
        for key in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
            if credentials.get(key):
                found[key] = credentials[key]
    if "aws_region" not in options and not (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")):
        config = _ini_section(
            env.get("AWS_CONFIG_FILE", "~/.aws/config"),
            profile if profile == "default" else f"profile {profile}",
        )
        if config.get("region"):
            found["aws_region"] = config["region"]
    return found


def _aws_credentials_elsewhere() -> bool:
    """Whether the core's client can find credentials the environment points to (keys, a web
    identity, a container's or an instance's credentials service)."""
    env = os.environ
    if env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return True
    if env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        return True
    return env.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true"


def _ini_section(path: str, section: str) -> dict[str, str]:
    parser = configparser.RawConfigParser()
    try:
        parser.read(os.path.expanduser(path))
    except configparser.Error:
        return {}
    return dict(parser.items(section)) if parser.has_section(section) else {}


# fsspec's names for the same settings (what Prefect 2's RemoteFileSystem passed to s3fs), and
# the object_store key each one means.
_FSSPEC_SETTINGS = {
    "key": "aws_access_key_id",
    "secret": "aws_secret_access_key",
    "token": "aws_session_token",
    "endpoint_url": "aws_endpoint",
    "region_name": "aws_region",
}

_REMOTE_SCHEMES = ("s3", "gs", "gcs", "az", "abfs", "abfss", "memory")


class RemoteFileSystem(_ObjectStorage):
    """Results under a URL of an object store: "s3://bucket/prefix", "gs://bucket/prefix",
    "az://container/prefix", or "memory://name" (an in-memory store of the process, for tests).

    `settings` are the store's options: object_store's configuration keys
    (`aws_access_key_id`, `aws_endpoint`, `google_service_account_key`,
    `azure_storage_account_name`, ...), or for S3 the names Prefect 2 passed to s3fs (`key`,
    `secret`, `token`, `client_kwargs={"endpoint_url": ..., "region_name": ...}`). Settings not
    given come from the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`). Settings that hold
    credentials (keys, secrets, tokens) are masked in `repr` and left out of result references.
    """

    type_slug: ClassVar[str] = "remote-file-system"

    basepath: str
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("basepath")
    @classmethod
    def _url(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in _REMOTE_SCHEMES or (scheme != "memory" and not rest.strip("/")):
            raise ValueError(
                f"basepath must be an object store URL such as 's3://bucket/prefix', "
                f"'gs://bucket/prefix', 'az://container/prefix' or 'memory://name'; got {value!r}"
            )
        return value

    @field_validator("settings", mode="before")
    @classmethod
    def _flat_settings(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        flat: dict[str, Any] = {}
        for key, item in value.items():
            if key == "client_kwargs" and isinstance(item, dict):
                flat.update({_FSSPEC_SETTINGS.get(str(k), str(k)): v for k, v in item.items()})
            else:
                flat[_FSSPEC_SETTINGS.get(str(key), str(key))] = item
        return {
            key: _reveal(item) if isinstance(item, SecretStr) else str(item) for key, item in flat.items()
        }

    def store_url(self) -> str:
        return self.basepath

    def _store_options(self) -> list[tuple[str, str]]:
        return sorted((key, str(value)) for key, value in self.settings.items())

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name != "settings":
                yield name, value
        yield (
            "settings",
            {key: "**********" if _is_secret_setting(key) else value for key, value in self.settings.items()},
        )

    def to_description(self) -> dict[str, Any]:
        description = super().to_description()
        # Credentials are never described (result references are recorded): only the rest.
        description["settings"] = {
            key: value for key, value in self.settings.items() if not _is_secret_setting(key)
        }
        return description

    def _saved_description(self) -> dict[str, Any]:
        description = super()._saved_description()
        description["settings"] = dict(self.settings)
        return description


def _is_secret_setting(key: str) -> bool:
    """Whether an object store option holds a credential (by its name)."""
    lowered = key.lower()
    return any(word in lowered for word in ("secret", "key", "token", "password", "sas", "credential"))


__all__ = [
    "LocalFileSystem",
    "ObjectRecordStorage",
    "RemoteFileSystem",
    "S3",
    "WritableFileSystem",
    "resolve_storage",
    "saved_storages",
]
