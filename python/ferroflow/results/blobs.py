"""Result files apart from the result objects: the serializer a blob header names, the JSON
document form of a result (`PersistedResultBlob`: serializer description, base64 data, version;
also what Prefect 2 wrote), and `read_result`, which reads any of them from a path."""

from __future__ import annotations

import base64
import functools
import json
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import ferroflow._core as _core
from ferroflow.exceptions import CorruptResultError
from ferroflow.result_trust import read_policy, refuse_unsigned_document
from ferroflow.serializers import Serializer, serializer_for_reading


@dataclass
class PersistedResultBlob:
    """The spec's persisted document: serializer description, the serialized data, the version.

    ferroflow writes framed binary blobs; this JSON form (data base64-encoded) is for export and
    for reading what Prefect 2 wrote.
    """

    serializer: dict[str, Any]
    data: bytes
    ferroflow_version: str = field(default=_core.__version__)

    def to_json(self) -> str:
        return json.dumps(
            {
                "serializer": self.serializer,
                "data": base64.b64encode(self.data).decode("ascii"),
                "ferroflow_version": self.ferroflow_version,
            }
        )

    @classmethod
    def from_json(cls, document: str | bytes, *, where: str = "The JSON text") -> PersistedResultBlob:
        """The document's fields; CorruptResultError (naming `where`) if it is not one."""
        fields = _document_fields(document, where)
        if "prefect_version" in fields:
            raise ValueError("this is a Prefect 2 result document; read it with read_result()")
        version = fields.get("ferroflow_version", "unknown")
        return cls(
            serializer=fields["serializer"],
            data=_base64_data(fields["data"], where),
            ferroflow_version=version if isinstance(version, str) else "unknown",
        )

    def load(self, *, expected_type: str | None = None) -> Any:
        """The value, loaded by the serializer the document describes once that description is
        checked (`serializer_for_reading`): of `expected_type` if given, known libraries only.
        Refused when results must be signed: a JSON document cannot be."""
        refuse_unsigned_document("This PersistedResultBlob")
        return serializer_for_reading(self.serializer, expected_type=expected_type).loads(self.data)


def is_json_document(path: str | PathLike[str]) -> bool:
    """Whether a result file is a JSON document (ferroflow's export form or Prefect 2's) rather
    than a framed blob: framed blobs open with a binary signature, documents with `{`. The core
    opens the file, so a FIFO or a device is refused at once instead of blocking."""
    return _core.read_file_prefix(str(path), 1) == b"{"


# The first bytes of every framed result file (docs/format.md; `MAGIC` in rust/core/src/frame.rs).
BLOB_SIGNATURE = b"\x89FFB\r\n\x1a\n"


def has_blob_signature(path: str | PathLike[str]) -> bool:
    """Whether a file opens with a framed result's signature: a damaged result if its header then
    fails to verify, rather than a file of another kind."""
    with open(path, "rb") as file:
        return file.read(len(BLOB_SIGNATURE)) == BLOB_SIGNATURE


def read_blob_header(path: str | PathLike[str]) -> dict[str, Any]:
    """The verified header of a framed result file, as a dict (`ValueError` if it is not one).
    Only integrity is checked: a header is read to be shown, not trusted."""
    return _core.read_header(str(path)).to_dict()  # type: ignore[no-any-return]


def read_result_document(path: str | PathLike[str]) -> dict[str, Any]:
    """The fields of a JSON result document; CorruptResultError (a ValueError) if the file is not
    one: an object with a 'serializer' description and base64 'data' text."""
    return _document_fields(_core.read_file(str(path)), f"The result document {path}")


def _document_fields(document: str | bytes, where: str) -> dict[str, Any]:
    """The fields of a JSON result document (ferroflow's or Prefect 2's), checked for the shape
    every reader relies on, so that a damaged one is a CorruptResultError, not a KeyError."""
    try:
        fields = json.loads(document)
    except (ValueError, RecursionError) as error:  # not UTF-8, not JSON, absurdly nested
        raise CorruptResultError(
            f"{where} is not valid JSON ({_short(error)}); it is damaged or truncated."
        ) from None
    problem = _document_problem(fields)
    if problem is not None:
        raise CorruptResultError(
            f"{where} is not a result document: {problem}. A result document is an object with a "
            "'serializer' description (an object with a 'type') and the base64 'data' text."
        )
    return fields  # type: ignore[no-any-return]


def _document_problem(fields: Any) -> str | None:
    if not isinstance(fields, dict):
        return f"it is a JSON {type(fields).__name__}, not an object"
    missing = [name for name in ("serializer", "data") if name not in fields]
    if missing:
        return f"it has no {' or '.join(repr(name) for name in missing)} field"
    serializer = fields["serializer"]
    if not isinstance(serializer, dict) or not isinstance(serializer.get("type"), str):
        return f"its 'serializer' is {_short(serializer)}, not an object with a 'type' text"
    if not isinstance(fields["data"], str):
        return f"its 'data' is a JSON {type(fields['data']).__name__}, not base64 text"
    return None


def _base64_data(data: str, where: str) -> bytes:
    try:
        return base64.b64decode(data)
    except ValueError as error:  # binascii.Error: bad padding, non-ASCII text
        raise CorruptResultError(
            f"{where} holds 'data' that is not base64 ({error}); it is damaged."
        ) from None


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value) if not isinstance(value, BaseException) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_result_file(path: str | PathLike[str]) -> bool:
    """Whether `path` holds a result: a framed blob with a valid header, or a JSON result
    document. Unreadable files are not results."""
    try:
        if is_json_document(path):
            read_result_document(path)
        else:
            read_blob_header(path)
    except (OSError, ValueError):
        return False
    return True


def read_result(path: str | PathLike[str], *, serializer: Serializer | str | None = None) -> Any:
    """The value held in a result file: a ferroflow framed blob, a ferroflow JSON document, or a
    JSON result file written by Prefect 2.x.

    `serializer` (an instance or a type name such as "json") is the serializer the reader expects:
    a file written by another type is refused (CorruptResultError) before any of it is loaded.
    Either way, the file may name only known libraries and hooks (`serializer_for_reading`)."""
    expected = serializer.type if isinstance(serializer, Serializer) else serializer
    if not is_json_document(path):
        header, segments = _core.map_blob(path, policy=read_policy())
        return serializer_from_json(header.serializer, expected).load_segments(segments)
    refuse_unsigned_document(str(path))
    where = f"The result document {path}"
    fields = _document_fields(_core.read_file(path), where)
    if "prefect_version" in fields:
        # Prefect 2 serializers base64-encoded their own output; loads_prefect2 undoes that.
        reader = serializer_for_reading(fields["serializer"], expected_type=expected)
        return reader.loads_prefect2(fields["data"].encode())
    return PersistedResultBlob.from_json(json.dumps(fields), where=where).load(expected_type=expected)


@functools.lru_cache(maxsize=256)
def serializer_from_json(description_json: str, expected_type: str | None = None) -> Serializer:
    """The serializer a blob header describes (its JSON text), checked by `serializer_for_reading`
    against the type the reader expects (None: any known type)."""
    # Headers repeat the same few descriptions; building a serializer once per description keeps
    # reads of many small results cheap.
    try:
        description = json.loads(description_json)
    except ValueError as error:  # JSON to the core, beyond Python's bounds (a 5000-digit number)
        raise CorruptResultError(
            f"The result's header describes its serializer in JSON that cannot be read here "
            f"({_short(error)}); the file was not written by ferroflow, or is damaged."
        ) from None
    return serializer_for_reading(description, expected_type=expected_type)


def description_json(serializer: Serializer) -> str:
    # Compact: the description is in every blob's header, and most results are small.
    return json.dumps(serializer.to_description(), sort_keys=True, separators=(",", ":"))
