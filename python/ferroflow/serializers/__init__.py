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

Reading a stored result, the file's description of its serializer is checked first
(`serializer_for_reading`): it must be of the type the reader expects, and name only known
libraries and JSON hooks (`register_library`, `register_json_hook`), so a file cannot choose the
code that loads it.

One job per module, each importing only modules listed before it:

- `_libraries`: importing and checking the modules named by `picklelib`, `jsonlib`, `compressionlib`,
  and the libraries and JSON hooks a stored result may name (`register_library`, `register_json_hook`);
- `base`: the `Serializer` base class, the registry of types, `resolve_serializer`, and
  `serializer_for_reading` (a stored description, checked before anything it names is imported);
- `pickle`: `PickleSerializer` (protocol 5, large buffers as out-of-band segments);
- `json_tags`: the tag codec that writes non-JSON types as tagged JSON objects and reads them back;
- `json`: `JSONSerializer`, through the stdlib json, orjson or another library;
- `compressed`: `CompressedSerializer` and the `"compressed/<type>"` types.

Importing the package imports them all, so every built-in type is registered. The names below
are imported from `ferroflow.serializers` itself; the modules only organise the code.
"""

from __future__ import annotations

from ferroflow.serializers._libraries import register_json_hook, register_library
from ferroflow.serializers.base import (
    Serializer,
    known_serializer_types,
    resolve_serializer,
    serializer_for_reading,
)
from ferroflow.serializers.compressed import (
    CORE_CODECS,
    CompressedJSONSerializer,
    CompressedPickleSerializer,
    CompressedSerializer,
)
from ferroflow.serializers.compressed import (
    LZMA_THREADED_MIN_SIZE as LZMA_THREADED_MIN_SIZE,
)
from ferroflow.serializers.json import JSONSerializer
from ferroflow.serializers.json_tags import ferroflow_json_object_decoder, ferroflow_json_object_encoder

# Stored pickles of large `bytes` results name this function here (see its definition).
from ferroflow.serializers.pickle import OUT_OF_BAND_BYTES_MIN_SIZE as OUT_OF_BAND_BYTES_MIN_SIZE
from ferroflow.serializers.pickle import PickleSerializer
from ferroflow.serializers.pickle import _bytes_from_buffer as _bytes_from_buffer

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
    "register_json_hook",
    "register_library",
    "resolve_serializer",
    "serializer_for_reading",
]
