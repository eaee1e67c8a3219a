"""Importing and checking the modules a serializer delegates to, chosen by name in its options
(`picklelib`, `jsonlib`, `compressionlib`): a missing module or function is reported as a
SerializationError that says what to use instead."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from ferroflow.exceptions import SerializationError


def _import_module(name: str, role: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise SerializationError(
            f"Cannot import the {role} {name!r}: {exc}. Install it, or choose another {role}."
        ) from exc


def _require_functions(module: ModuleType, names: Sequence[str], role: str, hint: str) -> None:
    missing = [name for name in names if not callable(getattr(module, name, None))]
    if missing:
        raise SerializationError(
            f"{role} {module.__name__!r} cannot be used: it has no "
            f"{' or '.join(f'{name}()' for name in missing)} function. {hint}"
        )


def _accepts_keyword(function: Callable[..., Any], keyword: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # some builtins have no introspectable signature
        return False
    return keyword in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
