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
from ferroflow.result_trust import read_policy, refuse_unsigned_document
from ferroflow.serializers import Serializer


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

    def load(self) -> Any:
        refuse_unsigned_document("This PersistedResultBlob")
        return Serializer.from_description(self.serializer).loads(self.data)


def is_json_document(path: str | PathLike[str]) -> bool:
    """Whether a result file is a JSON document (ferroflow's export form or Prefect 2's) rather
    than a framed blob: framed blobs open with a binary signature, documents with `{`. The core
    opens the file, so a FIFO or a device is refused at once instead of blocking."""
    return _core.read_file_prefix(str(path), 1) == b"{"


def read_blob_header(path: str | PathLike[str]) -> dict[str, Any]:
    """The verified header of a framed result file, as a dict (`ValueError` if it is not one).
    Only integrity is checked: a header is read to be shown, not trusted."""
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


def read_result(path: str | PathLike[str]) -> Any:
    """The value held in a result file: a ferroflow framed blob, a ferroflow JSON document, or a
    JSON result file written by Prefect 2.x."""
    if not is_json_document(path):
        header, segments = _core.map_blob(path, policy=read_policy())
        return serializer_from_json(header.serializer).load_segments(segments)
    refuse_unsigned_document(str(path))
    fields = json.loads(_core.read_file(path))
    if "prefect_version" in fields:
        # Prefect 2 serializers base64-encoded their own output; loads_prefect2 undoes that.
        return Serializer.from_description(fields["serializer"]).loads_prefect2(fields["data"].encode())
    return PersistedResultBlob.from_json(json.dumps(fields)).load()


@functools.lru_cache(maxsize=256)
def serializer_from_json(description_json: str) -> Serializer:
    """The serializer a blob header describes (its JSON text)."""
    # Headers repeat the same few descriptions; building a serializer once per description keeps
    # reads of many small results cheap.
    return Serializer.from_description(json.loads(description_json))


def description_json(serializer: Serializer) -> str:
    # Compact: the description is in every blob's header, and most results are small.
    return json.dumps(serializer.to_description(), sort_keys=True, separators=(",", ":"))
