"""`ferroflow cache`: the task-cache entries in the run store."""

from __future__ import annotations

from datetime import datetime, timezone

import click
from rich.text import Text

from ferroflow.runstore import CacheEntry
from ferroflow.runstore.console import cli_store, console, echo_json, local_time, table

KEY_PREFIX_LENGTH = 12


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
      ferroflow cache clear --expired --yes   drop the expired entries
    """


@cache.command("ls")
@click.option("--task", "task_name", metavar="NAME", help="Only the entries of this task.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (full keys) instead of a table.")
def list_entries(task_name: str | None, as_json: bool) -> None:
    """List cache entries, newest first.

    \b
    Examples:
      ferroflow cache ls
      ferroflow cache ls --task load_prices
      ferroflow cache ls --json
    """
    with cli_store() as store:
        entries = store.list_cache_entries(task_name=task_name)
    if as_json:
        echo_json([entry.to_dict() for entry in entries])
        return
    if not entries:
        click.echo("The task cache is empty." if task_name is None else f"No cache entries for task {task_name!r}.")
        return
    now = datetime.now(timezone.utc)
    listing = table("Task cache", "Key", "Task", "Created", "Expires", "Result", wrap=("Task", "Expires", "Result"))
    for entry in entries:
        listing.add_row(entry.key[:KEY_PREFIX_LENGTH], entry.task_name, local_time(entry.created),
                        _expiry(entry, now), entry.result.describe())
    console().print(listing)


def _expiry(entry: CacheEntry, now: datetime) -> Text:
    if entry.expiration is None:
        return Text("never", style="dim")
    if entry.is_expired(now):
        return Text(f"{local_time(entry.expiration)} (expired)", style="yellow")
    return Text(local_time(entry.expiration))


@cache.command("clear")
@click.option("--key", metavar="KEY", help="Only the entry with this full cache key.")
@click.option("--task", "task_name", metavar="NAME", help="Only the entries of this task.")
@click.option("--expired", "expired_only", is_flag=True, help="Only the entries that have expired.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def clear_entries(key: str | None, task_name: str | None, expired_only: bool, yes: bool) -> None:
    """Delete cache entries: all of them, or those matching every filter given.

    Asks for confirmation with the number of entries first, unless --yes is given.

    \b
    Examples:
      ferroflow cache clear --expired --yes
      ferroflow cache clear --task load_prices
      ferroflow cache clear --key 9b1c0f...   (the full key, from `ferroflow cache ls --json`)
      ferroflow cache clear --yes             (everything)
    """
    now = datetime.now(timezone.utc)
    with cli_store() as store:
        matching = len(store.list_cache_entries(key=key, task_name=task_name, expired_only=expired_only, now=now))
        if matching == 0:
            click.echo("No cache entries match; nothing to delete.")
            return
        noun = "cache entry" if matching == 1 else "cache entries"
        if not yes:
            click.confirm(f"Delete {matching} {noun}?", abort=True)
        deleted = store.delete_cache_entries(key=key, task_name=task_name, expired_only=expired_only, now=now)
    click.echo(f"Deleted {deleted} {'cache entry' if deleted == 1 else 'cache entries'}.")


__all__ = ["cache"]
