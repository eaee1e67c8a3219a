"""ferroflow settings. Minimal placeholder with the stable access API; the full
pydantic-settings implementation (environment, profile file, CLI) replaces the internals."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    home: Path
    results_persist_by_default: bool
    local_storage_path: Path
    results_default_serializer: str
    async_fetch_state_result: bool
    results_fsync: bool


def _from_environment() -> Settings:
    home = Path(os.environ.get("FERROFLOW_HOME", "~/.ferroflow")).expanduser()
    return Settings(
        home=home,
        results_persist_by_default=_env_bool("FERROFLOW_RESULTS_PERSIST_BY_DEFAULT", False),
        local_storage_path=Path(
            os.environ.get("FERROFLOW_LOCAL_STORAGE_PATH", str(home / "storage"))
        ).expanduser(),
        results_default_serializer=os.environ.get("FERROFLOW_RESULTS_DEFAULT_SERIALIZER", "pickle"),
        async_fetch_state_result=_env_bool("FERROFLOW_ASYNC_FETCH_STATE_RESULT", False),
        results_fsync=_env_bool("FERROFLOW_RESULTS_FSYNC", False),
    )


_overrides: list[Settings] = []


def get_current_settings() -> Settings:
    """The settings in force now: the innermost `temporary_settings`, else the environment."""
    return _overrides[-1] if _overrides else _from_environment()


@contextlib.contextmanager
def temporary_settings(**changes: object) -> Iterator[Settings]:
    """Override settings for the duration of a `with` block (tests, scripts)."""
    settings = replace(get_current_settings(), **changes)  # type: ignore[arg-type]
    _overrides.append(settings)
    try:
        yield settings
    finally:
        _overrides.remove(settings)
