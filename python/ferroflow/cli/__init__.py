"""The `ferroflow` command line. Each command group lives in its own module and is attached here."""

from __future__ import annotations

import sys

import click

from ferroflow.cli.bench import bench
from ferroflow.cli.cache import cache
from ferroflow.cli.config import config
from ferroflow.cli.results import results
from ferroflow.cli.runs import runs
from ferroflow.exceptions import FerroflowException
from ferroflow.version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ferroflow")
def app() -> None:
    """ferroflow: persist, cache and inspect the results of Python flows and tasks."""


app.add_command(config)
app.add_command(runs)
app.add_command(cache)
app.add_command(results)
app.add_command(bench)


def main() -> None:
    try:
        app()
    except FerroflowException as error:
        # A user's mistake that no command caught itself, such as invalid settings in the
        # environment or the profile: its message says what to do, a traceback would not.
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)


__all__ = ["app", "main"]
