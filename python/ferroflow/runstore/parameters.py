"""What the run store keeps of a run's parameters: a summary, `name=repr, ...`, of bounded length.

The run store's writer thread summarizes the parameters of every run it writes, holding the GIL
the engine's thread waits for: a summary must be cheap, and must never raise.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import Any

PARAMETERS_SUMMARY_LIMIT = 500
"""The longest parameters summary kept for a run, in characters."""

_summary_repr = reprlib.Repr()
_summary_repr.maxlevel = 3
_summary_repr.maxstring = 60
_summary_repr.maxother = 60
_summary_repr.maxlong = 40
_SHORT_REPR_TYPES = frozenset({type(None), bool, float})


def summarize_parameters(parameters: Mapping[str, Any] | None, limit: int = PARAMETERS_SUMMARY_LIMIT) -> str:
    """`name=value, ...` with every value's repr bounded, the whole at most `limit` characters.

    The store keeps this summary, never the values: they can be large, private or unpicklable.
    """
    if parameters is None:
        return ""
    try:
        items = list(parameters.items())
    except Exception:  # not a mapping after all: still a summary, never an error in the writer
        return _bounded(_safe_repr(parameters), limit)
    parts = []
    for name, value in items:
        # The common cases without reprlib's machinery (this runs per task run, on the writer
        # thread, holding the GIL the engine's thread waits for): short scalars, and small lists
        # and tuples of them, whose plain repr is what reprlib would give.
        kind = type(value)
        if _is_short_scalar(value, kind) or (
            kind in _SMALL_CONTAINER_TYPES
            and len(value) <= _SMALL_CONTAINER_TYPES[kind]
            and _all_short_scalars(value)
        ):
            shown = repr(value)
        else:
            shown = _safe_repr(value)
        parts.append(f"{name}={shown}")
    return _bounded(", ".join(parts), limit)


# The containers shown whole by reprlib up to so many items (more are cut with "...").
_SMALL_CONTAINER_TYPES: dict[type, int] = {list: _summary_repr.maxlist, tuple: _summary_repr.maxtuple}


def _is_short_scalar(value: Any, kind: type) -> bool:
    return (
        kind in _SHORT_REPR_TYPES
        or (kind is int and value.bit_length() <= 64)
        or (kind is str and len(value) <= _summary_repr.maxstring)
    )


def _all_short_scalars(items: Any) -> bool:
    """`_is_short_scalar` of every item, in one loop (no call per item)."""
    short_types, max_string = _SHORT_REPR_TYPES, _summary_repr.maxstring
    for item in items:
        kind = type(item)
        if kind in short_types or (kind is int and item.bit_length() <= 64):
            continue
        if kind is str and len(item) <= max_string:
            continue
        return False
    return True


def _safe_repr(value: Any) -> str:
    try:
        return _summary_repr.repr(value)
    except Exception:  # a user's __repr__ may raise anything; the summary must not
        return f"<{type(value).__name__}>"


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
