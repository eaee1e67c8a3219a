"""Exceptions a ferroflow user can meet. Each subclasses the fitting stdlib exception, so
existing `except ValueError` / `except RuntimeError` handlers keep working."""

from ferroflow._core import CorruptResultError, UnsafeKeyError, UnsupportedFormatError


class FerroflowException(Exception):
    """Base of the exceptions ferroflow itself raises (the core's errors subclass ValueError/OSError)."""


class MissingContextError(FerroflowException, RuntimeError):
    """A run-context-only function was called outside a flow or task run."""


class MissingResult(FerroflowException, RuntimeError):
    """A result is not available: it was neither kept in memory nor persisted."""


class UnfinishedRun(FerroflowException, RuntimeError):
    """A result was requested from a run that has not finished."""


class PersistenceConfigurationError(FerroflowException, ValueError):
    """`persist_result=False` on a flow or task that uses a feature which needs persistence."""


class SerializationError(FerroflowException, ValueError):
    """A value could not be serialized or deserialized by the chosen serializer."""


__all__ = [
    "CorruptResultError",
    "FerroflowException",
    "MissingContextError",
    "MissingResult",
    "PersistenceConfigurationError",
    "SerializationError",
    "UnfinishedRun",
    "UnsafeKeyError",
    "UnsupportedFormatError",
]


class RunStoreError(FerroflowException, RuntimeError):
    """The run store (the database of flow runs, task runs, states and cache entries) failed."""


class RunStoreLockedError(RunStoreError, TimeoutError):
    """The run store's database file stayed locked by another process or thread for too long."""


class RunStoreSchemaError(RunStoreError):
    """The run store's database was created by a newer ferroflow than the one running."""


class UnknownRunError(RunStoreError, LookupError):
    """No flow or task run in the run store matches the given id or id prefix (or several do)."""


class CacheKeyWarning(UserWarning):
    """A task's inputs could not be hashed into a cache key; the task runs without caching."""


__all__ += [
    "CacheKeyWarning",
    "RunStoreError",
    "RunStoreLockedError",
    "RunStoreSchemaError",
    "UnknownRunError",
]
