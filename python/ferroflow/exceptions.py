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


class InvalidSettingError(FerroflowException, ValueError):
    """A setting's key or value (environment, profile file, CLI or temporary_settings) is invalid."""


class StorageNotFoundError(FerroflowException, ValueError):
    """A storage slug or saved name that no saved storage answers to."""


class StorageNotAvailableError(FerroflowException, NotImplementedError):
    """A storage type that ferroflow can name but cannot use yet (S3)."""


__all__ += ["InvalidSettingError", "StorageNotAvailableError", "StorageNotFoundError"]
