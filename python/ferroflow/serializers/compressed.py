"""`CompressedSerializer` and its `"compressed/pickle"` / `"compressed/json"` types: another
serializer's bytes compressed by a core codec (lzma, bz2, zlib, zstd) or any module with
`compress`/`decompress`. `"compressed/<type>"` works for a registered custom type too: a
`CompressedSerializer` of that type wraps it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_serializer, field_validator, model_validator

from ferroflow import _core
from ferroflow.exceptions import SerializationError
from ferroflow.serializers._libraries import _import_module, _require_functions, register_library
from ferroflow.serializers.base import Serializer, _b64decode, resolve_serializer
from ferroflow.serializers.json import JSONSerializer
from ferroflow.serializers.pickle import PickleSerializer
from ferroflow.settings import get_current_settings

#: Compression codecs implemented by ferroflow's Rust core (standard formats: xz, bz2, zlib, zstd).
CORE_CODECS: tuple[str, ...] = ("lzma", "bz2", "zlib", "zstd")

#: lzma inputs at least this large are compressed by the multi-threaded encoder; below it the
#: thread start-up and the smaller blocks cost more than they gain.
LZMA_THREADED_MIN_SIZE = 8 * 1024 * 1024


class CompressedSerializer(Serializer):
    """Wraps another serializer and compresses its bytes.

    `compressionlib` is one of the core codecs "lzma" (default, the xz format), "bz2", "zlib",
    "zstd" — run by ferroflow's Rust core, GIL released, standard formats (so
    `lzma.decompress(CompressedSerializer(serializer="pickle").dumps(x))` is the pickle of `x`) —
    or any importable module with `compress`/`decompress` functions. `level` is the codec's level
    (None: the codec's default; core codecs only).
    """

    # "compressed", or "compressed/<type>" for a custom type (its default inner serializer).
    type: str = "compressed"
    serializer: Serializer = Field(default_factory=lambda: PickleSerializer())
    compressionlib: str = "lzma"
    level: int | None = None

    _module: ModuleType | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _inner_serializer_from_the_type(cls, options: Any) -> Any:
        # Serializer(type="compressed/my") wraps a default `my` serializer.
        if isinstance(options, Mapping) and "serializer" not in options:
            inner = str(options.get("type", "")).partition("/")[2]
            if inner and cls.model_fields["type"].default == "compressed":
                return {**options, "serializer": inner}
        return options

    @field_validator("type")
    @classmethod
    def _compressed_type(cls, value: str) -> str:
        if value != "compressed" and not value.startswith("compressed/"):
            raise SerializationError(
                f"A CompressedSerializer's type is 'compressed' or 'compressed/<type>', not {value!r}."
            )
        return value

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
        register_library("compressionlib", self.compressionlib)  # result files may name it now
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

    def dump_for_storage(self, obj: Any) -> tuple[Serializer, list[Any]]:
        if self._module is None or self.serializer.frame_codec[0] != "none":
            # A core codec: the frame compresses, and skips compression that would not shrink the
            # payload itself (its header says so).
            return super().dump_for_storage(obj)
        raw = self.serializer.dumps(obj)
        compressed = self._compress(raw)
        if len(compressed) < len(raw):
            return self, [compressed]
        # The module would make the payload bigger (a tiny result: gzip adds 18 bytes or more):
        # the blob holds the wrapped serializer's bytes and is described as written by it, so
        # that its header says it is not compressed and every reader reads the same value.
        return self.serializer, [raw]

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
        threads = 0 if self.compressionlib == "lzma" and len(data) >= LZMA_THREADED_MIN_SIZE else 1
        return _core.compress(data, self.compressionlib, level=self.level, threads=threads)

    def _decompress(self, blob: Any) -> bytes:
        limit = get_current_settings().results_max_decompressed_size
        try:
            if self._module is not None:
                # A library named by the user: its decompress() takes no bound.
                return self._module.decompress(blob)
            return _core.decompress(blob, self.compressionlib, max_output=limit)
        except ValueError as exc:
            if self._module is None and "max_output" in str(exc):
                raise SerializationError(
                    f"The result decompresses to more than {limit:,} bytes "
                    "(FERROFLOW_RESULTS_MAX_DECOMPRESSED_SIZE); it is refused before that memory is "
                    "taken. Raise the setting if the result is genuinely that large."
                ) from exc
            raise SerializationError(
                f"Cannot decompress the result with {self.compressionlib}: {exc}. It was not "
                "written by this serializer, or the data is damaged."
            ) from exc
        except OSError as exc:
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
