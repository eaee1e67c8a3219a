"""The rows of the run store's tables: how records' values become columns and columns records.

Shared by every SQL backend: a time is an integer of microseconds since the Unix epoch (UTC),
exact, compact and ordered as the instants it stands for; a result reference is five columns.
Checks that would otherwise fail inside the writer (where one bad value would sink a whole batch)
run here, on the caller's thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from ferroflow.runstore.parameters import summarize_parameters
from ferroflow.runstore.records import CacheEntry, FlowRunRecord, ResultRef, TaskRunRecord

R = TypeVar("R", FlowRunRecord, TaskRunRecord)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is local time, as `datetime.timestamp()` has it."""
    if moment.tzinfo is None:
        moment = moment.astimezone()
    # From the difference's fields: dividing by a timedelta costs three times as much, and the
    # engine converts two times per task run.
    since = moment - _EPOCH
    return (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds


def optional_datetime(value: int | None) -> datetime | None:
    return None if value is None else at(value)


def at(value: int) -> datetime:
    """The time of a column that is never NULL."""
    return _EPOCH + timedelta(microseconds=value)


def now_micros() -> int:
    return time.time_ns() // 1000


def refuse_missing(**values: Any) -> None:
    """Refuse a missing id or name on the caller's thread: in the writer it would sink its whole batch."""
    for name, value in values.items():
        if not value:
            raise ValueError(
                f"{name} is required (got {value!r}); the run store cannot record a run or state without it."
            )


def moment(value: datetime | None, name: str) -> int:
    """A recorded time as stored (see `micros`): `value`, or now if None. A bad value is refused
    here, on the caller's thread."""
    if value is None:
        return now_micros()
    check_moment(name, value)
    return micros(value)


def check_moment(name: str, value: Any) -> None:
    """Refuse a bad time on the caller's thread: in the writer it would sink its whole batch."""
    if value is not None and not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime.datetime or None, not {type(value).__name__}: {value!r}.")


def encodable_text(text: str) -> str:
    """`text` as a database can store it: characters UTF-8 cannot encode (lone surrogates, as
    names decoded with `surrogateescape` hold) written as backslash escapes."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


_NO_RESULT_COLUMNS = (None, None, None, None, None)


def result_columns(result: ResultRef | None) -> tuple[str | None, ...]:
    if result is None:
        return _NO_RESULT_COLUMNS
    return (result.kind, result.value_json, result.storage, result.key, result.serializer)


def result_from_columns(
    kind: str | None, value: str | None, storage: str | None, key: str | None, serializer: str | None
) -> ResultRef | None:
    if kind is None:
        return None
    return ResultRef(kind=kind, value_json=value, storage=storage, key=key, serializer=serializer)  # type: ignore[arg-type]


_state_type_texts: dict[Any, str] = {}


def state_type_text(state_type: Any) -> str:
    """A state type's text: a string as it is, an enum's `.value` (kept per member: reading an
    enum's value goes through a descriptor, twice per task run on the engine's thread)."""
    if type(state_type) is str:
        return state_type
    try:
        return _state_type_texts[state_type]
    except KeyError:
        text = _state_type_texts[state_type] = str(getattr(state_type, "value", state_type))
        return text
    except TypeError:  # unhashable: nothing to keep it by
        return str(getattr(state_type, "value", state_type))


# ----------------------------------------------------------------------------------------------
# Rows the writer writes

# A queued run row: (id, name, <name of flow or task>, ..., created, parameters); the parameters
# (last) are summarized on the writer's thread: on the caller's it would cost more than queueing.
_CREATED = -2


def run_rows(queued: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows of queued runs, one per run id, with their parameters summarized.

    A run recorded twice in one batch (renamed: its creation is recorded again) gives one row, the
    last one with the first one's creation time, as the upsert keeps it for a run already stored:
    one INSERT ... ON CONFLICT statement must not touch a row twice (PostgreSQL refuses it).
    """
    by_id: dict[str, tuple[Any, ...]] = {}
    for row in queued:
        earlier = by_id.get(row[0])
        if earlier is not None:
            row = (*row[:_CREATED], earlier[_CREATED], row[-1])
        by_id[row[0]] = row
    return [(*row[:-1], summarize_parameters(row[-1])) for row in by_id.values()]


def cache_entry_rows(entries: Iterable[CacheEntry]) -> list[tuple[Any, ...]]:
    """The rows of queued cache entries, the last one per key (see `run_rows` for why one)."""
    by_key = {entry.key: entry for entry in entries}
    return [
        (
            entry.key,
            entry.task_name,
            micros(entry.created),
            None if entry.expiration is None else micros(entry.expiration),
            *result_columns(entry.result),
        )
        for entry in by_key.values()
    ]


# ----------------------------------------------------------------------------------------------
# Records read back

PROGRESS_FIELDS = ("run_count", "start_time", "end_time", "state_type", "state_name")


def run_from_row(record_type: type[R], fields: tuple[str, ...], row: tuple[Any, ...]) -> R:
    values = dict(zip(fields + PROGRESS_FIELDS, row, strict=True))
    for name in ("created", "start_time", "end_time"):
        values[name] = optional_datetime(values[name])
    values["run_count"] = int(values["run_count"])
    return record_type(**values)


def cache_entry_from_row(row: tuple[Any, ...]) -> CacheEntry:
    key, task_name, created, expiration, *result = row
    return CacheEntry(
        key=key,
        task_name=task_name,
        result=result_from_columns(*result),  # type: ignore[arg-type]
        created=at(created),
        expiration=optional_datetime(expiration),
    )
