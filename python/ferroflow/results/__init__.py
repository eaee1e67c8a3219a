"""Results: the objects a state's `data` holds, how they are made, written, named and read back.

- `base`: `BaseResult`, `LiteralResult`, `UnpersistedResult`, `PersistedResult`.
- `factory`: `ResultFactory`, the spec's persistence rules for a flow's or task's return value.
- `result_ref`, `references`: `ResultRef`, and every conversion between a result and its reference.
- `blobs`: result files: the JSON document form (`PersistedResultBlob`) and `read_result`.
"""

from ferroflow.results.base import (
    MAP_FROM_BYTES,
    BaseResult,
    LiteralResult,
    PersistedResult,
    UnpersistedResult,
    is_literal,
)
from ferroflow.results.blobs import PersistedResultBlob, read_result
from ferroflow.results.factory import ResultFactory
from ferroflow.results.references import reopen_result, result_from_reference, result_reference
from ferroflow.results.result_ref import ResultRef

__all__ = [
    "MAP_FROM_BYTES",
    "BaseResult",
    "LiteralResult",
    "PersistedResult",
    "PersistedResultBlob",
    "ResultFactory",
    "ResultRef",
    "UnpersistedResult",
    "is_literal",
    "read_result",
    "reopen_result",
    "result_from_reference",
    "result_reference",
]
