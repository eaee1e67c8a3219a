"""The `Serializer` base class and the registry of serializer types.

Subclassing `Serializer` with a new `type` registers the class under that name; `resolve_serializer`
turns what users configure (an instance, a type name, a description, or None for the default
setting) into a serializer. As in Prefect 2, `Serializer(type="json")` gives the serializer of
that type, and a pydantic field annotated `Serializer` takes a type name, a description or an
instance.
"""

from __future__ import annotations

import abc
import base64
import copy
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

# pydantic's model metaclass has no public name; this is the one pydantic's own models use.
from pydantic._internal._model_construction import ModelMetaclass

from ferroflow.exceptions import CorruptResultError, SerializationError
from ferroflow.serializers._libraries import LIBRARY_ROLES, _is_known_json_hook, _is_known_library
from ferroflow.settings import get_current_settings

_registry: dict[str, type[Serializer]] = {}

# Serializers defined in this package's modules are ferroflow's own: their type names are reserved.
_PACKAGE = __name__.rpartition(".")[0]


def _b64decode(data: Any) -> bytes:
    try:
        return base64.b64decode(_as_bytes(data))
    except ValueError as exc:
        raise SerializationError(
            f"The Prefect 2 result data is not the base64 text its serializer wrote: {exc}"
        ) from exc


def _as_bytes(blob: Any) -> bytes:
    return blob if isinstance(blob, bytes) else bytes(blob)


# Values a class body may give an option without annotating it (pydantic v1 inferred the type).
_PLAIN_OPTION_TYPES = frozenset((str, int, float, bool, bytes, list, tuple, dict, set, frozenset, type(None)))


class _SerializerMetaclass(ModelMetaclass):
    """Accepts serializers written for Prefect 2, whose pydantic (v1) inferred a field's type
    from its default: `type = "my"` and `indent = 2` without annotations. Such plain values are
    given the annotation pydantic v2 requires (`type` the literal of its value) before the
    class is built."""

    def __new__(
        mcs,
        name: str,
        bases: tuple[type[Any], ...],
        namespace: dict[str, Any],
        **kwargs: Any,
    ) -> type:
        _annotate_plain_options(namespace)
        return super().__new__(mcs, name, bases, namespace, **kwargs)


def _annotate_plain_options(namespace: dict[str, Any]) -> None:
    if "__annotate__" in namespace:
        return  # Python 3.14's lazily evaluated annotations: not read here, so left as written
    annotations = namespace.get("__annotations__", {})
    inferred: dict[str, Any] = {}
    for name, value in namespace.items():
        if name.startswith("_") or name == "model_config" or name in annotations:
            continue
        if type(value) not in _PLAIN_OPTION_TYPES:
            continue  # methods, properties, descriptors: not options
        if name == "type" and isinstance(value, str):
            inferred[name] = Literal[value]
        else:
            inferred[name] = Any if value is None else type(value)
    if inferred:
        namespace["__annotations__"] = {**annotations, **inferred}


class Serializer(BaseModel, abc.ABC, metaclass=_SerializerMetaclass):
    """Base of all serializers. Subclass it with a `type` default to register a custom one::

        class YamlSerializer(Serializer):
            type: Literal["yaml"] = "yaml"    # or, as Prefect 2 code writes it: type = "yaml"

            def dumps(self, obj): return yaml.safe_dump(obj).encode()
            def loads(self, blob): return yaml.safe_load(bytes(blob))

    After that, `result_serializer="yaml"`, `"compressed/yaml"`, `Serializer(type="yaml")` and
    descriptions with `"type": "yaml"` use it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    type: str

    def __new__(cls, *args: Any, **options: Any) -> Serializer:
        # Prefect 2's dispatch: `Serializer(type="json", ...)` makes the serializer of that
        # type (Python then runs its __init__ with the same options).
        if cls is Serializer and "type" in options:
            cls = _lookup(str(options["type"]))
        return super().__new__(cls)

    @model_validator(mode="wrap")
    @classmethod
    def _any_serializer_for_the_base_class(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        # A pydantic field annotated `Serializer` validates through the base class, which
        # cannot be instantiated: give it the serializer a type name or description names.
        if cls is Serializer and isinstance(value, (str, Mapping)):
            return resolve_serializer(value)
        return handler(value)

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
        if taken is not None and _is_built_in(taken) and not _is_built_in(cls):
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

    def dump_for_storage(self, obj: Any) -> tuple[Serializer, list[Any]]:
        """What a persisted result's blob holds: the serializer whose description its header
        records (whose `frame_codec` the frame applies and whose `load_segments` reads it back),
        and the segments. This serializer and `dump_segments(obj)`, unless a wrapping serializer
        stored its wrapped one's bytes unchanged (see `CompressedSerializer`)."""
        return self, self.dump_segments(obj)

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
        serializer_class = _lookup(type_name)
        if serializer_class.model_fields["type"].default == type_name:
            return serializer_class()
        return serializer_class(type=type_name)  # "compressed/<custom type>"


def _is_built_in(serializer_class: type[Serializer]) -> bool:
    return serializer_class.__module__.startswith(f"{_PACKAGE}.")


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
    if serializer_class is None and _is_compressed_custom_type(type_name):
        serializer_class = _registry.get(_COMPRESSED)
    if serializer_class is not None and not inspect.isabstract(serializer_class):
        return serializer_class
    known = ", ".join(known_serializer_types())
    raise SerializationError(
        f"Unknown serializer type {type_name!r}. Known types: {known}, and 'compressed/<type>' "
        "for any of them. A custom serializer is registered by subclassing "
        "ferroflow.serializers.Serializer before it is used."
    )


# "compressed/<type>" for a registered type without a class of its own: the compressed
# serializer (registered under this name) wrapping that type.
_COMPRESSED = "compressed"


def _is_compressed_custom_type(type_name: str) -> bool:
    inner = type_name.removeprefix(f"{_COMPRESSED}/")
    inner_class = _registry.get(inner) if inner != type_name else None
    return inner_class is not None and not inspect.isabstract(inner_class)


def resolve_serializer(value: Serializer | str | Mapping[str, Any] | None) -> Serializer:
    """A serializer from an instance, a type name, a description, or None (the default setting)."""
    if isinstance(value, Serializer):
        return value
    if value is None:
        return Serializer.from_type_name(get_current_settings().results_default_serializer)
    if isinstance(value, str):
        return Serializer.from_type_name(value)
    if isinstance(value, Mapping):
        return Serializer.from_description(value)
    raise SerializationError(
        f"A serializer must be a Serializer instance, a type name such as 'pickle' or 'json', "
        f"or a description dict; got {type(value).__name__}."
    )


_JSON_HOOK_OPTIONS = ("object_encoder", "object_decoder")
# Options of `json.loads` (and libraries like it) whose values are called.
_CALLABLE_LOADS_OPTIONS = frozenset(
    ("cls", "object_hook", "object_pairs_hook", "parse_float", "parse_int", "parse_constant")
)


def serializer_for_reading(description: Any, *, expected_type: str | None = None) -> Serializer:
    """The serializer to load a stored result with, from the description its file records.

    The file does not get to choose what runs: the description must be of `expected_type` (the
    serializer type the result was written with, as the reader knows it; None when the reader
    knows nothing, e.g. `read_result` on a loose file), a "compressed/<type>" must wrap a `<type>`,
    and every library and JSON hook it names must be a known one (see
    `ferroflow.serializers.register_library`). All of this is checked before anything named is
    imported. A description of another type raises CorruptResultError (the file was replaced);
    an unknown library or hook raises SerializationError saying how to allow it.
    """
    _check_stored_description(description, expected_type, where="result")
    return Serializer.from_description(description)


def _may_store_uncompressed(expected_type: str, type_name: str) -> bool:
    """Whether a result written by an `expected_type` serializer may be described as `type_name`:
    a compressed serializer whose compression would have made the payload bigger stores its
    wrapped serializer's bytes under that serializer's description (`"compressed"` wraps any
    type, `"compressed/<T>"` only `<T>`)."""
    return expected_type == _COMPRESSED or expected_type == f"{_COMPRESSED}/{type_name}"


def _check_stored_description(description: Any, expected_type: str | None, *, where: str) -> None:
    if not isinstance(description, Mapping) or not isinstance(description.get("type"), str):
        raise CorruptResultError(
            f"The {where}'s serializer description is not a mapping with a 'type' text: {description!r:.200}. "
            "The file is damaged or was not written by ferroflow; re-run the task to write it again."
        )
    type_name = description["type"]
    if (
        expected_type is not None
        and type_name != expected_type
        and not _may_store_uncompressed(expected_type, type_name)
    ):
        raise CorruptResultError(
            f"The {where} file says it was written by the {type_name!r:.100} serializer, but the result "
            f"was written with {expected_type!r}; ferroflow reads a result only with the serializer "
            "it was written with. The file was replaced or damaged: re-run the task to write it again."
        )
    _lookup(type_name)  # an unknown type is refused before any of its options is looked at
    for role in LIBRARY_ROLES:
        if role in description and not _is_known_library(role, description[role]):
            raise SerializationError(
                f"The {where} file asks for {role}={description[role]!r:.100}, which is not a known "
                f"{role}. ferroflow imports only libraries it knows or that this program uses; if "
                f"you trust this file, call ferroflow.serializers.register_library({role!r}, "
                f"{description[role]!r:.100}) before reading it."
            )
    for option in _JSON_HOOK_OPTIONS:
        if option in description and not _is_known_json_hook(description[option]):
            raise SerializationError(
                f"The {where} file asks for {option}={description[option]!r:.100}, which is not a "
                "registered JSON hook. ferroflow calls only hooks it knows or that this program "
                "uses; if you trust this file, call "
                f"ferroflow.serializers.register_json_hook({description[option]!r:.100}) before reading it."
            )
    loads_kwargs = description.get("loads_kwargs")
    hooks = _CALLABLE_LOADS_OPTIONS.intersection(loads_kwargs) if isinstance(loads_kwargs, Mapping) else ()
    if hooks:
        # A file cannot name functions through the JSON library's own options either.
        raise SerializationError(
            f"The {where} file asks for loads_kwargs {sorted(hooks)!r:.200}, options that take functions; "
            "a stored result cannot choose them. Configure the serializer in the program instead."
        )
    inner = description.get("serializer")
    if inner is not None and (type_name == _COMPRESSED or type_name.startswith(f"{_COMPRESSED}/")):
        # A "compressed/json" holds JSON: its file cannot swap in another inner serializer.
        _check_stored_description(inner, type_name.partition("/")[2] or None, where=where)
