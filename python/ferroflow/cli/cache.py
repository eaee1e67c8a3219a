"""`ferroflow cache`: the task-cache entries in the run store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePath
from typing import Any

import click
from rich.text import Text

from ferroflow.cli.console import StoreText, cli_store, console, echo_json
from ferroflow.cli.lookup import location, result_path
from ferroflow.cli.tables import Cell, Column, fits, fitted_table
from ferroflow.filesystems import saved_storages
from ferroflow.results.cache_records import RecordStorage, delete_record, list_records, record_storage_for
from ferroflow.results.references import storage_from_reference
from ferroflow.runstore import CacheEntry, ResultRef

# As `ferroflow runs` shows run ids; longer where two keys share their first characters.
KEY_PREFIX_LENGTH = 8
AMBIGUOUS_CANDIDATES_SHOWN = 5


@click.group("cache")
def cache() -> None:
    """Look at and clear the task cache: results reused for tasks with a cache key.

    Entries are kept in the run store named by the runstore_url setting
    (FERROFLOW_RUNSTORE_URL, or `ferroflow config set runstore_url=...`), by default
    $FERROFLOW_HOME/ferroflow.db. Clearing an entry makes its task run again the next
    time; the result files themselves stay in result storage.

    \b
    Examples:
      ferroflow cache ls                      every entry, newest first
      ferroflow cache clear --key 9b1c0f7e    drop one entry (a key prefix from `cache ls`)
      ferroflow cache clear --expired --yes   drop the expired entries
    """


_STORAGE_HELP = (
    "Read the cache records kept in this storage (a saved storage's slug or a folder) "
    "instead of the run store's index: what every process sharing the storage sees."
)


def _records_in(spec: str) -> RecordStorage:
    """The record storage `--storage` names: a saved storage's slug or a folder."""
    if spec not in saved_storages() and not Path(spec).expanduser().is_dir():
        saved = ", ".join(saved_storages()) or "none saved yet"
        raise click.ClickException(
            f"--storage {spec!r} is neither a saved storage nor a folder. Give a folder, or the "
            f"slug of a saved storage (saved: {saved})."
        )
    try:
        return record_storage_for(spec)
    except TypeError as error:  # a storage kind that cannot hold records
        raise click.ClickException(f"--storage {spec!r}: {error}") from None


def _entries(storage_spec: str | None) -> list[Any]:
    """The cache entries: the run store's index, or the records kept in a storage."""
    if storage_spec is not None:
        records = sorted(
            list_records(_records_in(storage_spec)), key=lambda record: record.created, reverse=True
        )
        return records
    with cli_store() as store:
        return list(store.list_cache_entries())


@cache.command("ls")
@click.option("--task", "task_name", type=StoreText(), metavar="NAME", help="Only the entries of this task.")
@click.option("--storage", "storage_spec", metavar="SLUG_OR_PATH", help=_STORAGE_HELP)
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (full keys, exact times) instead of a table."
)
def list_entries(task_name: str | None, storage_spec: str | None, as_json: bool) -> None:
    """List cache entries, newest first.

    Each key is shown by its shortest beginning that no other key shares (at least
    8 characters), which `cache clear --key` accepts. Times are relative to now. On a
    terminal too narrow for the whole table, the Created column is left out and result
    paths are shortened from the middle (`--json` has everything).

    \b
    Examples:
      ferroflow cache ls
      ferroflow cache ls --task load_prices
      ferroflow cache ls --json
    """
    everything = _entries(storage_spec)
    entries = [entry for entry in everything if task_name is None or entry.task_name == task_name]
    if as_json:
        echo_json([entry.to_dict() for entry in entries])
        return
    if not entries:
        click.echo(
            "The task cache is empty." if task_name is None else f"No cache entries for task {task_name!r}."
        )
        return
    # Prefixes unambiguous among all keys, not only the listed ones: `clear --key` looks at all.
    prefixes = unambiguous_prefixes([entry.key for entry in everything])
    now = datetime.now(UTC)
    columns = [
        Column("Key"),
        Column("Task", "name"),
        Column("Created"),
        Column("Expires"),
        Column("Result", "path"),
    ]
    rows: list[list[Cell]] = [
        [
            prefixes[entry.key],
            entry.task_name,
            f"{compact_duration(now - entry.created)} ago",
            _expiry(entry, now),
            _result_cell(entry.result),
        ]
        for entry in entries
    ]
    out = console()
    if not fits([column.header for column in columns], rows, out.width):
        # The age of an entry matters least (`--json` has it): its room goes to names and paths.
        del columns[2]
        for row in rows:
            del row[2]
    out.print(fitted_table("Task cache", columns, rows, out.width))


def _result_cell(reference: ResultRef) -> Cell:
    """The result's file (shortened from the middle on a narrow terminal), else its location."""
    path = result_path(reference)
    return PurePath(path) if path is not None else location(reference)


def unambiguous_prefixes(keys: list[str], minimum: int = KEY_PREFIX_LENGTH) -> dict[str, str]:
    """Each key's shortest beginning (at least `minimum` characters) that no other key starts with.

    A key that is the beginning of another key is shown whole; `clear --key` prefers an exact match.
    """
    ordered = sorted(set(keys))
    # In sorted order, the keys sharing the longest beginning with a key are its neighbours.
    shared = [0] * len(ordered)
    for index in range(1, len(ordered)):
        common = _common_prefix_length(ordered[index - 1], ordered[index])
        shared[index - 1] = max(shared[index - 1], common)
        shared[index] = common
    return {key: key[: max(minimum, common + 1)] for key, common in zip(ordered, shared)}


def _common_prefix_length(first: str, second: str) -> int:
    length = 0
    for a, b in zip(first, second):
        if a != b:
            break
        length += 1
    return length


def compact_duration(elapsed: timedelta) -> str:
    """`90s`, `95m`, `30h`, `2d5h`, `12d`: short enough for an 80-column table, yet never off
    by more than about 2% (`--json` has the exact times)."""
    seconds = max(0, int(elapsed.total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 120:
        return f"{minutes}m"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h"
    return f"{days}d"


def _expiry(entry: CacheEntry, now: datetime) -> Text:
    if entry.expiration is None:
        return Text("never", style="dim")
    if entry.is_expired(now):
        return Text("expired", style="yellow")
    return Text(f"in {compact_duration(entry.expiration - now)}")


@cache.command("clear")
@click.option(
    "--key",
    type=StoreText(),
    metavar="KEY",
    help="Only the entry with this key, or with the only key starting with it (as `cache ls` shows it).",
)
@click.option("--task", "task_name", type=StoreText(), metavar="NAME", help="Only the entries of this task.")
@click.option("--expired", "expired_only", is_flag=True, help="Only the entries that have expired.")
@click.option("--storage", "storage_spec", metavar="SLUG_OR_PATH", help=_STORAGE_HELP)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def clear_entries(
    key: str | None, task_name: str | None, expired_only: bool, storage_spec: str | None, yes: bool
) -> None:
    """Delete cache entries: all of them, or those matching every filter given.

    Asks for confirmation with the number of entries first, unless --yes is given.

    \b
    Examples:
      ferroflow cache clear --expired --yes
      ferroflow cache clear --task load_prices
      ferroflow cache clear --key 9b1c0f7e    (a key, or a prefix only one key has)
      ferroflow cache clear --yes             (everything)
    """
    if key is not None and not key.strip():
        raise click.ClickException(
            "--key is empty; give a cache key, or its beginning as `ferroflow cache ls` shows it."
        )
    now = datetime.now(UTC)
    if storage_spec is not None:
        _clear_records(storage_spec, key, task_name, expired_only, yes, now)
        return
    with cli_store() as store:
        if key is not None:
            key = _full_key([entry.key for entry in store.list_cache_entries()], key)
        matching = len(
            store.list_cache_entries(key=key, task_name=task_name, expired_only=expired_only, now=now)
        )
        if matching == 0:
            click.echo("No cache entries match; nothing to delete.")
            return
        noun = "cache entry" if matching == 1 else "cache entries"
        if not yes:
            click.confirm(f"Delete {matching} {noun}?", abort=True)
        entries = store.list_cache_entries(key=key, task_name=task_name, expired_only=expired_only, now=now)
        deleted = store.delete_cache_entries(key=key, task_name=task_name, expired_only=expired_only, now=now)
    _delete_records(entries)
    click.echo(f"Deleted {deleted} {'cache entry' if deleted == 1 else 'cache entries'}.")


def _delete_records(entries: list[CacheEntry]) -> None:
    """The cache records (kept with the results, the cache's truth) of deleted entries: without
    them the entries would still hit."""
    for entry in entries:
        records = records_of_reference(entry.result)
        if records is not None:
            delete_record(records, entry.key)


def records_of_reference(reference: ResultRef) -> RecordStorage | None:
    """The record storage beside a persisted result's storage (None for a storage that cannot
    hold records). A literal result's record is looked for in the default storage."""
    try:
        if reference.kind != "persisted" or reference.storage is None:
            return record_storage_for(None)
        return record_storage_for(storage_from_reference(reference.storage))
    except (TypeError, ValueError):
        return None


def _clear_records(
    storage_spec: str, key: str | None, task_name: str | None, expired_only: bool, yes: bool, now: datetime
) -> None:
    records = _records_in(storage_spec)
    everything = list(list_records(records))
    if key is not None:
        key = _full_key([record.key for record in everything], key)
    matching = [
        record
        for record in everything
        if (key is None or record.key == key)
        and (task_name is None or record.task_name == task_name)
        and (not expired_only or record.is_expired(now))
    ]
    if not matching:
        click.echo("No cache entries match; nothing to delete.")
        return
    noun = "cache entry" if len(matching) == 1 else "cache entries"
    if not yes:
        click.confirm(f"Delete {len(matching)} {noun} from {records.describe()}?", abort=True)
    deleted = sum(delete_record(records, record.key) for record in matching)
    click.echo(f"Deleted {deleted} {'cache entry' if deleted == 1 else 'cache entries'}.")


def _full_key(keys: list[str], given: str) -> str:
    """The key `given` names: itself if it is a key, else the only key starting with it.

    A prefix that no key starts with is returned as it is (nothing matches it); one that several
    keys start with is refused, listing some of them.
    """
    if given in keys:
        return given
    candidates = sorted(key for key in keys if key.startswith(given))
    if len(candidates) <= 1:
        return candidates[0] if candidates else given
    shown = ", ".join(candidates[:AMBIGUOUS_CANDIDATES_SHOWN])
    more = ", ..." if len(candidates) > AMBIGUOUS_CANDIDATES_SHOWN else ""
    raise click.ClickException(
        f"{given!r} is the start of {len(candidates)} cache keys ({shown}{more}); give more of the key, "
        "as `ferroflow cache ls` shows it. Nothing was deleted."
    )


__all__ = ["cache"]
