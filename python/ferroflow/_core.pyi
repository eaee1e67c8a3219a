from collections.abc import Iterable
from typing import Final, final

from typing_extensions import Buffer

__all__ = [
    "CODECS",
    "CorruptResultError",
    "HASH_ALGORITHMS",
    "Hasher",
    "UnsafeKeyError",
    "UnsupportedFormatError",
    "__version__",
    "compress",
    "decompress",
    "hash_buffers",
]

__version__: str

class CorruptResultError(ValueError): ...
class UnsupportedFormatError(ValueError): ...
class UnsafeKeyError(ValueError): ...

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
