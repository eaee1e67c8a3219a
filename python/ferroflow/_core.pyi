"""ferroflow's compiled core: codecs, hashing, blob framing and atomic file I/O.

Every argument typed `Buffer` takes any C-contiguous bytes-like object (bytes, bytearray,
memoryview, a NumPy array of any dtype, pickle.PickleBuffer) without copying it; a
non-contiguous one (a strided view, a transposed or Fortran-order array) raises ValueError,
anything else TypeError. Every `segments` argument is an iterable of such buffers (a list of
one for a single buffer). The GIL is released for work on 64 KiB or more, for compression and
for file system calls, so other Python threads run meanwhile.

Errors: CorruptResultError, UnsupportedFormatError and UnsafeKeyError (from
ferroflow.exceptions, re-exported here) for damaged data, unreadable formats and unsafe keys;
UntrustedResultError (a CorruptResultError) for a blob refused by a `ReadPolicy`'s signature check;
BucketNotFoundError, StoragePermissionError and StorageUnavailableError (likewise) for an
object store's missing bucket, refused credentials and unreachable endpoint; ValueError for
invalid arguments; the matching OSError subclass for a failed file operation (a missing stored
object is FileNotFoundError); MemoryError when an allocation fails.
"""

import datetime
import os
from collections.abc import Iterable, Sequence
from typing import Any, Final, final

from typing_extensions import Buffer

from ferroflow.exceptions import BucketNotFoundError as BucketNotFoundError
from ferroflow.exceptions import CorruptResultError as CorruptResultError
from ferroflow.exceptions import StoragePermissionError as StoragePermissionError
from ferroflow.exceptions import StorageUnavailableError as StorageUnavailableError
from ferroflow.exceptions import UnsafeKeyError as UnsafeKeyError
from ferroflow.exceptions import UnsupportedFormatError as UnsupportedFormatError
from ferroflow.exceptions import UntrustedResultError as UntrustedResultError

__all__ = [
    "BlobHeader",
    "BucketNotFoundError",
    "CODECS",
    "CorruptResultError",
    "HASH_ALGORITHMS",
    "Hasher",
    "ObjectInfo",
    "ReadPolicy",
    "SigningKey",
    "Store",
    "StoragePermissionError",
    "StorageUnavailableError",
    "UnsafeKeyError",
    "UnsupportedFormatError",
    "UntrustedResultError",
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
    "read_file_prefix",
    "read_header",
    "resolve_key",
    "unframe_blob",
    "write_blob",
]

__version__: str
"""The version of the core, recorded in every blob it writes."""

CODECS: Final[tuple[str, str, str, str]]
"""The codec names `compress`, `decompress` and the blob functions accept:
("lzma", "bz2", "zlib", "zstd")."""

HASH_ALGORITHMS: Final[tuple[str, str, str]]
"""The algorithm names `Hasher` and `hash_buffers` accept: ("blake3", "xxh3-64", "xxh3-128")."""

def compress(
    data: Buffer,
    codec: str,
    *,
    level: int | None = None,
    threads: int = 1,
    extreme: bool = False,
) -> bytes:
    """Compress `data` into one complete stream of `codec`.

    Args:
        data: the bytes to compress.
        codec: one of `CODECS`. "lzma" writes the .xz format, "zlib" a zlib stream: what
            Python's `lzma` and `zlib` modules read.
        level: the codec's compression level; None for its default.
        threads: worker threads for lzma and zstd (0: one per core; ignored by bz2 and zlib).
        extreme: lzma's extreme preset (as `xz -e`); lzma only.

    Returns:
        The compressed stream.

    Raises:
        ValueError: an unknown codec, a level out of the codec's range, too many threads, or
            `extreme` with another codec than lzma.
        MemoryError: the codec's state or output could not be allocated.
    """

def decompress(
    data: Buffer, codec: str, *, size_hint: int | None = None, max_output: int | None = None
) -> bytes:
    """Decompress every stream of `codec` in `data`, concatenated.

    Args:
        data: one or more complete streams of `codec`.
        codec: one of `CODECS`.
        size_hint: the decompressed length, when known: the result is then written straight
            into the returned bytes. A wrong hint is harmless, only slower.
        max_output: refuse to produce more than this many bytes (a guard against
            decompression bombs); None for no limit.

    Returns:
        The decompressed bytes.

    Raises:
        CorruptResultError: `data` is not valid for the codec, truncated or damaged; the
            message starts with the codec's name.
        ValueError: an unknown codec, or the data decompresses to more than `max_output` bytes.
        MemoryError: the output could not be allocated.
    """

@final
class Hasher:
    """An incremental hash over any number of buffers.

    Safe to share between threads: calls take turns on an internal lock, waited for with the
    GIL released, so no update is lost and none raises.
    """

    def __new__(cls, algorithm: str = "blake3") -> Hasher:
        """A hasher with nothing hashed yet.

        Args:
            algorithm: one of `HASH_ALGORITHMS`.

        Raises:
            ValueError: an unknown algorithm.
        """

    def update(self, data: Buffer) -> None:
        """Hash `data`, continuing from what was hashed before."""

    def update_many(self, buffers: Iterable[Buffer]) -> None:
        """Hash each buffer of `buffers` in turn, as if they were concatenated.

        Raises:
            TypeError: `buffers` is not an iterable, or one of its items is not a buffer.
        """

    def digest(self) -> bytes:
        """The digest of everything hashed so far (`digest_size` bytes); hashing can go on."""

    def hexdigest(self) -> str:
        """The digest of everything hashed so far, in hexadecimal; hashing can go on."""

    def copy(self) -> Hasher:
        """An independent hasher that continues from this one's current state."""

    @property
    def algorithm(self) -> str:
        """The algorithm's name, one of `HASH_ALGORITHMS`."""

    @property
    def digest_size(self) -> int:
        """The length of the digest in bytes: 32 (blake3), 8 (xxh3-64) or 16 (xxh3-128)."""

def hash_buffers(buffers: Iterable[Buffer], algorithm: str = "blake3") -> str:
    """The hex digest of the concatenation of `buffers`, without joining them.

    Args:
        buffers: the buffers to hash, in order.
        algorithm: one of `HASH_ALGORITHMS`.

    Returns:
        The digest in hexadecimal (the byte order of `b3sum` and `xxhsum`).

    Raises:
        ValueError: an unknown algorithm.
        TypeError: `buffers` is not an iterable, or one of its items is not a buffer.
    """

_Path = str | os.PathLike[str]

@final
class BlobHeader:
    """What a blob says about itself, read without its payload (see docs/format.md)."""

    @property
    def format_version(self) -> str:
        """The blob format's version, "major.minor"."""

    @property
    def serializer(self) -> str:
        """The serializer's description the writer gave, as JSON text (from a format 3.0 header,
        with the members it left out put back: the same JSON value, see docs/format.md)."""

    @property
    def codec(self) -> str:
        """The codec applied to each segment, one of `CODECS`, or "none"."""

    @property
    def level(self) -> int | None:
        """The compression level asked for; None for the codec's default or without a codec."""

    @property
    def raw_length(self) -> int:
        """The total length of the segments, uncompressed."""

    @property
    def stored_length(self) -> int:
        """The total length of the segments as stored (compressed, without padding)."""

    @property
    def checksum_algorithm(self) -> str:
        """The algorithm of the header's and the segments' checksums ("xxh3-64")."""

    @property
    def ferroflow_version(self) -> str:
        """The version of the ferroflow that wrote the blob."""

    @property
    def created_at(self) -> datetime.datetime:
        """When the blob was framed, as an aware UTC datetime."""

    @property
    def alignment(self) -> int:
        """Segments start at multiples of this many bytes (64; 8 for a payload under 4 KiB)."""

    @property
    def key(self) -> str | None:
        """The storage key the blob was written under; None when the writer gave none."""

    @property
    def codec_skipped(self) -> str | None:
        """The codec asked for but not applied because it would not have made the payload
        smaller (`codec` is then "none"); None otherwise."""

    @property
    def signed_by(self) -> str | None:
        """The id of the `SigningKey` that signed the blob; None when it is not signed."""

    @property
    def segment_raw_lengths(self) -> list[int]:
        """Each segment's uncompressed length, in order."""

    @property
    def segment_stored_lengths(self) -> list[int]:
        """Each segment's stored length, in order."""

    def to_dict(self) -> dict[str, Any]:
        """Every property above, by name, in a plain dict."""

@final
class SigningKey:
    """A key that signs blobs (a keyed BLAKE3 MAC over the header and the segment checksums) and
    verifies their signatures. The MAC key and the public `key_id` are derived from `material`."""

    def __new__(cls, material: bytes) -> SigningKey:
        """Raises ValueError when `material` is shorter than 16 bytes."""

    @property
    def key_id(self) -> str:
        """16 hex digits naming the key in the headers it signs; reveals nothing of the key."""

@final
class ReadPolicy:
    """What a read checks besides integrity, before it returns any of a blob's payload."""

    def __new__(
        cls,
        *,
        verification_keys: Sequence[SigningKey] | None = None,
        require_signature: bool = False,
        max_decompressed_length: int | None = None,
    ) -> ReadPolicy:
        """A blob signed by one of `verification_keys` is verified (a wrong MAC is refused).
        With `require_signature`, a blob not signed by one of them is refused too. A compressed
        blob that would decompress to more than `max_decompressed_length` bytes is refused."""

    @property
    def verification_key_ids(self) -> list[str]: ...
    @property
    def require_signature(self) -> bool: ...
    @property
    def max_decompressed_length(self) -> int | None: ...

def write_blob(
    path: _Path,
    segments: Iterable[Buffer],
    *,
    serializer: str,
    codec: str = "none",
    level: int | None = None,
    threads: int = 1,
    durable: bool = False,
    key: str | None = None,
    signing_key: SigningKey | None = None,
) -> BlobHeader:
    """Frame `segments` into a blob and write it to `path` atomically, in one pass.

    The blob goes to a temporary file beside `path` that is then renamed over it, so readers
    see the old file or the new one, never a mix; missing folders are created.

    Args:
        path: the file to write or replace.
        segments: the payload, as the serializer produced it; written without being joined.
        serializer: the serializer's description, as JSON text.
        codec: "none", or one of `CODECS` to compress each segment.
        level: the codec's level; None for its default (must be None without a codec).
        threads: worker threads for lzma and zstd.
        durable: also fsync the file and its folder, so the blob survives a power loss.
        key: the storage key, recorded in the header; a read given another key refuses the blob.
        signing_key: signs the blob.

    Returns:
        The header written.

    Raises:
        ValueError: `serializer` is not JSON text, or an invalid codec, level or thread count.
        TypeError: `segments` is a single buffer or not an iterable, or holds a non-buffer.
        OSError: the file or a folder could not be written; `path` is left as it was.
    """

def frame_blob(
    segments: Iterable[Buffer],
    *,
    serializer: str,
    codec: str = "none",
    level: int | None = None,
    threads: int = 1,
    key: str | None = None,
    signing_key: SigningKey | None = None,
) -> bytes:
    """The blob `write_blob` would write, in memory.

    Args:
        segments, serializer, codec, level, threads, key, signing_key: as for `write_blob`.

    Returns:
        The whole blob.

    Raises:
        ValueError, TypeError: as for `write_blob`.
    """

def read_blob(
    path: _Path, *, key: str | None = None, policy: ReadPolicy | None = None
) -> tuple[BlobHeader, list[bytes]]:
    """Read and verify a blob file (every checksum, before decompressing).

    Args:
        path: the blob file.
        key: the storage key asked for: a blob whose header records another key was copied or
            moved, and is refused as corrupt.
        policy: signatures and the decompressed size, checked before any payload is read.

    Returns:
        Its header and its decompressed segments, each in a new bytes object.

    Raises:
        CorruptResultError: the file is damaged or truncated, is no ferroflow blob, is not a
            regular file (a FIFO, a device), records another key, or is over the policy's
            decompressed size.
        UntrustedResultError: the policy's signature check failed.
        UnsupportedFormatError: the blob was written in a newer, incompatible format version.
        OSError: the file could not be read (FileNotFoundError, ...).
    """

def map_blob(
    path: _Path, *, key: str | None = None, policy: ReadPolicy | None = None
) -> tuple[BlobHeader, list[memoryview]]:
    """Memory-map and verify a blob file.

    Args:
        path, key, policy: as for `read_blob`.

    Returns:
        Its header and its segments as writable memoryviews: of a private (copy-on-write) map of
        the file when the blob is uncompressed, so writing to them never changes the file; of
        decompressed memory otherwise.

    Raises:
        CorruptResultError, UnsupportedFormatError, OSError: as for `read_blob`.
    """

def load_blob(
    path: _Path, map_from: int, *, key: str | None = None, policy: ReadPolicy | None = None
) -> tuple[BlobHeader, list[bytes] | list[memoryview]]:
    """Read and verify a blob file the cheapest way for its size, in one call.

    Args:
        path, key, policy: as for `read_blob`.
        map_from: files of this many bytes or more are mapped, as by `map_blob`; smaller ones
            are read, as by `read_blob`.

    Returns:
        Its header and its segments: bytes for a read file, memoryviews for a mapped one.

    Raises:
        CorruptResultError, UnsupportedFormatError, OSError: as for `read_blob`.
    """

def unframe_blob(
    data: Buffer, *, key: str | None = None, policy: ReadPolicy | None = None
) -> tuple[BlobHeader, list[bytes]]:
    """Verify a blob held in memory (as `frame_blob` returns it).

    Args:
        data: the whole blob.
        key, policy: as for `read_blob`.

    Returns:
        Its header and its decompressed segments, each in a new bytes object.

    Raises:
        CorruptResultError: the blob is damaged or truncated, or is no ferroflow blob.
        UnsupportedFormatError: the blob was written in a newer, incompatible format version.
    """

def read_header(path: _Path, *, key: str | None = None, policy: ReadPolicy | None = None) -> BlobHeader:
    """The header of a blob file, verified, without reading its payload.

    Args:
        path, key, policy: as for `read_blob` (a signature check reads the trailer too).

    Returns:
        The header.

    Raises:
        CorruptResultError: the header is damaged, or the file's length is not the one the
            header describes.
        UnsupportedFormatError, OSError: as for `read_blob`.
    """

def atomic_write(path: _Path, segments: Iterable[Buffer], *, durable: bool = False) -> int:
    """Write `segments`, one after another, to `path` atomically, without joining them.

    Args:
        path: the file to write or replace (missing folders are created).
        segments: the content.
        durable: also fsync the file and its folder, so the content survives a power loss.

    Returns:
        The number of bytes written.

    Raises:
        TypeError: `segments` is a single buffer or not an iterable, or holds a non-buffer.
        OSError: the file or a folder could not be written; `path` is left as it was.
    """

def read_file(path: _Path) -> bytes:
    """The whole content of the file at `path`.

    Raises:
        CorruptResultError: `path` is not a regular file (a FIFO, a device): refused at once.
        OSError: the file could not be read, or changed size while it was read.
    """

def read_file_prefix(path: _Path, length: int) -> bytes:
    """The first `length` bytes of the file at `path` (fewer when it is shorter).

    Raises:
        CorruptResultError: `path` is not a regular file (a FIFO, a device): refused at once.
        OSError: the file could not be read.
    """

def resolve_key(base: _Path, key: str) -> str:
    """`base` joined with the storage key `key`.

    Both "/" and "\\" separate folders in a key, on every platform; empty and "." parts are
    dropped.

    Args:
        base: the storage folder.
        key: a relative key such as "results/abc123".

    Returns:
        The path of the key's file.

    Raises:
        UnsafeKeyError: the key could name something outside `base`: a ".." part, an absolute
            path, a drive letter, a NUL character, or no file at all.
    """

def is_temporary_file_name(name: str) -> bool:
    """Whether `name` is the name of a temporary file of `atomic_write` or `write_blob`.

    Such a file is a write in progress, or the leftover of a writer killed before its rename.

    Args:
        name: a file name, without its folder.

    Returns:
        True for the names these writers give their temporary files
        (".<target name>.<16 hex digits>.tmp").
    """

@final
class ObjectInfo:
    """What an object store says about one object."""

    @property
    def key(self) -> str:
        """The object's key, relative to the store's prefix ("/" between folders)."""

    @property
    def size(self) -> int:
        """The object's length in bytes."""

    @property
    def last_modified(self) -> float:
        """When the object was last written, in seconds since the Unix epoch."""

    @property
    def e_tag(self) -> str | None:
        """The store's entity tag of the object, if it gives one."""

@final
class Store:
    """A handle on an object store: a bucket (and a prefix in it) of S3 or an S3-compatible
    server, Google Cloud Storage, Azure Blob Storage, or an in-memory store.

    Every call that makes a request blocks with the GIL released. Requests that get no answer
    fail after `timeout`, and failures (connection errors, 5xx and 429 answers) are retried
    with exponential backoff at most `max_retries` times, none started after `retry_timeout`.
    Errors: BucketNotFoundError, StoragePermissionError, StorageUnavailableError, and
    FileNotFoundError for a missing object; CorruptResultError for a damaged blob.
    """

    def __new__(
        cls,
        url: str,
        options: Sequence[tuple[str, str]] | None = None,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_retries: int = 3,
        retry_timeout: float = 30.0,
        part_size: int | None = None,
        max_parts_in_flight: int | None = None,
        multipart_threshold: int | None = None,
        reads_in_flight: int | None = None,
    ) -> Store:
        """Open a handle on the store at `url`; no request is made yet.

        Args:
            url: "s3://bucket/prefix", "gs://bucket/prefix", "az://container/prefix", an S3 or
                Azure https:// URL, "memory://" (a new empty store) or "memory://name" (the
                process's store of that name).
            options: object_store configuration keys and values ("aws_access_key_id",
                "aws_endpoint", "aws_region", ...); keys not given come from the environment
                (AWS_*, GOOGLE_*, AZURE_*).
            timeout, connect_timeout: seconds, for a whole request and for a connection.
            max_retries, retry_timeout: how often and for how long failures are retried.
            part_size: the parts of multipart uploads (8 MiB).
            max_parts_in_flight: parts uploading at once (4).
            multipart_threshold: uploads up to this many bytes are one PUT, larger ones
                multipart uploads; None: 64 MiB, or 1 GiB for an http:// endpoint (a local or
                LAN server), and never less than the part size.
            reads_in_flight: concurrent ranged GETs (8 MiB each) reading one object; None: 4,
                or one plain GET for an http:// endpoint.

        Raises:
            ValueError: an unsupported URL, an unknown option, or an invalid value.
        """

    @property
    def url(self) -> str:
        """The URL the store was opened with."""

    @property
    def kind(self) -> str:
        """ "s3", "gcs", "azure" or "memory"."""

    def write_blob(
        self,
        key: str,
        segments: Iterable[Buffer],
        *,
        serializer: str,
        codec: str = "none",
        level: int | None = None,
        threads: int = 1,
        signing_key: SigningKey | None = None,
    ) -> BlobHeader:
        """Frame `segments` as `write_blob` does for a file and upload the blob to `key`, the
        segments sent from their own memory (no copy; they are held until the upload ends): one
        PUT up to the multipart threshold, else a multipart upload of slices of them. The object
        appears whole or not at all. The header records `key` and, with `signing_key`, is signed."""

    def read_blob(self, key: str, *, policy: ReadPolicy | None = None) -> tuple[BlobHeader, list[memoryview]]:
        """Read the blob at `key` into one buffer and verify every checksum; the segments are
        views of that buffer (decompressed buffers for a compressed blob). A blob recording
        another key is refused, and `policy`'s checks are made, as for a file."""

    def read_header(self, key: str, *, policy: ReadPolicy | None = None) -> BlobHeader:
        """The verified header of the blob at `key`, read with a ranged GET of its start (and of
        its trailer when a signature is verified); checked as `read_blob` checks."""

    def put(self, key: str, segments: Iterable[Buffer]) -> int:
        """Upload `segments`, one after another, as the object at `key` (replacing it), without
        joining them; returns the number of bytes written."""

    def put_if_absent(self, key: str, data: Buffer) -> bool:
        """Create the object at `key` unless one exists (a create-only PUT); True when this call
        created it, False when an object was already there (left unchanged)."""

    def get(self, key: str) -> bytes:
        """The whole object at `key`."""

    def head(self, key: str) -> ObjectInfo:
        """What the store says about the object at `key`."""

    def exists(self, key: str) -> bool:
        """Whether an object is at `key`."""

    def delete(self, key: str) -> None:
        """Delete the object at `key`; a missing object is not an error."""

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object under the folder `prefix` ("" for the whole store), sorted by key."""
