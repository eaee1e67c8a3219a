"""Exceptions and warnings a ferroflow user can meet.

Every exception ferroflow defines derives from `FerroflowException`, so `except
FerroflowException` catches them all, the Rust core's included (`ferroflow._core` raises the
classes defined here). Each also subclasses the fitting stdlib exception, named in brackets,
so existing `except ValueError` / `except RuntimeError` handlers keep working. The warnings
derive from `FerroflowWarning`, a `UserWarning`, so they are shown by default.

    FerroflowException [Exception]
        CorruptResultError [ValueError]
            UntrustedResultError
        UnsupportedFormatError [ValueError]
        UnsafeKeyError [ValueError]
        ObjectStoreError [OSError]
            BucketNotFoundError
            StoragePermissionError [PermissionError]
            StorageUnavailableError [ConnectionError]
        MissingContextError [RuntimeError]
        MissingResult [RuntimeError]
        UnfinishedRun [RuntimeError]
        PersistenceConfigurationError [ValueError]
        SerializationError [ValueError]
        NestedTaskError [RuntimeError]
        UpstreamTaskError [RuntimeError]
        FailedRun [RuntimeError]
        CrashedRun [RuntimeError]
        CancelledRun [RuntimeError]
        RunTimeoutError [TimeoutError]
            TaskRunTimeoutError
            FlowRunTimeoutError
        MappingLengthMismatch [ValueError]
        MappingMissingIterable [ValueError]
        InvalidSettingError [ValueError]
        StorageNotFoundError [ValueError]
        StorageNotAvailableError [NotImplementedError]
        RunStoreError [RuntimeError]
            RunStoreLockedError [TimeoutError]
            RunStoreUnavailableError [ConnectionError]
            RunStoreSchemaError
            UnknownRunError [LookupError]
        CacheKeyFunctionError [ValueError]
    FerroflowWarning [UserWarning]
        AsyncFetchStateResultWarning
        CacheKeyWarning
        CachedResultUnavailableWarning

Beyond these, ferroflow raises what Python's own functions raise for the same faults: the
`OSError` subclass of a failed file operation (`FileNotFoundError`, ...), `ValueError` or
`TypeError` for an invalid argument, `MemoryError` when an allocation fails.

This module imports nothing from ferroflow: it is the bottom of the package.
"""


class FerroflowException(Exception):
    """Base of every exception ferroflow defines, those of its Rust core included."""


class FerroflowWarning(UserWarning):
    """Base of the warnings ferroflow issues (a UserWarning, so that they are shown by default)."""


# --- Stored results: raised by the Rust core (`ferroflow._core`) -----------------------------


class CorruptResultError(FerroflowException, ValueError):
    """Stored bytes failed verification: the result is corrupted or truncated."""


class UntrustedResultError(CorruptResultError):
    """A result was refused before it was loaded because its signature is missing, made by a key
    that is not trusted, or does not match its content (FERROFLOW_RESULTS_REQUIRE_SIGNATURE).
    Like a corrupt result, a cached one is computed again."""


class UnsupportedFormatError(FerroflowException, ValueError):
    """The blob was written in a format version this ferroflow cannot read."""


class UnsafeKeyError(FerroflowException, ValueError):
    """A storage key would escape its base folder."""


class ObjectStoreError(FerroflowException, OSError):
    """An object store (S3, GCS, Azure) refused or failed a request, after its retries."""


class BucketNotFoundError(ObjectStoreError):
    """The bucket (or container) of an object store does not exist; the message names it."""


class StoragePermissionError(ObjectStoreError, PermissionError):
    """An object store refused the credentials, or denied the operation to them."""


class StorageUnavailableError(ObjectStoreError, ConnectionError):
    """An object store's endpoint could not be reached, or did not answer in time."""


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
    "BucketNotFoundError",
    "CorruptResultError",
    "FerroflowException",
    "FerroflowWarning",
    "MissingContextError",
    "MissingResult",
    "ObjectStoreError",
    "PersistenceConfigurationError",
    "SerializationError",
    "StoragePermissionError",
    "StorageUnavailableError",
    "UnfinishedRun",
    "UnsafeKeyError",
    "UnsupportedFormatError",
    "UntrustedResultError",
]


# --- Run engine: flows, tasks, states, futures -------------------------------------------------


class NestedTaskError(FerroflowException, RuntimeError):
    """A task was called (or submitted, or mapped) from inside another task's run."""


class UpstreamTaskError(FerroflowException, RuntimeError):
    """A task did not run because a future or state it was given had failed.

    The upstream exception is attached as `__cause__`.
    """


class FailedRun(FerroflowException, RuntimeError):
    """A failed run's result was requested but the failure carries no exception of its own
    (for example a flow that failed because some of its task runs failed)."""


class CrashedRun(FerroflowException, RuntimeError):
    """A run crashed (it was interrupted from outside its own code) and carries no exception."""


class CancelledRun(FerroflowException, RuntimeError):
    """A cancelled run's result was requested."""


class RunTimeoutError(FerroflowException, TimeoutError):
    """A run exceeded its `timeout_seconds`; its final state is named "TimedOut"."""


class TaskRunTimeoutError(RunTimeoutError):
    """A task run exceeded the task's `timeout_seconds`."""


class FlowRunTimeoutError(RunTimeoutError):
    """A flow run exceeded the flow's `timeout_seconds`."""


class MappingLengthMismatch(FerroflowException, ValueError):
    """`Task.map` was given iterables of different lengths."""


class MappingMissingIterable(FerroflowException, ValueError):
    """`Task.map` was given no iterable argument to map over."""


class ParameterTypeError(FerroflowException, TypeError):
    """A flow was called with parameters that do not match its function's type hints (and
    could not be converted to them); the flow run fails before its function runs. Pass values
    of the annotated types, or define the flow with `validate_parameters=False`."""


class AsyncFetchStateResultWarning(FerroflowWarning):
    """`State.result()` was called in async code without `fetch=`: it returned the raw result
    object instead of the value. Pass `fetch=True` and await the call, or set
    FERROFLOW_ASYNC_FETCH_STATE_RESULT=true. (A UserWarning so that it is shown by default.)"""


# Appended, not merged into the list above, so that additions from each layer stay separate.
__all__ += [
    "AsyncFetchStateResultWarning",
    "CancelledRun",
    "CrashedRun",
    "FailedRun",
    "FlowRunTimeoutError",
    "MappingLengthMismatch",
    "MappingMissingIterable",
    "NestedTaskError",
    "ParameterTypeError",
    "RunTimeoutError",
    "TaskRunTimeoutError",
    "UpstreamTaskError",
]


class InvalidSettingError(FerroflowException, ValueError):
    """A setting's key or value (environment, profile file, CLI or temporary_settings) is invalid."""


class StorageNotFoundError(FerroflowException, ValueError):
    """A storage slug or saved name that no saved storage answers to."""


class StorageUnreachableError(FerroflowException, ValueError):
    """A task runner's workers cannot read the result storage (workers on other machines and a
    folder of this one)."""


class StorageNotAvailableError(FerroflowException, NotImplementedError):
    """A storage type that ferroflow can name but cannot use yet (S3)."""


__all__ += ["InvalidSettingError", "StorageNotAvailableError", "StorageNotFoundError"]


class RunStoreError(FerroflowException, RuntimeError):
    """The run store (the database of flow runs, task runs, states and cache entries) failed."""


class RunStoreLockedError(RunStoreError, TimeoutError):
    """The run store's database file stayed locked by another process or thread for too long."""


class RunStoreUnavailableError(RunStoreError, ConnectionError):
    """The run store's database server cannot be reached (or went away); what was recorded meanwhile
    is held by the writer, within a bound, until it comes back."""


class RunStoreSchemaError(RunStoreError):
    """The run store's database was created by a newer ferroflow than the one running."""


class UnknownRunError(RunStoreError, LookupError):
    """No flow or task run in the run store matches the given id or id prefix (or several do)."""

    def __init__(self, message: str, candidates: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.candidates = candidates
        """The ids that start with the prefix given, when several do (some of them); empty when none does."""


class CacheKeyWarning(FerroflowWarning):
    """A task's inputs could not be hashed into a cache key; the task runs without caching."""


__all__ += [
    "CacheKeyWarning",
    "RunStoreError",
    "RunStoreLockedError",
    "RunStoreSchemaError",
    "RunStoreUnavailableError",
    "UnknownRunError",
]


class CacheKeyFunctionError(FerroflowException, ValueError):
    """A task's `cache_key_fn` raised, or returned something other than a string or None. The
    task run fails with this error (the task does not run)."""


class CachedResultUnavailableWarning(FerroflowWarning):
    """A cache entry's result file, or the result an earlier attempt of a retried flow run got,
    is missing or cannot be read: the task (or subflow) runs again; a cache entry is replaced
    by its new result."""


__all__ += ["CacheKeyFunctionError", "CachedResultUnavailableWarning"]
