"""Serializers: how a result value becomes bytes and back.

Every serializer has a `type` name ("pickle", "json", "compressed/pickle", ...), `dumps(obj) -> bytes`
and `loads(bytes-like) -> obj` on raw bytes (no base64), and a JSON-able description
(`to_description()` / `Serializer.from_description()`) recorded with each persisted result so it
can be read back by another process.

For persistence a serializer also offers a *segment* form: `dump_segments(obj)` returns a list of
buffers that the blob writer frames without joining them (pickle protocol 5 puts NumPy arrays in
their own segments without copying them), `load_segments(segments)` takes them back, and
`frame_codec` says which compression the frame should apply to each segment.

Subclassing `Serializer` with a new `type` registers the class under that name.
"""

from __future__ import annotations

import abc
import base64
import copy
import dataclasses
import datetime
import decimal
import enum
import functools
import importlib
import inspect
import math
import pathlib
import pickle
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    PydanticSchemaGenerationError,
    TypeAdapter,
    ValidationError,
    field_serializer,
    field_validator,
)

from ferroflow.exceptions import SerializationError

#: Compression codecs implemented by ferroflow's Rust core (standard formats: xz, bz2, zlib, zstd).
CORE_CODECS: tuple[str, ...] = ("lzma", "bz2", "zlib", "zstd")

#: lzma inputs at least this large are compressed by the multi-threaded encoder; below it the
#: thread start-up and the smaller blocks cost more than they gain.
LZMA_THREADED_MIN_SIZE = 8 * 1024 * 1024
# A `bytes` result at least this large is written as its own blob segment, straight from its
# memory, instead of being copied into the pickle stream.
OUT_OF_BAND_BYTES_MIN_SIZE = 64 * 1024

_registry: dict[str, type[Serializer]] = {}


def _import_module(name: str, role: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise SerializationError(
            f"Cannot import the {role} {name!r}: {exc}. Install it, or choose another {role}."
        ) from exc


def _require_functions(module: ModuleType, names: Sequence[str], role: str, hint: str) -> None:
    missing = [name for name in names if not callable(getattr(module, name, None))]
    if missing:
        raise SerializationError(
            f"{role} {module.__name__!r} cannot be used: it has no "
            f"{' or '.join(f'{name}()' for name in missing)} function. {hint}"
        )


def _accepts_keyword(function: Callable[..., Any], keyword: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # some builtins have no introspectable signature
        return False
    return keyword in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def _b64decode(data: Any) -> bytes:
    try:
        return base64.b64decode(_as_bytes(data))
    except ValueError as exc:
        raise SerializationError(
            f"The Prefect 2 result data is not the base64 text its serializer wrote: {exc}"
        ) from exc


def _as_bytes(blob: Any) -> bytes:
    return blob if isinstance(blob, bytes) else bytes(blob)


# ---------------------------------------------------------------------------------------------
# The base class


class Serializer(BaseModel, abc.ABC):
    """Base of all serializers. Subclass it with a `type` default to register a custom one::

        class YamlSerializer(Serializer):
            type: Literal["yaml"] = "yaml"

            def dumps(self, obj): return yaml.safe_dump(obj).encode()
            def loads(self, blob): return yaml.safe_load(bytes(blob))

    After that, `result_serializer="yaml"` and descriptions with `"type": "yaml"` use it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    type: str

    def __init__(self, **options: Any) -> None:
        try:
            super().__init__(**options)
        except ValidationError as exc:
            raise _serialization_error(exc, f"{type(self).__name__} options") from exc

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # Register only classes that declare their own `type`; subclasses that merely tweak
        # a serializer (and inherit its type) must not replace it.
        if "type" not in inspect.get_annotations(cls):  # the class's own annotations only
            return
        type_name = cls.model_fields["type"].default
        if not isinstance(type_name, str) or not type_name:
            raise TypeError(
                f"{cls.__qualname__} must give its `type` field a string default, e.g. "
                f'type: Literal["my-format"] = "my-format"'
            )
        taken = _registry.get(type_name)
        if taken is not None and taken.__module__ == __name__ and cls.__module__ != __name__:
            raise TypeError(
                f"The serializer type {type_name!r} belongs to ferroflow's {taken.__name__}; "
                f"give {cls.__qualname__} another type name."
            )
        _registry[type_name] = cls

    def __getstate__(self) -> dict[Any, Any]:
        # Serializers travel with results to other processes; the modules and hooks they hold
        # cannot be pickled, so they are imported again on arrival (model_post_init).
        state = super().__getstate__()
        state["__pydantic_private__"] = None
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self.model_post_init(None)

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Serializer:
        duplicate = type(self).__new__(type(self))
        duplicate.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        return duplicate

    @abc.abstractmethod
    def dumps(self, obj: Any) -> bytes:
        """Serialize `obj` to bytes."""

    @abc.abstractmethod
    def loads(self, blob: Any) -> Any:
        """Deserialize a bytes-like object made by `dumps`."""

    def loads_prefect2(self, data: Any) -> Any:
        """Load the `data` of a result document written by Prefect 2 (its str, UTF-8 encoded).

        Prefect 2's pickle and compressed serializers base64-encoded their own output; the
        serializers that did so undo it here. Everything else reads it as `loads` does.
        """
        return self.loads(data)

    def dump_segments(self, obj: Any) -> list[Any]:
        """The buffers to persist, in order; the default is the single `dumps` output."""
        return [self.dumps(obj)]

    def load_segments(self, segments: Sequence[Any]) -> Any:
        """The value back from the buffers `dump_segments` produced."""
        if len(segments) != 1:
            raise SerializationError(
                f"The {self.type!r} serializer writes one segment, but the stored result has "
                f"{len(segments)}. It was written by another serializer; read it with the "
                "serializer recorded in its header."
            )
        return self.loads(segments[0])

    @property
    def frame_codec(self) -> tuple[str, int | None]:
        """(codec, level) the blob frame applies to each segment; "none" for no compression."""
        return ("none", None)

    def to_description(self) -> dict[str, Any]:
        """A JSON-able description from which `Serializer.from_description` rebuilds this one."""
        return self.model_dump(mode="json")

    @classmethod
    def from_description(cls, description: Mapping[str, Any]) -> Serializer:
        """Rebuild a serializer from `to_description()` output (also Prefect 2's descriptions)."""
        if not isinstance(description, Mapping) or "type" not in description:
            raise SerializationError(
                f"A serializer description must be a mapping with a 'type' key, got {description!r}."
            )
        serializer_class = _lookup(str(description["type"]))
        try:
            return serializer_class.model_validate(dict(description))
        except ValidationError as exc:  # wraps the SerializationError that __init__ raised
            raise _serialization_error(exc, f"{serializer_class.__name__} options") from exc

    @classmethod
    def from_type_name(cls, type_name: str) -> Serializer:
        """A serializer of that type with default options, e.g. `from_type_name("json")`."""
        return _lookup(type_name)()


def _serialization_error(exc: ValidationError, what: str) -> SerializationError:
    """The SerializationError a validator raised (pydantic wraps it), else one listing the problems."""
    for error in exc.errors():
        original = error.get("ctx", {}).get("error")
        if isinstance(original, SerializationError):
            return original
    problems = "; ".join(
        f"{'.'.join(map(str, error['loc'])) or 'value'}: {error['msg']}" for error in exc.errors()
    )
    return SerializationError(f"Invalid {what}: {problems}.")


def known_serializer_types() -> list[str]:
    """Type names usable as `result_serializer="..."`, built-in and registered."""
    return sorted(name for name, klass in _registry.items() if not inspect.isabstract(klass))


def _lookup(type_name: str) -> type[Serializer]:
    serializer_class = _registry.get(type_name)
    if serializer_class is not None and not inspect.isabstract(serializer_class):
        return serializer_class
    known = ", ".join(known_serializer_types())
    hint = ""
    inner = type_name.removeprefix("compressed/")
    if inner != type_name and inner in _registry:
        hint = (
            f" The 'compressed/<type>' shortcut only covers ferroflow's own serializers; for "
            f"{inner!r} pass an instance: CompressedSerializer(serializer={inner!r})."
        )
    raise SerializationError(
        f"Unknown serializer type {type_name!r}. Known types: {known}.{hint} A custom serializer "
        "is registered by subclassing ferroflow.serializers.Serializer before it is used."
    )


def resolve_serializer(value: Serializer | str | Mapping[str, Any] | None) -> Serializer:
    """A serializer from an instance, a type name, a description, or None (the default setting)."""
    if isinstance(value, Serializer):
        return value
    if value is None:
        from ferroflow.settings import get_current_settings

        return Serializer.from_type_name(get_current_settings().results_default_serializer)
    if isinstance(value, str):
        return Serializer.from_type_name(value)
    if isinstance(value, Mapping):
        return Serializer.from_description(value)
    raise SerializationError(
        f"A serializer must be a Serializer instance, a type name such as 'pickle' or 'json', "
        f"or a description dict; got {type(value).__name__}."
    )


# ---------------------------------------------------------------------------------------------
# Pickle


class _OutOfBandBytes:
    """A large `bytes` value on its way into a pickle: it reduces to a PickleBuffer over the
    bytes' own memory, which protocol 5 hands to the buffer callback instead of copying."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return _bytes_from_buffer, (pickle.PickleBuffer(self.data),)


def _bytes_from_buffer(buffer: Any) -> bytes:
    """Rebuilds a large `bytes` result from its out-of-band segment (one copy: the caller gets
    real `bytes`, not a view of a memory map)."""
    return bytes(buffer)


@dataclasses.dataclass(frozen=True)
class _PickleLibrary:
    """A pickle module and what its `dumps` accepts."""

    module: ModuleType
    dumps_options: dict[str, Any]
    out_of_band: bool


@functools.lru_cache(maxsize=None)
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
        import sys

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


# ---------------------------------------------------------------------------------------------
# JSON

_TAG = "__ferroflow_type__"
_PREFECT_CLASS = "__class__"  # Prefect 2's encoder wrote {"__class__": "<path>", "data": ...}
_PREFECT_KEYS = frozenset((_PREFECT_CLASS, "data"))
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
_NoneType = type(None)


class _Unsupported(Exception):
    """A value JSON cannot hold; collects the path to it while unwinding."""

    def __init__(self, value: Any, reason: str) -> None:
        super().__init__(reason)
        self.value = value
        self.reason = reason
        self.path: list[str] = []


def _class_path(klass: type) -> str:
    if "<locals>" in klass.__qualname__:
        raise TypeError(
            f"{klass.__qualname__} is defined inside a function, so JSON cannot name it for "
            "loading; define it at module level"
        )
    return f"{klass.__module__}:{klass.__qualname__}"


def _import_object(path: str) -> Any:
    """Import `module:qualname` (ferroflow's form) or `module.qualname` (Prefect 2's form)."""
    if ":" in path:
        module_name, _, qualname = path.partition(":")
        candidates = [(module_name, qualname)]
    else:
        parts = path.split(".")
        candidates = [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)]
    for module_name, qualname in candidates:
        try:
            target: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            for name in qualname.split("."):
                target = getattr(target, name)
        except AttributeError:
            continue
        return target
    raise SerializationError(
        f"Cannot import {path!r}, which the JSON serializer's options or data name. Make its "
        "module importable here (installed or on sys.path) before loading the result."
    )


def _import_class(path: str, base: type) -> type:
    klass = _import_object(path)
    if not (isinstance(klass, type) and issubclass(klass, base)):
        kind = "class" if base is object else f"{base.__name__} subclass"
        raise SerializationError(f"{path!r} in the JSON result is not a {kind}.")
    return klass


_type_adapters: dict[Any, TypeAdapter[Any]] = {}


def _type_adapter(klass: Any) -> TypeAdapter[Any]:
    """pydantic's validator/serializer for a class, built once (building one takes about 0.5 ms)."""
    adapter = _type_adapters.get(klass)
    if adapter is None:
        adapter = _type_adapters[klass] = TypeAdapter(klass)
    return adapter


def _tagged(type_name: str, **fields: Any) -> dict[str, Any]:
    return {_TAG: type_name, **fields}


def ferroflow_json_object_encoder(obj: Any) -> Any:
    """JSON-able form of a value the JSON types cannot hold: a tagged object that
    `ferroflow_json_object_decoder` turns back into the same type. Raises TypeError otherwise."""
    simple = _SIMPLE_ENCODERS.get(type(obj))
    if simple is not None:
        return _tagged(simple[0], value=simple[1](obj))
    if isinstance(obj, enum.Enum):
        return _tagged("enum", cls=_class_path(type(obj)), value=obj.value)
    if isinstance(obj, BaseModel):
        return _tagged("pydantic", cls=_class_path(type(obj)), value=obj.model_dump(mode="json"))
    if isinstance(obj, BaseException):
        return _tagged("exception", cls=_class_path(type(obj)), args=list(obj.args))
    if isinstance(obj, pathlib.PurePath):
        return _tagged("path", value=str(obj))
    for base, (type_name, encode) in _SIMPLE_ENCODERS.items():
        if isinstance(obj, base):  # a subclass, e.g. pendulum's DateTime (datetime comes first)
            return _tagged(type_name, value=encode(obj))
    return _encode_with_pydantic(obj)


def _encode_with_pydantic(obj: Any) -> Any:
    """Anything else pydantic can validate (dataclasses, named tuples, IP addresses, ...)."""
    klass: Any = type(obj)
    try:
        value = _type_adapter(klass).dump_python(obj, mode="json")
    except (PydanticSchemaGenerationError, TypeError, ValueError) as exc:
        raise TypeError(f"{klass.__module__}.{klass.__qualname__} is not supported") from exc
    return _tagged("pydantic", cls=_class_path(klass), value=value)


def _timedelta_parts(value: datetime.timedelta) -> list[int]:
    return [value.days, value.seconds, value.microseconds]


def _b64encode(data: bytes | bytearray) -> str:
    return base64.b64encode(data).decode("ascii")


_SIMPLE_ENCODERS: dict[type, tuple[str, Callable[[Any], Any]]] = {
    datetime.datetime: ("datetime", datetime.datetime.isoformat),
    datetime.date: ("date", datetime.date.isoformat),
    datetime.time: ("time", datetime.time.isoformat),
    datetime.timedelta: ("timedelta", _timedelta_parts),
    uuid.UUID: ("uuid", str),
    decimal.Decimal: ("decimal", str),
    bytes: ("bytes", _b64encode),
    bytearray: ("bytearray", _b64encode),
    complex: ("complex", lambda c: [c.real, c.imag]),
}

_SIMPLE_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": datetime.datetime.fromisoformat,
    "date": datetime.date.fromisoformat,
    "time": datetime.time.fromisoformat,
    "timedelta": lambda v: datetime.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "uuid": uuid.UUID,
    "decimal": decimal.Decimal,
    "bytes": base64.b64decode,
    "bytearray": lambda v: bytearray(base64.b64decode(v)),
    "complex": lambda v: complex(v[0], v[1]),
    "path": pathlib.Path,
    "int": int,
    "float": float,
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "dict": lambda items: {key: value for key, value in items},
}


def ferroflow_json_object_decoder(obj: dict[str, Any]) -> Any:
    """Turn a tagged object (ferroflow's, or Prefect 2's `{"__class__", "data"}`) back into its
    value; other objects are returned unchanged. Called bottom-up on every decoded JSON object."""
    tag = obj.get(_TAG)
    is_prefect = tag is None and obj.keys() == _PREFECT_KEYS and isinstance(obj[_PREFECT_CLASS], str)
    if tag is None and not is_prefect:
        return obj
    try:
        if is_prefect:
            return _type_adapter(_import_class(obj[_PREFECT_CLASS], object)).validate_python(obj["data"])
        return _decode_tagged(str(tag), obj)
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(f"Cannot decode the JSON value {obj!r}: {exc}") from exc


def _decode_tagged(tag: str, obj: dict[str, Any]) -> Any:
    simple = _SIMPLE_DECODERS.get(tag)
    if simple is not None:
        return simple(obj["value"])
    if tag == "enum":
        return _import_class(obj["cls"], enum.Enum)(obj["value"])
    if tag == "pydantic":
        klass = _import_class(obj["cls"], object)
        if issubclass(klass, BaseModel):
            return klass.model_validate(obj["value"])
        return _type_adapter(klass).validate_python(obj["value"])
    if tag == "exception":
        return _import_class(obj["cls"], BaseException)(*obj["args"])
    raise SerializationError(
        f"Unknown JSON tag {tag!r}: this result was written by a newer ferroflow. "
        "Upgrade ferroflow to read it."
    )


class JSONSerializer(Serializer):
    """JSON through `jsonlib` ("json" or "orjson", or any module with dumps/loads).

    Beyond the JSON types it round-trips what pydantic v2 can: models, dataclasses, datetimes,
    dates, times, timedeltas, UUIDs, Decimals, bytes, sets, frozensets, tuples, enums, paths,
    exceptions, dicts with non-string keys, big integers and NaN/infinity. Such values are written
    as tagged objects (`{"__ferroflow_type__": "datetime", "value": "..."}`); both libraries load
    what either wrote. Prefect 2's `{"__class__": ..., "data": ...}` objects are read too.

    `object_encoder(obj)` is called for values the JSON types cannot hold and returns a JSON-able
    stand-in; `object_decoder(dict)` is called bottom-up on every decoded object. Both are
    importable paths ("package.module.function") and default to ferroflow's tagged encoding.
    """

    type: Literal["json"] = "json"
    jsonlib: str = "json"
    object_encoder: str | None = "ferroflow.serializers.ferroflow_json_object_encoder"
    object_decoder: str | None = "ferroflow.serializers.ferroflow_json_object_decoder"
    dumps_kwargs: dict[str, Any] = Field(default_factory=dict)
    loads_kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("object_encoder", "object_decoder", mode="before")
    @classmethod
    def _read_prefect_hooks(cls, value: Any) -> Any:
        # Prefect 2 descriptions name its own hooks; ferroflow's decoder reads their output.
        if isinstance(value, str) and value.startswith("prefect.serializers.prefect_json_object_"):
            return value.replace("prefect.serializers.prefect_", "ferroflow.serializers.ferroflow_")
        return value

    def model_post_init(self, context: Any) -> None:
        # Import and check everything now, so that a bad description fails when it is made.
        _json_library(self.jsonlib)
        _json_hook(self.object_encoder, "object_encoder")
        _json_hook(self.object_decoder, "object_decoder")

    def dumps(self, obj: Any) -> bytes:
        try:
            tree = _JSONTree(_json_hook(self.object_encoder, "object_encoder")).tree(obj)
        except _Unsupported as exc:
            path = "result" + "".join(reversed(exc.path))
            kind = type(exc.value)
            raise SerializationError(
                f"Cannot serialize the result as JSON: {path} is a {kind.__module__}.{kind.__qualname__}"
                f" ({exc.reason}). Use the pickle serializer (result_serializer='pickle') for such "
                "values, or give JSONSerializer an object_encoder/object_decoder pair that handles it."
            ) from exc
        text = _json_library(self.jsonlib).module.dumps(tree, **self.dumps_kwargs)
        return text.encode() if isinstance(text, str) else bytes(text)

    def loads(self, blob: Any) -> Any:
        data = _as_bytes(blob)  # the stdlib json refuses memoryview
        library = _json_library(self.jsonlib)
        decoder = _json_hook(self.object_decoder, "object_decoder")
        try:
            if decoder is not None and library.has_object_hook:
                return library.module.loads(data, object_hook=decoder, **self.loads_kwargs)
            tree = library.module.loads(data, **self.loads_kwargs)
        except SerializationError:
            raise
        except ValueError as exc:
            raise SerializationError(f"The result is not valid JSON ({self.jsonlib}): {exc}") from exc
        return tree if decoder is None else _apply_bottom_up(tree, decoder)


@dataclasses.dataclass(frozen=True)
class _JSONLibrary:
    """A JSON module and whether its `loads` takes an `object_hook`."""

    module: ModuleType
    has_object_hook: bool


@functools.lru_cache(maxsize=None)
def _json_library(name: str) -> _JSONLibrary:
    """The JSON module `name`, checked, imported once per process (see `_pickle_library` for why
    not in private attributes)."""
    module = _import_module(name, "jsonlib")
    _require_functions(module, ("dumps", "loads"), "jsonlib", "Use a JSON module such as 'json' or 'orjson'.")
    return _JSONLibrary(module=module, has_object_hook=_accepts_keyword(module.loads, "object_hook"))


@functools.lru_cache(maxsize=None)
def _json_hook(path: str | None, role: str) -> Callable[..., Any] | None:
    """The object encoder or decoder function at the importable `path`, imported once."""
    if path is None:
        return None
    hook = _import_object(path)
    if not callable(hook):
        raise SerializationError(f"{role} {path!r} is not a function.")
    return hook  # type: ignore[no-any-return]


class _JSONTree:
    """Converts a value to plain JSON types, so every jsonlib writes the same document.

    A plain class (not a pydantic model): the walk reads `self.encoder` for every value.
    """

    __slots__ = ("encoder",)

    def __init__(self, encoder: Callable[[Any], Any] | None) -> None:
        self.encoder = encoder

    def tree(self, obj: Any) -> Any:
        """`obj` as plain JSON types only."""
        kind = type(obj)
        if kind is str or kind is bool or kind is _NoneType:
            return obj
        if kind is int:
            return obj if _INT64_MIN <= obj <= _UINT64_MAX else _tagged("int", value=str(obj))
        if kind is float:
            return obj if math.isfinite(obj) else _tagged("float", value=repr(obj))
        if kind is list:
            return self._items_tree(obj)
        if kind is dict:
            return self._dict_tree(obj)
        if kind is tuple or kind is set or kind is frozenset:
            return _tagged(kind.__name__, value=self._items_tree(obj))
        return self._encoded_tree(obj)

    def _items_tree(self, items: Any) -> list[Any]:
        tree = []
        for index, item in enumerate(items):
            try:
                tree.append(self.tree(item))
            except _Unsupported as exc:
                exc.path.append(f"[{index}]" if isinstance(items, (list, tuple)) else f" item {item!r}")
                raise
        return tree

    def _dict_tree(self, mapping: dict[Any, Any]) -> Any:
        plain_keys = all(type(key) is str for key in mapping)
        if plain_keys and _TAG not in mapping and mapping.keys() != _PREFECT_KEYS:
            tree = {}
            for key, value in mapping.items():
                try:
                    tree[key] = self.tree(value)
                except _Unsupported as exc:
                    exc.path.append(f"[{key!r}]")
                    raise
            return tree
        # Non-string keys, or keys that would read as a tag: keep it as [key, value] pairs.
        pairs = []
        for key, value in mapping.items():
            try:
                pairs.append([self.tree(key), self.tree(value)])
            except _Unsupported as exc:
                exc.path.append(f"[{key!r}]")
                raise
        return _tagged("dict", value=pairs)

    def _encoded_tree(self, obj: Any) -> Any:
        if self.encoder is None:
            raise _Unsupported(obj, "no object_encoder is configured")
        try:
            stand_in = self.encoder(obj)
        except TypeError as exc:
            raise _Unsupported(obj, str(exc)) from exc
        if stand_in is obj:
            raise _Unsupported(obj, "the object_encoder returned it unchanged")
        if isinstance(stand_in, dict) and _TAG in stand_in:
            # The tag object itself is trusted; only its contents need converting.
            return {key: self.tree(value) for key, value in stand_in.items()}
        return self.tree(stand_in)


def _apply_bottom_up(tree: Any, decoder: Callable[[dict[str, Any]], Any]) -> Any:
    """Call `decoder` on every object of a decoded JSON tree, innermost first (like object_hook).

    Updates the freshly decoded tree in place and skips scalars, so only objects cost a call.
    """
    kind = type(tree)
    if kind is dict:
        for key, value in tree.items():
            if type(value) in _JSON_CONTAINERS:
                tree[key] = _apply_bottom_up(value, decoder)
        return decoder(tree)
    if kind is list:
        for index, item in enumerate(tree):
            if type(item) in _JSON_CONTAINERS:
                tree[index] = _apply_bottom_up(item, decoder)
    return tree


_JSON_CONTAINERS = frozenset((dict, list))


# ---------------------------------------------------------------------------------------------
# Compression


class CompressedSerializer(Serializer):
    """Wraps another serializer and compresses its bytes.

    `compressionlib` is one of the core codecs "lzma" (default, the xz format), "bz2", "zlib",
    "zstd" — run by ferroflow's Rust core, GIL released, standard formats (so
    `lzma.decompress(CompressedSerializer(serializer="pickle").dumps(x))` is the pickle of `x`) —
    or any importable module with `compress`/`decompress` functions. `level` is the codec's level
    (None: the codec's default; core codecs only).
    """

    type: Literal["compressed"] = "compressed"
    serializer: Serializer = Field(default_factory=lambda: PickleSerializer())
    compressionlib: str = "lzma"
    level: int | None = None

    _module: ModuleType | None = PrivateAttr(None)

    @field_validator("serializer", mode="before")
    @classmethod
    def _serializer_from_name_or_description(cls, value: Any) -> Any:
        if isinstance(value, (str, Mapping)):
            return resolve_serializer(value)
        return value

    @field_serializer("serializer")
    def _describe_inner(self, serializer: Serializer) -> dict[str, Any]:
        return serializer.to_description()

    def model_post_init(self, context: Any) -> None:
        if self.compressionlib in CORE_CODECS:
            return
        module = _import_module(self.compressionlib, "compressionlib")
        _require_functions(
            module,
            ("compress", "decompress"),
            "compressionlib",
            f"Use one of {', '.join(CORE_CODECS)} or a module that provides both functions.",
        )
        if self.level is not None:
            raise SerializationError(
                f"level= applies to the core codecs ({', '.join(CORE_CODECS)}) only; "
                f"configure {self.compressionlib!r} through its own module instead."
            )
        self._module = module

    def dumps(self, obj: Any) -> bytes:
        return self._compress(self.serializer.dumps(obj))

    def loads(self, blob: Any) -> Any:
        return self.serializer.loads(self._decompress(blob))

    def loads_prefect2(self, data: Any) -> Any:
        return self.serializer.loads_prefect2(self._decompress(_b64decode(data)))

    def dump_segments(self, obj: Any) -> list[Any]:
        if self._frame_compresses:
            return self.serializer.dump_segments(obj)
        return [self.dumps(obj)]

    def load_segments(self, segments: Sequence[Any]) -> Any:
        if self._frame_compresses:
            return self.serializer.load_segments(segments)
        return super().load_segments(segments)

    @property
    def frame_codec(self) -> tuple[str, int | None]:
        if self._frame_compresses:
            return (self.compressionlib, self.level)
        return ("none", None)

    @property
    def _frame_compresses(self) -> bool:
        """Whether the blob frame can compress each segment instead of this serializer."""
        return self._module is None and self.serializer.frame_codec[0] == "none"

    def _compress(self, data: bytes) -> bytes:
        if self._module is not None:
            return self._module.compress(data)
        from ferroflow._core import compress

        threads = 0 if self.compressionlib == "lzma" and len(data) >= LZMA_THREADED_MIN_SIZE else 1
        return compress(data, self.compressionlib, level=self.level, threads=threads)

    def _decompress(self, blob: Any) -> bytes:
        try:
            if self._module is not None:
                return self._module.decompress(blob)
            from ferroflow._core import decompress

            return decompress(blob, self.compressionlib)
        except (ValueError, OSError) as exc:
            raise SerializationError(
                f"Cannot decompress the result with {self.compressionlib}: {exc}. It was not "
                "written by this serializer, or the data is damaged."
            ) from exc


class CompressedPickleSerializer(CompressedSerializer):
    """`"compressed/pickle"`: pickle, then lzma (or `compressionlib`)."""

    type: Literal["compressed/pickle"] = "compressed/pickle"  # type: ignore[assignment]
    serializer: Serializer = Field(default_factory=lambda: PickleSerializer())


class CompressedJSONSerializer(CompressedSerializer):
    """`"compressed/json"`: JSON, then lzma (or `compressionlib`)."""

    type: Literal["compressed/json"] = "compressed/json"  # type: ignore[assignment]
    serializer: Serializer = Field(default_factory=lambda: JSONSerializer())


__all__ = [
    "CORE_CODECS",
    "CompressedJSONSerializer",
    "CompressedPickleSerializer",
    "CompressedSerializer",
    "JSONSerializer",
    "PickleSerializer",
    "Serializer",
    "ferroflow_json_object_decoder",
    "ferroflow_json_object_encoder",
    "known_serializer_types",
    "resolve_serializer",
]
