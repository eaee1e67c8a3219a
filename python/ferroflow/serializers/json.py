"""`JSONSerializer`: JSON through a chosen library ("json", "orjson", ...), with the types JSON
cannot hold written by the tag codec in `json_tags`."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any, Literal

from pydantic import Field, field_validator

from ferroflow.exceptions import SerializationError
from ferroflow.serializers._libraries import (
    _accepts_keyword,
    _import_module,
    _refuse_code_loading_json_library,
    _require_functions,
    register_json_hook,
    register_library,
)
from ferroflow.serializers.base import Serializer, _as_bytes
from ferroflow.serializers.json_tags import (
    MAX_JSON_DEPTH,
    _apply_bottom_up,
    _import_object,
    _JSONTree,
    _Unsupported,
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

    @field_validator("dumps_kwargs")
    @classmethod
    def _no_default_hook(cls, value: dict[str, Any]) -> dict[str, Any]:
        # The serializer passes its own hooks; a `default` here would be silently overridden.
        if "default" in value:
            raise SerializationError(
                "JSONSerializer(dumps_kwargs={'default': ...}) is not supported: the serializer "
                "encodes values JSON cannot hold itself. Pass object_encoder='package.module.function' "
                "instead (a function returning a JSON-able stand-in)."
            )
        return value

    @field_validator("loads_kwargs")
    @classmethod
    def _no_object_hook(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "object_hook" in value:
            raise SerializationError(
                "JSONSerializer(loads_kwargs={'object_hook': ...}) is not supported: the serializer "
                "decodes objects itself. Pass object_decoder='package.module.function' instead "
                "(called on every decoded object, innermost first)."
            )
        return value

    def model_post_init(self, context: Any) -> None:
        # Import and check everything now, so that a bad description fails when it is made.
        _refuse_code_loading_json_library(self.jsonlib)
        _json_library(self.jsonlib)
        _json_hook(self.object_encoder, "object_encoder")
        _json_hook(self.object_decoder, "object_decoder")
        # What this program configured, result files written with it may name (see _libraries).
        register_library("jsonlib", self.jsonlib)
        for hook in (self.object_encoder, self.object_decoder):
            if hook is not None:
                register_json_hook(hook)

    def dumps(self, obj: Any) -> bytes:
        try:
            tree = _JSONTree(_json_hook(self.object_encoder, "object_encoder")).tree(obj)
        except _Unsupported as exc:
            raise SerializationError(
                f"Cannot serialize the result as JSON: {exc.describe()}. Use the pickle serializer "
                "(result_serializer='pickle') for such values, or give JSONSerializer an "
                "object_encoder/object_decoder pair that handles it."
            ) from exc
        except RecursionError:  # the caller's own stack was already deep
            raise SerializationError(
                "Cannot serialize the result as JSON: it is nested too deeply for this call stack. "
                "Flatten the value, or use result_serializer='pickle'."
            ) from None
        try:
            text = _json_library(self.jsonlib).module.dumps(tree, **self.dumps_kwargs)
            return text.encode() if isinstance(text, str) else bytes(text)
        except (TypeError, ValueError, RecursionError) as exc:  # e.g. orjson's depth limit on tagged values
            raise SerializationError(
                f"Cannot serialize the result as JSON: {self.jsonlib} refused it ({type(exc).__name__}: "
                f"{exc}). Use result_serializer='pickle' for such values."
            ) from None

    def loads(self, blob: Any) -> Any:
        data = _as_bytes(blob)  # the stdlib json refuses memoryview
        library = _json_library(self.jsonlib)
        decoder = _json_hook(self.object_decoder, "object_decoder")
        try:
            if decoder is not None and library.has_object_hook:
                return library.module.loads(data, object_hook=decoder, **self.loads_kwargs)
            tree = library.module.loads(data, **self.loads_kwargs)
            return tree if decoder is None else _apply_bottom_up(tree, decoder)
        except SerializationError:
            raise
        except RecursionError:
            raise SerializationError(
                f"The JSON result is nested too deeply to load ({self.jsonlib}); ferroflow writes at "
                f"most {MAX_JSON_DEPTH} levels. The file was not written by this serializer, or is damaged."
            ) from None
        except (ValueError, TypeError) as exc:
            raise SerializationError(f"The result is not valid JSON ({self.jsonlib}): {exc}") from exc


@dataclasses.dataclass(frozen=True)
class _JSONLibrary:
    """A JSON module and whether its `loads` takes an `object_hook`."""

    module: ModuleType
    has_object_hook: bool


@functools.cache
def _json_library(name: str) -> _JSONLibrary:
    """The JSON module `name`, checked, imported once per process (see `pickle._pickle_library`
    for why not in private attributes)."""
    module = _import_module(name, "jsonlib")
    _require_functions(module, ("dumps", "loads"), "jsonlib", "Use a JSON module such as 'json' or 'orjson'.")
    return _JSONLibrary(module=module, has_object_hook=_accepts_keyword(module.loads, "object_hook"))


@functools.cache
def _json_hook(path: str | None, role: str) -> Callable[..., Any] | None:
    """The object encoder or decoder function at the importable `path`, imported once."""
    if path is None:
        return None
    hook = _import_object(path)
    if not callable(hook):
        raise SerializationError(f"{role} {path!r} is not a function.")
    return hook  # type: ignore[no-any-return]
