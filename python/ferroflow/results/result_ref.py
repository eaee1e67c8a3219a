"""`ResultRef`: how a run store or a cache entry names a result (the conversions between results
and references are in `ferroflow.results.references`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

ResultKind = Literal["literal", "persisted"]


@dataclass(frozen=True, slots=True)
class ResultRef:
    """Where a state's result lives: inline as JSON (a literal) or in result storage.

    Build one with `ResultRef.literal(value)` or `ResultRef.persisted(storage, key, serializer)`.
    """

    kind: ResultKind
    value_json: str | None = None
    """The literal value as JSON text (literal results only)."""
    storage: str | None = None
    """The storage's description or slug, e.g. `local-file-system/dev` (persisted results only)."""
    key: str | None = None
    """Where the result is inside that storage (persisted results only)."""
    serializer: str | None = None
    """The serializer type the result was written with, e.g. `pickle` (persisted results only)."""

    @classmethod
    def literal(cls, value: Any) -> ResultRef:
        """A value stored inline; it must be JSON serializable (ferroflow inlines None/True/False)."""
        try:
            text = json.dumps(value)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"A literal result must be JSON serializable, got {type(value).__name__}: {error}. "
                "Persist the result instead and record ResultRef.persisted(storage, key, serializer)."
            ) from None
        return cls(kind="literal", value_json=text)

    @classmethod
    def persisted(cls, storage: str, key: str, serializer: str) -> ResultRef:
        """A result written to `storage` under `key` by the `serializer` type."""
        return cls(kind="persisted", storage=storage, key=key, serializer=serializer)

    @classmethod
    def from_result_reference(cls, reference: Mapping[str, Any]) -> ResultRef | None:
        """From a result's `to_reference()` (`ferroflow.results`): a literal `{"type": "result",
        "value": json}` or a persisted `{"type": "reference", "storage": description or slug,
        "storage_key": ..., "serializer_type": ...}`. None for an unpersisted result: there is
        nothing to refer to."""
        kind = reference.get("type")
        if kind == "result":
            return cls(kind="literal", value_json=reference["value"])
        if kind == "reference":
            storage = reference["storage"]
            # A storage description (a dict) is kept as canonical JSON text, a slug as it is.
            text = storage if isinstance(storage, str) else json.dumps(storage, sort_keys=True)
            return cls.persisted(text, reference["storage_key"], reference["serializer_type"])
        if kind == "unpersisted":
            return None
        raise ValueError(
            f"Unknown result reference type {kind!r}; expected 'result', 'reference' or 'unpersisted' "
            "(the forms ferroflow.results' to_reference() gives)."
        )

    def to_result_reference(self) -> dict[str, Any]:
        """The reference `ferroflow.results.result_from_reference` reopens (a cache hit's result)."""
        if self.kind == "literal":
            return {"type": "result", "value": self.value_json}
        storage: Any = self.storage
        if storage is not None and storage.startswith("{"):
            storage = json.loads(storage)
        return {
            "type": "reference",
            "storage": storage,
            "storage_key": self.key,
            "serializer_type": self.serializer,
        }

    @property
    def value(self) -> Any:
        """The literal value (literal results only)."""
        if self.kind != "literal" or self.value_json is None:
            raise ValueError(f"A {self.kind} result reference holds no inline value; read it from storage.")
        return json.loads(self.value_json)

    def describe(self) -> str:
        """A one-line human form, as the CLI shows it."""
        if self.kind == "literal":
            return f"literal {self.value_json}"
        return f"{(self.key or '')[:12]} ({self.serializer}) in {_storage_place(self.storage or '')}"

    def to_dict(self) -> dict[str, Any]:
        """As JSON shows it: a storage description as an object, a saved storage's slug as a string."""
        if self.kind == "literal":
            return {"kind": "literal", "value": self.value}
        storage: Any = self.storage
        if storage is not None and storage.startswith("{"):
            try:
                storage = json.loads(storage)
            except ValueError:
                pass  # a damaged record is shown as it was recorded
        return {"kind": "persisted", "storage": storage, "key": self.key, "serializer": self.serializer}


def _storage_place(storage: str) -> str:
    """Where a persisted result lives, short enough for a table cell: a saved storage's slug, a
    local folder, or the storage description as recorded."""
    if not storage.startswith("{"):
        return storage  # a slug such as "local-file-system/dev"
    try:
        description = json.loads(storage)
    except ValueError:
        return storage
    if description.get("type") == "local-file-system":
        return description.get("basepath") or "the default local storage"
    return str(description.get("type", storage))
