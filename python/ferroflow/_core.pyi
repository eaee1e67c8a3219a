import datetime
import os
from collections.abc import Iterable
from typing import Any, Final, final

from typing_extensions import Buffer

from ferroflow.exceptions import CorruptResultError as CorruptResultError
from ferroflow.exceptions import UnsafeKeyError as UnsafeKeyError
from ferroflow.exceptions import UnsupportedFormatError as UnsupportedFormatError

__all__ = [
    "BlobHeader",
    "CODECS",
    "CorruptResultError",
    "HASH_ALGORITHMS",
    "Hasher",
    "UnsafeKeyError",
    "UnsupportedFormatError",
    "__version__",
    "atomic_write",
    "compress",
    "decompress",
    "frame_blob",
    "hash_buffers",
    "is_temporary_file_name",
    "load_blob",
    "map_blob",
    "read_blob",
    "read_file",
    "read_header",
    "resolve_key",
    "unframe_blob",
    "write_blob",
]

__version__: str

CODECS: Final[tuple[str, str, str, str]]
HASH_ALGORITHMS: Final[tuple[str, str, str]]

def compress(
    data: Buffer,
    codec: str,
    *,
    level: int | None = None,
    threads: int = 1,
    extreme: bool = False,
) -> bytes: ...
def decompress(
    data: Buffer, codec: str, *, size_hint: int | None = None, max_output: int | None = None
) -> bytes: ...
@final
class Hasher:
    def __new__(cls, algorithm: str = "blake3") -> Hasher: ...
    def update(self, data: Buffer) -> None: ...
    def update_many(self, buffers: Iterable[Buffer]) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> Hasher: ...
    @property
    def algorithm(self) -> str: ...
    @property
    def digest_size(self) -> int: ...

def hash_buffers(buffers: Iterable[Buffer], algorithm: str = "blake3") -> str: ...

_Path = str | os.PathLike[str]

@final
class BlobHeader:
    @property
    def format_version(self) -> str: ...
    @property
    def serializer(self) -> str: ...
    @property
    def codec(self) -> str: ...
    @property
    def level(self) -> int | None: ...
    @property
    def raw_length(self) -> int: ...
    @property
    def stored_length(self) -> int: ...
    @property
    def checksum_algorithm(self) -> str: ...
    @property
    def ferroflow_version(self) -> str: ...
    @property
    def created_at(self) -> datetime.datetime: ...
    @property
    def segment_raw_lengths(self) -> list[int]: ...
    @property
    def segment_stored_lengths(self) -> list[int]: ...
    def to_dict(self) -> dict[str, Any]: ...

def write_blob(
    path: _Path,
    segments: Iterable[Buffer],
    *,
    serializer: str,
    codec: str = "none",
    level: int | None = None,
    threads: int = 1,
    durable: bool = False,
) -> BlobHeader: ...
def frame_blob(
    segments: Iterable[Buffer],
    *,
    serializer: str,
    codec: str = "none",
    level: int | None = None,
    threads: int = 1,
) -> bytes: ...
def read_blob(path: _Path) -> tuple[BlobHeader, list[bytes]]: ...
def map_blob(path: _Path) -> tuple[BlobHeader, list[memoryview]]: ...
def load_blob(path: _Path, map_from: int) -> tuple[BlobHeader, list[bytes] | list[memoryview]]: ...
def unframe_blob(data: Buffer) -> tuple[BlobHeader, list[bytes]]: ...
def read_header(path: _Path) -> BlobHeader: ...
def atomic_write(path: _Path, segments: Iterable[Buffer], *, durable: bool = False) -> int: ...
def read_file(path: _Path) -> bytes: ...
def resolve_key(base: _Path, key: str) -> str: ...
def is_temporary_file_name(name: str) -> bool: ...
