"""`ferroflow config`: view and change the settings kept in the active profile."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click
from pydantic import SecretStr

from ferroflow.cli.console import is_text
from ferroflow.exceptions import InvalidSettingError
from ferroflow.settings import (
    SETTING_NAMES,
    Settings,
    active_profile_name,
    env_name,
    field_name,
    get_current_settings,
    profiles_path,
    read_profile,
    redact_url,
    setting_sources,
    validate_setting,
    write_profile,
)

T = TypeVar("T")


@click.group()
def config() -> None:
    """View and change ferroflow settings.

    Settings are read, lowest to highest precedence, from the defaults, the active profile in
    ${FERROFLOW_HOME}/profiles.toml, and FERROFLOW_* environment variables.
    """


@config.command("set")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
def set_(assignments: tuple[str, ...]) -> None:
    """Store settings in the active profile.

    KEY is a variable name or a field name; `ferroflow config view --show-defaults` lists them.

    \b
    Examples:
      ferroflow config set FERROFLOW_RESULTS_PERSIST_BY_DEFAULT=true
      ferroflow config set runstore_url=sqlite:////srv/pipelines/runs.db
    """
    updates: dict[str, str] = {}
    shown: dict[str, str] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise click.UsageError(f"Expected KEY=VALUE, got {assignment!r}.")
        if not is_text(assignment):
            raise click.UsageError(
                f"{assignment!r} holds bytes that are not UTF-8 text; a profile stores text only."
            )
        name, parsed = _checked(validate_setting, key, value)
        updates[name] = value
        # A signing key is a secret: it is not echoed back to the terminal.
        shown[name] = repr(str(parsed)) if isinstance(parsed, SecretStr) else repr(value)
    profile = _checked(read_profile)
    profile.update(updates)
    path = _checked(write_profile, profile)
    for name in updates:
        shown_value = redact_url(updates[name]) if name == env_name("runstore_url") else None
        click.echo(
            f"Set {name}={shown[name] if shown_value is None else repr(shown_value)} in profile "
            f"{active_profile_name()!r} ({path})."
        )
        if name in os.environ:
            click.echo(
                f"Note: {name} is also set in the environment, which takes precedence over the profile.",
                err=True,
            )
    _warn_about_unknown_serializer(updates)


@config.command()
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
def unset(keys: tuple[str, ...]) -> None:
    """Remove settings from the active profile.

    Their defaults (or FERROFLOW_* environment variables) apply again.
    """
    profile = _checked(read_profile)
    removed = []
    for key in keys:
        name = env_name(_checked(field_name, key))
        if name not in profile:
            raise click.ClickException(
                f"{name} is not set in profile {active_profile_name()!r} ({profiles_path()}); "
                "`ferroflow config view` shows where each value comes from."
            )
        del profile[name]
        removed.append(name)
    _checked(write_profile, profile)
    for name in removed:
        click.echo(f"Unset {name} in profile {active_profile_name()!r}.")


@config.command()
@click.option(
    "--show-defaults/--hide-defaults", default=False, help="Also list settings left at their default."
)
@click.option("--show-sources/--hide-sources", default=True, help="Say where each value comes from.")
def view(show_defaults: bool, show_sources: bool) -> None:
    """Show the settings in force and where each comes from.

    Each line ends with its source: env, profile, or default (with --show-defaults).
    """
    settings = _checked(get_current_settings)
    sources = _checked(setting_sources)
    click.echo(f"FERROFLOW_PROFILE={active_profile_name()!r} ({profiles_path()})")
    for field in SETTING_NAMES:
        source = sources[field]
        if source == "default" and not show_defaults:
            continue
        value = _value_in_force(settings, field)
        shown = str(value) if not isinstance(value, bool) else str(value).lower()
        line = f"{env_name(field)}={shown!r}"
        click.echo(f"{line} (from {source})" if show_sources else line)


def _value_in_force(settings: Settings, field: str) -> object:
    # An unset run store URL stands for the database in FERROFLOW_HOME: show which one.
    if field == "runstore_url":
        return redact_url(settings.runstore_url_in_force)
    return getattr(settings, field)


def _checked(action: Callable[..., T], *args: Any) -> T:
    """Run a settings call, turning an invalid key or value into a CLI error (exit code 1)."""
    try:
        return action(*args)
    except InvalidSettingError as exc:
        raise click.ClickException(str(exc)) from exc


def _warn_about_unknown_serializer(updates: dict[str, str]) -> None:
    type_name = updates.get(env_name("results_default_serializer"))
    if type_name is None:
        return
    from ferroflow.serializers import known_serializer_types

    if type_name not in known_serializer_types():
        click.echo(
            f"Warning: {type_name!r} is not a built-in serializer type "
            f"({', '.join(known_serializer_types())}); your code must register it "
            "(subclass ferroflow.serializers.Serializer) before results are written.",
            err=True,
        )
