"""The tag codec behind `JSONSerializer`: values the JSON types cannot hold become tagged objects
(`{"__ferroflow_type__": "datetime", "value": "..."}`) and come back as the same type.

`ferroflow_json_object_encoder` / `ferroflow_json_object_decoder` are the default hooks (they also
read Prefect 2's `{"__class__": ..., "data": ...}` objects); `_JSONTree` and `_apply_bottom_up`
walk a value or a decoded document and apply whichever hooks a serializer is configured with.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import enum
import importlib
import json
import math
import pathlib
import sys
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, PydanticSchemaGenerationError, TypeAdapter

from ferroflow.exceptions import SerializationError

_TAG = "__ferroflow_type__"
_PREFECT_CLASS = "__class__"  # Prefect 2's encoder wrote {"__class__": "<path>", "data": ...}
_PREFECT_KEYS = frozenset((_PREFECT_CLASS, "data"))
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
_NoneType = type(None)


#: How deeply a value's lists, dicts (and other containers) may nest in a JSON result. orjson
#: refuses to write deeper documents; the stdlib json library is held to the same bound, so
#: that both write and read the same documents (and recursive values stop here).
MAX_JSON_DEPTH = 254


class _Unsupported(Exception):
    """A value JSON cannot hold; collects the path to it, and the containers on that path,
    while unwinding."""

    def __init__(self, value: Any, reason: str) -> None:
        super().__init__(reason)
        self.value = value
        self.reason = reason
        self.path: list[str] = []
        self.containers: list[Any] = []

    def describe(self) -> str:
        """`result['a'][3]['b'] is a <type> (<reason>)`, or, for a value that contains itself,
        which part refers back to which."""
        containers = self.containers[::-1]  # outermost first, as the path reads
        path = self.path[::-1]
        seen: dict[int, int] = {}
        for depth, container in enumerate(containers):
            first = seen.setdefault(id(container), depth)
            if first != depth:
                inner, outer = _path_text(path[:depth]), _path_text(path[:first])
                return f"{inner} is {outer} itself: the value contains itself, which JSON cannot hold"
        kind = type(self.value)
        return f"{_path_text(path)} is a {kind.__module__}.{kind.__qualname__} ({self.reason})"


def _path_text(parts: list[str], shown: int = 8) -> str:
    """`result['a'][3]`; a long path keeps its ends (`result[0][0]…(240 more)…[0]`)."""
    if len(parts) <= 2 * shown:
        return "result" + "".join(parts)
    hidden = len(parts) - 2 * shown
    return f"result{''.join(parts[:shown])}…({hidden} more)…{''.join(parts[-shown:])}"


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
    if _is_pydantic_v1_model(obj):
        # v1 has no JSON-mode dump to plain types; its own JSON text is the same document.
        return _tagged("pydantic", cls=_class_path(type(obj)), value=json.loads(obj.json()))
    if isinstance(obj, BaseException):
        return _tagged("exception", cls=_class_path(type(obj)), args=list(obj.args))
    if isinstance(obj, pathlib.PurePath):
        return _tagged("path", value=str(obj))
    for base, (type_name, encode) in _SIMPLE_ENCODERS.items():
        if isinstance(obj, base):  # a subclass, e.g. pendulum's DateTime (datetime comes first)
            return _tagged(type_name, value=encode(obj))
    return _encode_with_pydantic(obj)


def _pydantic_v1_base() -> type | None:
    """`pydantic.v1.BaseModel` if any code has imported it (a v1 model exists only then), so
    that ferroflow does not pay for importing pydantic's v1 API itself."""
    v1 = sys.modules.get("pydantic.v1")
    return getattr(v1, "BaseModel", None)


def _is_pydantic_v1_model(obj: Any) -> bool:
    base = _pydantic_v1_base()
    return base is not None and isinstance(obj, base)


def _validate_as(klass: type, value: Any) -> Any:
    """`value` (a JSON document's part) validated as an instance of `klass`: a pydantic model,
    a pydantic v1 model (`pydantic.v1.BaseModel`), or any type pydantic can validate."""
    if issubclass(klass, BaseModel):
        return klass.model_validate(value)
    v1_base = _pydantic_v1_base()
    if v1_base is not None and issubclass(klass, v1_base):
        return klass.parse_obj(value)  # type: ignore[attr-defined]
    return _type_adapter(klass).validate_python(value)


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
            return _validate_as(_import_class(obj[_PREFECT_CLASS], object), obj["data"])
        return _decode_tagged(str(tag), obj)
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(
            f"Cannot decode the JSON value {_short(obj, 200)}: {_short(exc, 300)}"
        ) from exc


def _decode_tagged(tag: str, obj: dict[str, Any]) -> Any:
    simple = _SIMPLE_DECODERS.get(tag)
    if simple is not None:
        return simple(obj["value"])
    if tag == "enum":
        return _import_class(obj["cls"], enum.Enum)(obj["value"])
    if tag == "pydantic":
        return _validate_as(_import_class(obj["cls"], object), obj["value"])
    if tag == "exception":
        return _import_class(obj["cls"], BaseException)(*obj["args"])
    raise SerializationError(
        f"Unknown JSON tag {tag!r}: this result was written by a newer ferroflow. "
        "Upgrade ferroflow to read it."
    )


class _JSONTree:
    """Converts a value to plain JSON types, so every jsonlib writes the same document.

    A plain class (not a pydantic model): the walk reads `self.encoder` for every value.
    """

    __slots__ = ("encoder", "depth")

    def __init__(self, encoder: Callable[[Any], Any] | None) -> None:
        self.encoder = encoder
        self.depth = 0  # containers entered on the way to the value being converted

    def tree(self, obj: Any) -> Any:
        """`obj` as plain JSON types only."""
        kind = type(obj)
        if kind is str:
            return obj if obj.isascii() else _unicode_text(obj)
        if kind is bool or kind is _NoneType:
            return obj
        if kind is int:
            return obj if _INT64_MIN <= obj <= _UINT64_MAX else _big_int(obj)
        if kind is float:
            return obj if math.isfinite(obj) else _tagged("float", value=repr(obj))
        if kind is list:
            return self._items_tree(obj)
        if kind is dict:
            return self._dict_tree(obj)
        if kind is tuple or kind is set or kind is frozenset:
            return _tagged(kind.__name__, value=self._items_tree(obj))
        return self._encoded_tree(obj)

    def _enter(self, container: Any) -> None:
        self.depth += 1
        if self.depth > MAX_JSON_DEPTH:
            raise _Unsupported(
                container, f"nested deeper than {MAX_JSON_DEPTH} levels, the most JSON results hold"
            )

    def _items_tree(self, items: Any) -> list[Any]:
        self._enter(items)
        tree = []
        for index, item in enumerate(items):
            try:
                tree.append(self.tree(item))
            except _Unsupported as exc:
                exc.path.append(f"[{index}]" if isinstance(items, (list, tuple)) else f" item {_short(item)}")
                exc.containers.append(items)
                raise
        self.depth -= 1
        return tree

    def _dict_tree(self, mapping: dict[Any, Any]) -> Any:
        self._enter(mapping)
        plain_keys = all(type(key) is str for key in mapping)
        if plain_keys and _TAG not in mapping and mapping.keys() != _PREFECT_KEYS:
            tree = {}
            for key, value in mapping.items():
                try:
                    if not key.isascii():
                        _unicode_text(key, "a key")
                    tree[key] = self.tree(value)
                except _Unsupported as exc:
                    exc.path.append(f"[{_short(key)}]")
                    exc.containers.append(mapping)
                    raise
            self.depth -= 1
            return tree
        # Non-string keys, or keys that would read as a tag: keep it as [key, value] pairs.
        pairs = []
        for key, value in mapping.items():
            try:
                pairs.append([self.tree(key), self.tree(value)])
            except _Unsupported as exc:
                exc.path.append(f"[{_short(key)}]")
                exc.containers.append(mapping)
                raise
        self.depth -= 1
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


def _unicode_text(text: str, what: str = "a string") -> str:
    """`text` if it is valid Unicode (no lone surrogates, which UTF-8 cannot encode)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Unsupported(
            text,
            f"{what} that is not valid Unicode: a lone surrogate {text[exc.start]!r} at index {exc.start}",
        ) from None
    return text


def _big_int(number: int) -> Any:
    try:
        return _tagged("int", value=str(number))
    except ValueError:  # more digits than Python converts to text (sys.set_int_max_str_digits)
        raise _Unsupported(
            number,
            f"an integer of about {int(number.bit_length() * 0.30103) + 1} digits, more than Python "
            f"converts to text ({sys.get_int_max_str_digits()}; see sys.set_int_max_str_digits)",
        ) from None


def _short(value: Any, limit: int = 60) -> str:
    """repr of a key or set item for a path, cut short (a path names where, not what)."""
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
