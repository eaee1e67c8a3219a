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
    def from_json(cls, document: str | bytes) -> PersistedResultBlob:
        fields = json.loads(document)
        if "prefect_version" in fields:
            raise ValueError("this is a Prefect 2 result document; read it with read_result()")
        return cls(
            serializer=fields["serializer"],
            data=base64.b64decode(fields["data"]),
            ferroflow_version=fields.get("ferroflow_version", "unknown"),
        )

    def load(self, *, expected_type: str | None = None) -> Any:
        """The value, loaded by the serializer the document describes once that description is
        checked (`serializer_for_reading`): of `expected_type` if given, known libraries only."""
        return serializer_for_reading(self.serializer, expected_type=expected_type).loads(self.data)


def is_json_document(path: str | PathLike[str]) -> bool:
    """Whether a result file is a JSON document (ferroflow's export form or Prefect 2's) rather
    than a framed blob: framed blobs open with a binary signature, documents with `{`."""
    with open(path, "rb") as file:
        return file.read(1) == b"{"


def read_blob_header(path: str | PathLike[str]) -> dict[str, Any]:
    """The verified header of a framed result file, as a dict (`ValueError` if it is not one)."""
    return _core.read_header(str(path)).to_dict()  # type: ignore[no-any-return]


def read_result_document(path: str | PathLike[str]) -> dict[str, Any]:
    """The fields of a JSON result document; `ValueError` if the file is JSON but not a result
    document (one needs 'serializer' and 'data')."""
    try:
        document = json.loads(_core.read_file(str(path)))
        document["serializer"], document["data"]
    except (KeyError, TypeError) as error:
        raise ValueError(f"it needs 'serializer' and 'data' fields: {error}") from error
    if not isinstance(document, dict):
        raise ValueError("it needs 'serializer' and 'data' fields")
    return document  # type: ignore[no-any-return]


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
        header, segments = _core.map_blob(path)
        return serializer_from_json(header.serializer, expected).load_segments(segments)
    fields = json.loads(_core.read_file(path))
    if "prefect_version" in fields:
        # Prefect 2 serializers base64-encoded their own output; loads_prefect2 undoes that.
        reader = serializer_for_reading(fields["serializer"], expected_type=expected)
        return reader.loads_prefect2(fields["data"].encode())
    return PersistedResultBlob.from_json(json.dumps(fields)).load(expected_type=expected)


@functools.lru_cache(maxsize=256)
def serializer_from_json(description_json: str, expected_type: str | None = None) -> Serializer:
    """The serializer a blob header describes (its JSON text), checked by `serializer_for_reading`
    against the type the reader expects (None: any known type)."""
    # Headers repeat the same few descriptions; building a serializer once per description keeps
    # reads of many small results cheap.
    return serializer_for_reading(json.loads(description_json), expected_type=expected_type)


def description_json(serializer: Serializer) -> str:
    return json.dumps(serializer.to_description(), sort_keys=True)
