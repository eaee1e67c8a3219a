"""Showing the run store in a terminal: how the `ferroflow runs` and `ferroflow cache` commands open
the store, write times and durations, and print JSON."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from ferroflow.exceptions import RunStoreError
from ferroflow.runstore import RunStore, open_store

ID_PREFIX_LENGTH = 8
# Result keys are clock-ordered like run ids, but a flow's results are often written within the
# same few milliseconds: a few more characters tell them apart.
KEY_PREFIX_LENGTH = 12

_STATE_STYLES = {
    "COMPLETED": "green",
    "FAILED": "red",
    "CRASHED": "bold red",
    "CANCELLED": "yellow",
    "RUNNING": "cyan",
    "PENDING": "dim",
    "SCHEDULED": "blue",
    "PAUSED": "magenta",
}


@contextlib.contextmanager
def cli_store() -> Iterator[RunStore]:
    """The configured run store, with its errors (locked, newer schema, unknown run) shown as
    command-line errors instead of tracebacks."""
    try:
        store = open_store()
    except (RunStoreError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    try:
        yield store
    except RunStoreError as error:
        raise click.ClickException(str(error)) from error
    finally:
        store.close()


def is_text(value: str) -> bool:
    """Whether `value` is valid Unicode: an argument holding bytes that are not UTF-8 reaches
    Python as lone surrogates, which no id, key or name recorded in the store can hold."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class StoreText(click.ParamType):
    """An id, key or name to look up in the run store: any valid text."""

    name = "TEXT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not is_text(value):
            self.fail(
                f"{value!r} holds bytes that are not UTF-8 text; no id, key or name recorded can.", param, ctx
            )
        return value


def console() -> Console:
    # Created per command, so output goes to the stdout in force (click's test runner swaps it).
    return Console(highlight=False, soft_wrap=False)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def short_id(run_id: str) -> str:
    return run_id[:ID_PREFIX_LENGTH]


def short_key(key: str) -> str:
    return key[:KEY_PREFIX_LENGTH]


def local_time(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def state_text(state_type: str | None, state_name: str | None) -> Text:
    if state_type is None:
        return Text("-", style="dim")
    return Text(state_name or state_type.title(), style=_STATE_STYLES.get(state_type, ""))
