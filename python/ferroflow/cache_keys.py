"""Cache keys for tasks: `task_input_hash`, `task_input_hash_blake3`, and the canonical encoding.

A cache key must be the same for the same task and inputs in every process, run and Python version,
so it cannot hash `hash()`, `repr()` or Python bytecode (Prefect 2 hashed `co_code`, and its keys
changed with each Python release). ferroflow hashes a canonical encoding instead, in the Rust core,
and hands large buffers (bytes, NumPy arrays) to the hasher without copying them.

Two key functions hash the same encoding of the same (identity, inputs) pair:

- `task_input_hash`: XXH3-128, 32 hex digits, ~19 GB/s on one core. Like the md5 of Prefect 2's
  and joblib's keys (also 128 bits), it identifies inputs; it is not built to resist someone who
  crafts two inputs with the same key.
- `task_input_hash_blake3`: BLAKE3-256, 64 hex digits, a cryptographic hash, for pipelines whose
  inputs come from parties who could gain by making one input hit another's cache entry.

What is hashed is a domain prefix, then the canonical encoding of the tuple
`(task_identity(task), parameters)`:

    b"ferroflow.task_input_hash\\x00"  version byte  algorithm name (ASCII)  b"\\x00"

The version byte is ENCODING_VERSION: keys made under another encoding version never match, so
a change of encoding or hash makes old cache entries miss instead of hitting wrong ones. The
algorithm's name ("xxh3-128", "blake3") makes each key function hash its own bytes: a key is
never valid for two algorithms, whatever later algorithms are added (the two functions' keys
also differ in length). The NUL ends the name, so a prefix can never be read as a shorter name
followed by the start of an encoding.

The canonical encoding (version 3; version 2 encoded every buffer as `b` and every path under one
type name, so a `bytes`, an `array.array` and a NumPy array with the same raw bytes, or
`PurePosixPath("a/b")` and `PureWindowsPath("a/b")`, could share a key; version 1 had version 2's
encoding, keyed by BLAKE3 only and without the algorithm in the prefix). Every value is a one-byte
tag and a payload; `u64` is an unsigned 64-bit little-endian integer and `text` is
`u64 length + UTF-8`:

    N                                 None
    T / F                             True / False
    i  u64 length, bytes              int: two's complement, little-endian, bit_length // 8 + 1 bytes
    f  8 bytes                        float: IEEE 754 binary64, little-endian (one NaN for all NaNs)
    c  8 bytes, 8 bytes               complex: real and imaginary parts as floats
    s  text                           str (lone surrogates kept, as "surrogatepass" encodes them)
    b  u64 length, bytes              bytes and bytearray (and their subclasses): their bytes
    B  text type, text format, u64 itemsize, u64 ndim, u64 dims..., u64 length, bytes
                                      any other buffer (memoryview, array.array, mmap, ...): the
                                      qualified type name, the buffer's struct format and item
                                      size, its shape, and its bytes in C order
    l / t  u64 count, values          list / tuple (subclasses such as named tuples included)
    d  u64 count, (key, value)...     dict and other mappings, pairs sorted by the key's encoding
    S  u64 count, values              set / frozenset, members sorted by their encoding
    E  text type, value               Enum member: qualified type name, then its value
    D  text type, u64 count, (text name, value)...   dataclass: its fields in definition order
    M  text type, u64 count, (text name, value)...   pydantic model: its fields, then extra fields
    A  text type, text dtype, u64 ndim, u64 dims..., u64 length, bytes
                                      NumPy array or scalar: the qualified type name
                                      (`numpy.ndarray`, `numpy.float64`, ...), dtype (`dtype.str`, or
                                      the field description of a structured dtype), shape, and the
                                      raw memory in C order (a non-contiguous array is made
                                      contiguous first: a copy)
    O  text type, u64 ndim, u64 dims..., values
                                      NumPy array of Python objects: type name, shape, then each element
    r  text type, text                datetime, date, time, timedelta, Decimal, UUID, paths:
                                      qualified type name and a canonical text form (ISO 8601,
                                      str); a path is named by its flavour,
                                      `pathlib.PurePosixPath` (POSIX form) or
                                      `pathlib.PureWindowsPath` (POSIX form, lower case: Windows
                                      paths compare without case)
    p  u64 length, bytes              anything else: its cloudpickle bytes

Numbers keep their type (`1`, `1.0` and `True` differ); equal containers of kinds Python treats
as interchangeable encode alike (`set`/`frozenset`, `bytes`/`bytearray`); `list` and `tuple`
differ, and so do buffers of different types, formats or shapes holding the same bytes. A
`pathlib.Path` is a `PurePosixPath` on POSIX systems and a `PureWindowsPath` on Windows, so a path
input gives different keys on the two; pass `str(path)` (or `path.as_posix()`) for keys that
agree across them. The cloudpickle fallback is stable only as far as the object's pickle is: most library
types pickle deterministically, but an object whose pickle holds a set, a memory address or a
random order gives a different key each time (the task then misses the cache; it never hits a
wrong entry). Objects that pickling refuses make the key None: the task runs without caching.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import decimal
import enum
import functools
import inspect
import math
import pathlib
import struct
import sys
import textwrap
import uuid
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import cloudpickle  # type: ignore[import-untyped]

import ferroflow._core as _core
from ferroflow.exceptions import CacheKeyWarning

ENCODING_VERSION = 3
# The hash of each key function (names as `_core.Hasher` knows them).
FAST_KEY_ALGORITHM = "xxh3-128"
CRYPTOGRAPHIC_KEY_ALGORITHM = "blake3"

_u64 = struct.Struct("<Q").pack
_f64 = struct.Struct("<d").pack
_CANONICAL_NAN = _f64(math.nan)
# Buffers shorter than this are copied into the running chunk; longer ones are passed to the
# hasher as they are, which costs one more buffer in update_many but no copy.
_INLINE_LIMIT = 4096


class _TaskLike(Protocol):
    fn: Callable[..., Any]
    name: str


class _TaskRunContextLike(Protocol):
    task: _TaskLike


class UnhashableInput(TypeError):
    """An input the canonical encoding cannot represent (e.g. it refuses to be pickled)."""


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class _Encoder:
    """Builds the canonical encoding as a list of buffers: small parts joined, large ones by reference."""

    def __init__(self, active: set[int] | None = None) -> None:
        self.chunks: list[Any] = []
        self.pending = bytearray()
        self.active = set() if active is None else active  # containers being encoded: cycle guard

    def finish(self) -> list[Any]:
        if self.pending:
            self.chunks.append(bytes(self.pending))
            self.pending = bytearray()
        return self.chunks

    def to_bytes(self, value: Any) -> bytes:
        """`value`'s encoding in one bytes object (for sorting dict keys and set members)."""
        encoder = _Encoder(self.active)
        encoder.value(value)
        return b"".join(encoder.finish())

    # -- primitives --------------------------------------------------------------------------------

    def raw(self, data: Any) -> None:
        """A length-prefixed buffer; `data` is a bytes-like object of unsigned bytes."""
        self.pending += _u64(len(data))
        if len(data) < _INLINE_LIMIT:
            self.pending += data
        else:
            self.finish()
            self.chunks.append(data)

    def text(self, value: str) -> None:
        self.raw(value.encode("utf-8", "surrogatepass"))

    def count(self, n: int) -> None:
        self.pending += _u64(n)

    # -- values ------------------------------------------------------------------------------------

    def value(self, value: Any) -> None:
        encode = _EXACT_TYPES.get(type(value))
        if encode is not None:
            encode(self, value)
        else:
            self.other(value)

    def none(self, _: None) -> None:
        self.pending += b"N"

    def boolean(self, value: bool) -> None:
        self.pending += b"T" if value else b"F"

    def integer(self, value: int) -> None:
        self.pending += b"i"
        self.raw(int(value).to_bytes((value.bit_length() + 8) // 8, "little", signed=True))

    def floating(self, value: float) -> None:
        self.pending += b"f"
        self.pending += _CANONICAL_NAN if math.isnan(value) else _f64(value)

    def complex_number(self, value: complex) -> None:
        self.pending += b"c"
        for part in (value.real, value.imag):
            self.pending += _CANONICAL_NAN if math.isnan(part) else _f64(part)

    def string(self, value: str) -> None:
        data = value.encode("utf-8", "surrogatepass")
        if len(data) < _INLINE_LIMIT:
            self.pending += b"s" + _u64(len(data)) + data
        else:
            self.pending += b"s"
            self.raw(data)

    def buffer(self, value: Any) -> None:
        """bytes and bytearray: Python compares them by content, so they encode alike."""
        self.pending += b"b"
        self.raw(value)

    def typed_buffer(self, value: Any) -> None:
        """Any other buffer (memoryview, array.array, mmap, ...): its type, element format, item
        size and shape come first, so that equal raw bytes of different kinds never share a key."""
        view = memoryview(value)
        self.pending += b"B"
        self.text(_qualified_name(type(value)))
        self.text(view.format)
        self.count(view.itemsize)
        self._shape(view.shape or ())
        if not view.c_contiguous:
            view = memoryview(view.tobytes())
        self.raw(view.cast("B") if view.format != "B" or view.ndim != 1 else view)

    def sequence(self, value: list[Any] | tuple[Any, ...]) -> None:
        key = self._enter(value)
        try:
            self.pending += (b"t" if isinstance(value, tuple) else b"l") + _u64(len(value))
            for item in value:
                self.value(item)
        finally:
            self.active.discard(key)

    def mapping(self, value: Mapping[Any, Any]) -> None:
        key = self._enter(value)
        try:
            if len(value) == 1:  # one parameter: nothing to sort (most tasks take one or two)
                ((name, item),) = value.items()
                pairs = [(self._key_bytes(name), item)]
            else:
                pairs = sorted(((self._key_bytes(name), item) for name, item in value.items()), key=_first)
            self.pending += b"d" + _u64(len(pairs))
            for encoded_key, item in pairs:
                self.pending += encoded_key
                self.value(item)
        finally:
            self.active.discard(key)

    def set_of(self, value: set[Any] | frozenset[Any]) -> None:
        key = self._enter(value)
        try:
            members = sorted(self._key_bytes(member) for member in value)
            self.pending += b"S" + _u64(len(members))
            for member in members:
                self.pending += member
        finally:
            self.active.discard(key)

    def _key_bytes(self, value: Any) -> bytes:
        """The encoding of a dict key or set member, to sort by. Parameter names are short strings:
        they skip the separate encoder."""
        if type(value) is str:
            data = value.encode("utf-8", "surrogatepass")
            return b"s" + _u64(len(data)) + data
        return self.to_bytes(value)

    def text_form(self, value: Any) -> None:
        self.pending += b"r"
        if isinstance(value, pathlib.PureWindowsPath):
            # Tagged by flavour, as Python compares them: PurePosixPath("a/b") differs from
            # PureWindowsPath("a/b"); Windows paths compare without case, so they are folded.
            self.text("pathlib.PureWindowsPath")
            self.text(value.as_posix().lower())
        elif isinstance(value, pathlib.PurePath):
            self.text("pathlib.PurePosixPath")
            self.text(value.as_posix())
        else:
            self.text(_qualified_name(type(value)))
            self.text(value.isoformat() if hasattr(value, "isoformat") else str(value))

    def fields(self, tag: bytes, value: Any, items: list[tuple[str, Any]]) -> None:
        key = self._enter(value)
        try:
            self.pending += tag
            self.text(_qualified_name(type(value)))
            self.count(len(items))
            for name, item in items:
                self.text(name)
                self.value(item)
        finally:
            self.active.discard(key)

    def other(self, value: Any) -> None:
        """Types matched by class hierarchy rather than exact type, then the pickle fallback."""
        numpy = sys.modules.get("numpy")
        if numpy is not None and isinstance(value, numpy.ndarray | numpy.generic):
            self.ndarray(numpy, numpy.asarray(value), _qualified_name(type(value)))
        elif isinstance(value, enum.Enum):
            self.pending += b"E"
            self.text(_qualified_name(type(value)))
            self.value(value.value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            self.fields(b"D", value, [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)])
        elif _is_pydantic_model(value):
            extra = getattr(value, "model_extra", None) or {}
            names = [*type(value).model_fields, *sorted(extra)]
            self.fields(b"M", value, [(name, getattr(value, name)) for name in names])
        else:
            self._by_base_class(value)

    def _by_base_class(self, value: Any) -> None:
        for base, encode in _BASE_TYPES:
            if isinstance(value, base):
                encode(self, value)
                return
        try:
            memoryview(value)
        except TypeError:
            self.pickled(value)
        else:
            self.typed_buffer(value)

    def ndarray(self, numpy: Any, array: Any, kind: str) -> None:
        """`kind` is the qualified name of the value's type: an array, a matrix or a NumPy scalar
        with the same dtype and bytes are different inputs."""
        if array.dtype.hasobject:
            key = self._enter(array)
            try:
                self.pending += b"O"
                self.text(kind)
                self._shape(array.shape)
                for item in array.flat:
                    self.value(item)
            finally:
                self.active.discard(key)
            return
        self.pending += b"A"
        self.text(kind)
        self.text(str(array.dtype.descr) if array.dtype.fields else array.dtype.str)
        self._shape(array.shape)
        if not array.flags.c_contiguous:
            array = numpy.ascontiguousarray(array)
        # A flat uint8 view of the same memory: no copy, and valid for dtypes (datetime64, ...)
        # that memoryview itself refuses.
        self.raw(memoryview(array.reshape(-1).view(numpy.uint8)))

    def _shape(self, shape: tuple[int, ...]) -> None:
        self.count(len(shape))
        for dimension in shape:
            self.count(dimension)

    def pickled(self, value: Any) -> None:
        try:
            data = cloudpickle.dumps(value, protocol=5)
        except Exception as error:
            raise UnhashableInput(f"{_qualified_name(type(value))} cannot be pickled ({error})") from error
        self.pending += b"p"
        self.raw(data)

    def _enter(self, container: Any) -> int:
        """Mark a container as being encoded (the caller unmarks it): meeting it again inside
        itself is a cycle, which no encoding can end."""
        key = id(container)
        if key in self.active:
            raise UnhashableInput("it contains itself (a reference cycle)")
        self.active.add(key)
        return key


def _first(pair: tuple[bytes, Any]) -> bytes:
    return pair[0]


def _is_pydantic_model(value: Any) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(value, pydantic.BaseModel)


_EXACT_TYPES: dict[type, Callable[[_Encoder, Any], None]] = {
    type(None): _Encoder.none,
    bool: _Encoder.boolean,
    int: _Encoder.integer,
    float: _Encoder.floating,
    complex: _Encoder.complex_number,
    str: _Encoder.string,
    bytes: _Encoder.buffer,
    bytearray: _Encoder.buffer,
    memoryview: _Encoder.typed_buffer,
    list: _Encoder.sequence,
    tuple: _Encoder.sequence,
    dict: _Encoder.mapping,
    set: _Encoder.set_of,
    frozenset: _Encoder.set_of,
    datetime.datetime: _Encoder.text_form,
    datetime.date: _Encoder.text_form,
    datetime.time: _Encoder.text_form,
    datetime.timedelta: _Encoder.text_form,
    decimal.Decimal: _Encoder.text_form,
    uuid.UUID: _Encoder.text_form,
}

# Subclasses (IntEnum and dataclasses are caught before these), in the order they are tried.
_BASE_TYPES: list[tuple[type | tuple[type, ...], Callable[[_Encoder, Any], None]]] = [
    (int, _Encoder.integer),
    (float, _Encoder.floating),
    (str, _Encoder.string),
    ((bytes, bytearray), _Encoder.buffer),
    ((list, tuple), _Encoder.sequence),
    (Mapping, _Encoder.mapping),
    ((set, frozenset), _Encoder.set_of),
    (
        (datetime.date, datetime.time, datetime.timedelta, decimal.Decimal, uuid.UUID, pathlib.PurePath),
        _Encoder.text_form,
    ),
]


def canonical_encoding(value: Any) -> bytes:
    """`value`'s canonical encoding in one piece (`hash_canonical` streams it after a domain prefix)."""
    encoder = _Encoder()
    encoder.value(value)
    return b"".join(encoder.finish())


@functools.cache
def _domain(algorithm: str) -> bytes:
    """What every digest by `algorithm` starts with (the module docstring gives the layout)."""
    return b"ferroflow.task_input_hash\x00" + bytes([ENCODING_VERSION]) + algorithm.encode("ascii") + b"\x00"


def hash_canonical(value: Any, algorithm: str = FAST_KEY_ALGORITHM) -> str:
    """The hex digest of `value`'s canonical encoding after `algorithm`'s domain prefix, large
    buffers hashed in place: `task_input_hash` is `hash_canonical((task_identity(task), parameters))`,
    and `task_input_hash_blake3` the same with `algorithm="blake3"`."""
    hasher = _core.Hasher(algorithm)  # first: an unknown algorithm is refused before any work
    encoder = _Encoder()
    encoder.value(value)
    hasher.update_many([_domain(algorithm), *encoder.finish()])
    return str(hasher.hexdigest())


# ---------------------------------------------------------------------------------------------------
# The task's identity


_source_digests: dict[Any, str | None] = {}
# Where a function keeps its source digest: its `__dict__` travels with it when cloudpickle sends
# it by value (a task defined in `__main__` or a notebook), to workers that cannot read its source.
SOURCE_DIGEST_ATTRIBUTE = "__ferroflow_source_digest__"


def carry_source_digest(fn: Any, digest: str) -> None:
    """Record `digest` on the function `fn` (nothing for a callable without attributes)."""
    try:
        fn.__dict__[SOURCE_DIGEST_ATTRIBUTE] = digest
    except (AttributeError, TypeError):
        pass


def _source_digest(fn: Callable[..., Any]) -> str | None:
    """BLAKE3 of the function's source text, or None when Python cannot find it (REPL, C functions).

    Source, not bytecode: it is the same in every Python version. Line endings and the common
    indentation are normalized, so a checkout with Windows line endings keeps its keys. Cached per
    code object: reading source is slow, and a function whose code compares equal has the same
    behaviour (only its comments can differ).

    BLAKE3 for both key functions: `task_input_hash_blake3` resists crafted collisions only if
    every part of what it hashes does, and this digest is made once per code object, so its cost
    never shows in a key.
    """
    code = getattr(fn, "__code__", fn)
    try:
        return _source_digests[code]
    except (KeyError, TypeError):
        pass
    try:
        source = _source_without_decorators(inspect.getsource(fn))
    except (OSError, TypeError):
        # A function sent by value to a process without its source file carries the digest
        # made where the source was (see `carry_source_digest`).
        digest = getattr(fn, SOURCE_DIGEST_ATTRIBUTE, None)
    else:
        hasher = _core.Hasher("blake3")
        hasher.update(source.encode("utf-8", "surrogatepass"))
        digest = str(hasher.hexdigest())
    try:
        _source_digests[code] = digest
    except TypeError:  # an unhashable callable: nothing to cache it by
        pass
    return digest


def _source_without_decorators(source: str) -> str:
    """The function's text from its `def` line on: `@task(retries=3)` becoming `retries=5`
    changes how the task runs, not what it computes, so it must not invalidate the cache."""
    source = textwrap.dedent(source.replace("\r\n", "\n"))
    try:
        definition = ast.parse(source).body[0]
    except (SyntaxError, IndexError):  # e.g. a lambda: getsource gives the lines around it
        return source
    if not isinstance(definition, ast.FunctionDef | ast.AsyncFunctionDef):
        return source
    return "\n".join(source.splitlines()[definition.lineno - 1 :])


def task_identity(task: _TaskLike) -> tuple[str, str | None]:
    """What `task_input_hash` hashes for the task: its function's qualified name and source digest.

    The function is unwrapped first (`functools.wraps` decorators), so the key follows the user's
    code; a callable without a qualified name is known by the task's name.
    """
    fn = inspect.unwrap(task.fn)
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    name = f"{module}.{qualname}" if module and qualname else str(task.name)
    digest = _source_digest(fn)
    if digest is not None:
        carry_source_digest(fn, digest)
    return name, digest


_identity_prefixes: dict[tuple[Any, str, str], bytes] = {}


def _identity_prefix(task: _TaskLike, algorithm: str) -> bytes:
    """What every key of `task` by `algorithm` starts with: the algorithm's domain prefix, then
    the start of the canonical encoding of the pair (identity, inputs) — the pair's tag and
    count, and the identity.

    Made once per (function, name, algorithm): unwrapping the function and encoding its identity
    would otherwise be a tenth of a small cache hit. The source digest behind it is cached per
    code object anyway, so this changes no key.
    """
    cache_key = (task.fn, str(task.name), algorithm)
    try:
        return _identity_prefixes[cache_key]
    except KeyError:
        prefix = _identity_prefixes[cache_key] = _make_identity_prefix(task, algorithm)
        return prefix
    except TypeError:  # an unhashable callable: nothing to cache it by
        return _make_identity_prefix(task, algorithm)


def _make_identity_prefix(task: _TaskLike, algorithm: str) -> bytes:
    encoder = _Encoder()
    encoder.pending += b"t" + _u64(2)
    encoder.value(task_identity(task))
    return _domain(algorithm) + b"".join(encoder.finish())


# ---------------------------------------------------------------------------------------------------
# The cache key function


def task_input_hash(context: _TaskRunContextLike, parameters: Mapping[str, Any]) -> str | None:
    """A cache key from the task's identity and its inputs: `@task(cache_key_fn=task_input_hash)`.

    The same task code with equal inputs gives the same key in every process, run and Python
    version; changing the task's source or any input changes it. Returns None (the task runs
    without caching) with a `CacheKeyWarning` naming the input when an input cannot be hashed.

    The key is the XXH3-128 digest (32 hex digits) of the canonical encoding: like md5 in Prefect 2
    and joblib, it tells inputs apart but does not resist inputs crafted to collide. Where inputs
    come from untrusted parties, use `task_input_hash_blake3`.
    """
    return _task_key(context, parameters, FAST_KEY_ALGORITHM, "task_input_hash")


def task_input_hash_blake3(context: _TaskRunContextLike, parameters: Mapping[str, Any]) -> str | None:
    """`task_input_hash` with BLAKE3-256 (64 hex digits), a cryptographic hash: no one can make two
    different inputs share a key, so an input crafted by an untrusted party cannot hit the cache
    entry of another. Its keys never equal `task_input_hash`'s. It hashes a large input
    3-6x more slowly, even spread over every core (`docs/caching.md` has figures).
    """
    return _task_key(context, parameters, CRYPTOGRAPHIC_KEY_ALGORITHM, "task_input_hash_blake3")


def _task_key(
    context: _TaskRunContextLike, parameters: Mapping[str, Any], algorithm: str, function_name: str
) -> str | None:
    """The body of both key functions; `function_name` is the public one, for the warning."""
    task = context.task
    try:
        encoder = _Encoder()
        encoder.mapping(parameters)
        hasher = _core.Hasher(algorithm)
        hasher.update_many([_identity_prefix(task, algorithm), *encoder.finish()])
        return str(hasher.hexdigest())
    except (UnhashableInput, RecursionError) as error:
        culprit = _first_unhashable(parameters)
        warnings.warn(
            f"{function_name} could not hash the input {culprit!r} of task {task.name!r}: "
            f"{_reason(error)}. The task runs without caching; pass a value that can be pickled, or "
            "give the task its own cache_key_fn.",
            CacheKeyWarning,
            stacklevel=3,  # the caller of the public key function
        )
        return None


def _first_unhashable(parameters: Mapping[str, Any]) -> str | None:
    for name, value in parameters.items():
        try:
            canonical_encoding(value)
        except (UnhashableInput, RecursionError):
            return name
    return None


def _reason(error: BaseException) -> str:
    if isinstance(error, RecursionError):
        return "it is nested too deeply to encode"
    return str(error)


__all__ = [
    "CRYPTOGRAPHIC_KEY_ALGORITHM",
    "ENCODING_VERSION",
    "FAST_KEY_ALGORITHM",
    "UnhashableInput",
    "canonical_encoding",
    "hash_canonical",
    "task_identity",
    "task_input_hash",
    "task_input_hash_blake3",
]
