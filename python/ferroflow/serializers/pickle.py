"""`PickleSerializer`: pickle protocol 5, with large buffers (NumPy arrays, big `bytes`) kept out
of the pickle stream as segments of their own, written and read without copies."""

from __future__ import annotations

import dataclasses
import functools
import pickle
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any, Literal

from ferroflow.exceptions import SerializationError
from ferroflow.serializers._libraries import (
    _accepts_keyword,
    _import_module,
    _require_functions,
    register_library,
)
from ferroflow.serializers.base import Serializer, _b64decode

# A `bytes` result at least this large is written as its own blob segment, straight from its
# memory, instead of being copied into the pickle stream.
OUT_OF_BAND_BYTES_MIN_SIZE = 64 * 1024


class _OutOfBandBytes:
    """A large `bytes` value on its way into a pickle: it reduces to a PickleBuffer over the
    bytes' own memory, which protocol 5 hands to the buffer callback instead of copying."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return _bytes_from_buffer, (pickle.PickleBuffer(self.data),)


def _bytes_from_buffer(buffer: Any) -> bytes:
    """Rebuilds a large `bytes` result from its out-of-band segment: the caller gets real
    `bytes`, not a view of a memory map. A segment read by the core (a view of its segment
    buffer) is filled straight from storage by the core: one read of the file into the new
    object, instead of a copy out of the map."""
    owner = getattr(buffer, "obj", None)
    stored_bytes = getattr(owner, "stored_bytes", None)
    # Only a view of the whole segment: a slice of it is not what was stored.
    if stored_bytes is not None and buffer.nbytes == memoryview(owner).nbytes:  # type: ignore[arg-type]
        return stored_bytes()  # type: ignore[no-any-return]
    return bytes(buffer)


# Pickle streams refer to this function by module and name, and stored results refer to it as
# `ferroflow.serializers._bytes_from_buffer` (the package re-exports it). Pickling it under that
# name too keeps old result files loadable and new ones readable by other ferroflow versions.
_bytes_from_buffer.__module__ = "ferroflow.serializers"


@dataclasses.dataclass(frozen=True)
class _PickleLibrary:
    """A pickle module and what its `dumps` accepts."""

    module: ModuleType
    dumps_options: dict[str, Any]
    out_of_band: bool


@functools.cache
def _pickle_library(name: str) -> _PickleLibrary:
    """The pickle module `name`, checked, imported once per process. Kept here rather than in
    private attributes of the serializer: reading a pydantic private attribute costs ~1.7 us,
    several times per result written or read."""
    module = _import_module(name, "picklelib")
    _require_functions(
        module, ("dumps", "loads"), "picklelib", "Use a pickle module such as 'cloudpickle' or 'pickle'."
    )
    return _PickleLibrary(
        module=module,
        dumps_options={"protocol": 5} if _accepts_keyword(module.dumps, "protocol") else {},
        out_of_band=_accepts_keyword(module.dumps, "buffer_callback"),
    )


class PickleSerializer(Serializer):
    """Pickle protocol 5 through `picklelib` (cloudpickle by default: lambdas, local classes).

    `picklelib` is any importable module with `dumps`/`loads`. Its version is recorded; loading
    with another version warns, since pickles are only guaranteed to load with the same one.
    """

    type: Literal["pickle"] = "pickle"
    picklelib: str = "cloudpickle"
    picklelib_version: str | None = None

    def model_post_init(self, context: Any) -> None:
        lib = _pickle_library(self.picklelib).module
        register_library("picklelib", self.picklelib)  # result files written with it may name it
        installed = getattr(lib, "__version__", None)
        if self.picklelib_version is None:
            object.__setattr__(self, "picklelib_version", installed)
        elif installed is not None and installed != self.picklelib_version:
            warnings.warn(
                f"This result was pickled with {self.picklelib} {self.picklelib_version}, but "
                f"{installed} is installed; loading may fail or give different objects. Install "
                f"{self.picklelib}=={self.picklelib_version} if it does.",
                stacklevel=2,
            )

    def dumps(self, obj: Any) -> bytes:
        try:
            library = _pickle_library(self.picklelib)
            return library.module.dumps(obj, **library.dumps_options)
        except Exception as exc:
            raise self._pickling_error(obj, exc) from exc

    def loads(self, blob: Any) -> Any:
        try:
            return _pickle_library(self.picklelib).module.loads(blob)
        except Exception as exc:
            raise self._unpickling_error(exc) from exc

    def loads_prefect2(self, data: Any) -> Any:
        return self.loads(_b64decode(data))

    def dump_segments(self, obj: Any) -> list[Any]:
        """The pickle stream, then each out-of-band buffer as a view of the object's own memory."""
        library = _pickle_library(self.picklelib)
        if not library.out_of_band:
            return [self.dumps(obj)]
        buffers: list[memoryview] = []

        def keep_out_of_band(buffer: pickle.PickleBuffer) -> bool:
            try:
                buffers.append(buffer.raw())
            except BufferError:  # not contiguous: let pickle copy it into the stream
                return True
            return False

        # Pickle copies `bytes` into its stream (only bytearray, NumPy arrays and the like go out
        # of band), so a large bytes result is wrapped to travel as a buffer of its own.
        if type(obj) is bytes and len(obj) >= OUT_OF_BAND_BYTES_MIN_SIZE:
            obj = _OutOfBandBytes(obj)
        try:
            stream = library.module.dumps(obj, **library.dumps_options, buffer_callback=keep_out_of_band)
        except Exception as exc:
            raise self._pickling_error(obj, exc) from exc
        return [stream, *buffers]

    def load_segments(self, segments: Sequence[Any]) -> Any:
        stream, *buffers = segments
        if not buffers:
            return self.loads(stream)
        # Objects are rebuilt on the buffers themselves: writable ones (a copy-on-write memory
        # map) are used as they are; read-only ones (bytes) are copied once, so that arrays come
        # back writable, as an ordinary unpickle gives them.
        writable = [buffer if not memoryview(buffer).readonly else bytearray(buffer) for buffer in buffers]
        try:
            return _pickle_library(self.picklelib).module.loads(stream, buffers=writable)
        except Exception as exc:
            raise self._unpickling_error(exc) from exc

    def _pickling_error(self, obj: Any, exc: BaseException) -> SerializationError:
        library = _pickle_library(self.picklelib)
        where = _locate_unpicklable(obj, functools.partial(library.module.dumps, **library.dumps_options))
        detail = f"{where[0]}: {where[1]}" if where else f"result: {exc}"
        return SerializationError(
            f"Cannot pickle the result with {self.picklelib}: {detail}. Make that object "
            "picklable (e.g. define __getstate__/__reduce__), leave it out of the returned value, "
            "or return something that can be rebuilt from plain data."
        )

    def _unpickling_error(self, exc: BaseException) -> SerializationError:
        return SerializationError(
            f"Cannot unpickle the result with {self.picklelib} {self.picklelib_version}: "
            f"{type(exc).__name__}: {exc}. A pickle loads only where the same classes are "
            f"importable, ideally with the same library and Python versions (this is "
            f"Python {sys.version_info.major}.{sys.version_info.minor})."
        )


_MAX_SEARCH_DEPTH = 50


def _locate_unpicklable(obj: Any, dumps: Callable[[Any], Any]) -> tuple[str, str] | None:
    """(path, error) of the first object in `obj`'s graph that cannot be pickled on its own.

    Only run after pickling failed: it pickles sub-objects again to narrow the failure down, from
    the root to the deepest part that still fails, e.g. `result['outer'].lock`.
    """

    def failure(value: Any) -> BaseException | None:
        try:
            dumps(value)
        except Exception as exc:
            return exc
        return None

    error = failure(obj)
    if error is None:
        return None
    path, seen = "result", {id(obj)}
    for _ in range(_MAX_SEARCH_DEPTH):
        for suffix, child in _children(obj):
            if id(child) in seen:
                continue
            child_error = failure(child)
            if child_error is not None:
                obj, error, path = child, child_error, path + suffix
                seen.add(id(child))
                break
        else:
            break
    return path, str(error)


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    """(path suffix, part) for the parts pickle would visit in a container or an instance."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            yield f"[{key!r}]", value
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield f"[{index}]", value
    elif isinstance(obj, (set, frozenset)):
        for value in obj:
            yield f" item {value!r}", value
    else:
        attributes = getattr(obj, "__dict__", None)
        if isinstance(attributes, dict):
            for name, value in attributes.items():
                yield f".{name}", value
        for klass in type(obj).__mro__:
            for name in getattr(klass, "__slots__", ()):
                if hasattr(obj, name) and name not in ("__dict__", "__weakref__"):
                    yield f".{name}", getattr(obj, name)
