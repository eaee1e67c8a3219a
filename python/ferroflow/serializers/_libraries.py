"""Importing and checking the modules a serializer delegates to, chosen by name in its options
(`picklelib`, `jsonlib`, `compressionlib`): a missing module or function is reported as a
SerializationError that says what to use instead. Also the names a stored result may ask for:
the known libraries of each role and the known JSON hooks (see the section below)."""

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


# --- which names a result file may ask for -------------------------------------------------------
#
# A result's header (or a JSON result document) describes the serializer that wrote it, options
# included. Those options name modules to import and functions to call, so a file that could name
# any of them could make its reader import and run any code. A description read from a file is
# therefore only accepted when every library and hook it names is known here: the built-in ones
# below, those registered with `register_library` / `register_json_hook`, and those that this
# process's own code configured (a serializer made by the program registers its names; one read
# from a file is checked before it is made).

LIBRARY_ROLES = ("jsonlib", "picklelib", "compressionlib")

# Modules that load pickles (or other code-carrying formats): never a JSON library, so that a
# JSON result can never be unpickled whatever its file says.
_CODE_LOADING_MODULES = frozenset(
    ("pickle", "_pickle", "cloudpickle", "dill", "marshal", "shelve", "joblib", "pickle5", "copyreg")
)

_known_libraries: dict[str, set[str]] = {
    "jsonlib": {"json", "orjson", "simplejson", "ujson"},
    "picklelib": {"pickle", "cloudpickle", "dill"},
    "compressionlib": {"lzma", "bz2", "zlib", "zstd", "gzip"},
}

_known_json_hooks: set[str] = {
    "ferroflow.serializers.ferroflow_json_object_encoder",
    "ferroflow.serializers.ferroflow_json_object_decoder",
    # Prefect 2's own hooks, named in its JSON result documents; ferroflow reads them with its own.
    "prefect.serializers.prefect_json_object_encoder",
    "prefect.serializers.prefect_json_object_decoder",
}


def register_library(role: str, module_name: str) -> None:
    """Let result files name `module_name` as their `role` ("jsonlib", "picklelib" or
    "compressionlib"). Serializers this program makes register their libraries themselves; this
    is for processes that only read results written elsewhere with another library, e.g.
    `register_library("jsonlib", "rapidjson")` before `read_result(...)`."""
    if role not in LIBRARY_ROLES:
        raise SerializationError(f"Unknown library role {role!r}; use one of {', '.join(LIBRARY_ROLES)}.")
    if not isinstance(module_name, str) or not module_name:
        raise SerializationError(f"A {role} is named by its module's import name, got {module_name!r}.")
    if role == "jsonlib":
        _refuse_code_loading_json_library(module_name)
    _known_libraries[role].add(module_name)


def register_json_hook(hook: str | Callable[..., Any]) -> None:
    """Let result files name `hook` (a function, or its path "package.module.function") as the
    JSON serializer's `object_encoder` / `object_decoder`."""
    if callable(hook):
        module, qualname = getattr(hook, "__module__", None), getattr(hook, "__qualname__", None)
        if not module or not qualname:
            raise SerializationError(f"{hook!r} has no importable name; register a module-level function.")
        _known_json_hooks.update((f"{module}.{qualname}", f"{module}:{qualname}"))
        return
    if not isinstance(hook, str) or not hook:
        raise SerializationError(f"A JSON hook is a function or its import path, got {hook!r}.")
    _known_json_hooks.add(hook)


def _refuse_code_loading_json_library(module_name: str) -> None:
    if module_name.partition(".")[0] in _CODE_LOADING_MODULES:
        raise SerializationError(
            f"jsonlib {module_name!r} loads pickles or code, not JSON, so it cannot be a JSON "
            "library. Use jsonlib='json' or 'orjson', or result_serializer='pickle' if you mean pickle."
        )


def _is_known_library(role: str, module_name: Any) -> bool:
    return isinstance(module_name, str) and module_name in _known_libraries[role]


def _is_known_json_hook(path: Any) -> bool:
    return path is None or (isinstance(path, str) and path in _known_json_hooks)
