"""`ferroflow results`: look inside result files, and remove the ones nothing refers to."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from ferroflow.cli.console import cli_store, console, echo_json
from ferroflow.cli.lookup import find_result, result_path
from ferroflow.filesystems import S3, LocalFileSystem, RemoteFileSystem, resolve_storage, saved_storages
from ferroflow.results.blobs import (
    has_blob_signature,
    is_json_document,
    read_blob_header,
    read_result_document,
)
from ferroflow.results.references import storage_from_reference
from ferroflow.results.retention import (
    PrunePlan,
    live_cached_keys,
    plan_prune,
    plan_prune_of_results,
    remove_files,
    remove_objects,
    stored_files,
    stored_objects,
)
from ferroflow.settings import get_current_settings

RemoteStorage = S3 | RemoteFileSystem


@click.group("results")
def results() -> None:
    """Inspect persisted result files and prune the ones no run or cache entry refers to.

    \b
    Examples:
      ferroflow results inspect ~/.ferroflow/storage/3f2a9c1e0b7d4e5f8a6b1c2d3e4f5a6b
      ferroflow results prune --older-than 7d --dry-run
    """


# --- inspect ---------------------------------------------------------------------------------------


@results.command("inspect")
@click.argument("target", metavar="LOCATION")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect_result(target: str, as_json: bool) -> None:
    """Show what a result holds, without loading the value.

    LOCATION is a result file's path, a result's key (or enough of its beginning), or the id of
    a flow or task run, whose latest result is shown: what `ferroflow runs show` prints.

    For a ferroflow result file: serializer, codec and level, raw and stored sizes, checksum
    algorithm, format version, the ferroflow version that wrote it and when. For a JSON result
    document (a ferroflow export, or a file written by Prefect 2): its serializer and version.

    \b
    Examples:
      ferroflow results inspect ~/.ferroflow/storage/3f2a9c1e0b7d4e5f8a6b1c2d3e4f5a6b
      ferroflow results inspect 3f2a9c1e0b7d          (a key, or its beginning)
      ferroflow results inspect 5d6e7f80              (a flow or task run id)
      ferroflow results inspect result.json --json
      ferroflow results inspect s3://my-bucket/results/3f2a9c1e0b7d4e5f8a6b1c2d3e4f5a6b

    An object store URL (s3://, gs://, az://) is read with the credentials and endpoint of the
    environment (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...); only the header is fetched.
    """
    if _is_object_url(target):
        details = _describe_object(target)
    else:
        details = _describe_target(target)
    if as_json:
        echo_json(details)
        return
    listing = Table.grid(padding=(0, 2))
    listing.add_column(no_wrap=True)
    listing.add_column(overflow="fold")  # values (paths, ids) whole, folded, never cut with an ellipsis
    for name, value in details.items():
        shown = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        listing.add_row(Text(name.replace("_", " "), style="bold"), "-" if value is None else shown)
    console().print(listing)


def _describe_target(target: str) -> dict[str, Any]:
    """What `target` names, described: a file, else a recorded result by key or run id."""
    if target and os.path.lexists(target):
        return _describe_file(Path(target))
    with cli_store() as store:
        found = find_result(store, target)
        if found is None:
            raise click.ClickException(
                f"{target!r} is neither a file, nor the key of a recorded result, nor a flow or task run "
                f"id in the run store {store.url}. Give a path, or a key or id as `ferroflow runs show` "
                "prints them."
            )
    reference = found.reference
    if reference.kind == "literal":
        return {
            "found": found.source,
            "kind": "literal (kept in the run store, not in a file)",
            "value": reference.value,
        }
    path = result_path(reference)
    if path is None:
        raise click.ClickException(
            f"{found.source} is in storage {reference.storage}, which is not a local folder this command can "
            "open; `results inspect` reads local result files."
        )
    if not os.path.lexists(path):
        raise click.ClickException(
            f"The file of {found.source}, {path}, does not exist (removed, or written on another machine)."
        )
    return {"found": found.source, **_describe_file(path)}


def _describe_file(path: Path) -> dict[str, Any]:
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise click.ClickException(f"{path} cannot be read: {error.strerror or error}.") from error
    if stat.S_ISDIR(mode):
        raise click.ClickException(
            f"{path} is a folder, not a result file; give one of the files in it (`ls {path}`)."
        )
    if not stat.S_ISREG(mode):
        raise click.ClickException(
            f"{path} is not a regular file (a FIFO, socket or device), so not a ferroflow result file; "
            "it was not opened."
        )
    not_a_result = (
        f"{path} is not a ferroflow result file. `results inspect` reads the files of a result storage "
        "folder and JSON result documents (ferroflow's or Prefect 2's)."
    )
    try:
        if path.stat().st_size == 0:
            raise click.ClickException(f"{path} is empty: it is not a ferroflow result file.")
        if is_json_document(path):
            return _describe_json_document(path, not_a_result)
        if not has_blob_signature(path):
            raise click.ClickException(not_a_result)
        fields = read_blob_header(path)
    except OSError as error:
        raise click.ClickException(f"{path} cannot be read: {error.strerror or error}.") from error
    except ValueError as error:
        raise click.ClickException(
            f"{path} is a ferroflow result file, but a damaged one ({error})."
        ) from error
    return _describe_header(str(path), fields, file_size=path.stat().st_size)


def _is_object_url(text: str) -> bool:
    return text.partition("://")[0] in ("s3", "gs", "gcs", "az", "abfs", "abfss", "memory")


def _describe_object(url: str) -> dict[str, Any]:
    folder, _, key = url.rstrip("/").rpartition("/")
    if not key or folder.endswith(":/"):
        raise click.ClickException(f"{url} names no object: give its whole URL, e.g. s3://bucket/key.")
    storage = RemoteFileSystem(basepath=folder)
    info = storage.store.head(key)
    try:
        fields = storage.read_header(key).to_dict()
    except ValueError as error:
        raise click.ClickException(f"{url} is not a ferroflow result object ({error}).") from error
    return _describe_header(url, fields, file_size=info.size)


def _describe_header(where: str, fields: dict[str, Any], *, file_size: int) -> dict[str, Any]:
    """What `results inspect` shows of a framed result's header, read from a file or an object."""
    serializer = json.loads(fields["serializer"])
    return {
        "path": where,
        "format": "ferroflow framed result",
        "format_version": fields["format_version"],
        "serializer": serializer.get("type"),
        "serializer_description": serializer,
        "codec": fields["codec"],
        "level": fields["level"],
        "raw_size": fields["raw_length"],
        "stored_size": fields["stored_length"],
        "file_size": file_size,
        "segments": len(fields["segment_raw_lengths"]),
        "checksum_algorithm": fields["checksum_algorithm"],
        "ferroflow_version": fields["ferroflow_version"],
        "created": fields["created_at"].isoformat(),
    }


def _describe_json_document(path: Path, not_a_result: str) -> dict[str, Any]:
    try:
        document = read_result_document(path)
    except ValueError as error:
        raise click.ClickException(
            f"{not_a_result} It opens like JSON, but is not a result document ({error})."
        ) from error
    serializer, data = document["serializer"], document["data"]
    if not isinstance(data, str):
        raise click.ClickException(f"{not_a_result} Its 'data' field is not a string.")
    written_by_prefect = "prefect_version" in document
    return {
        "path": str(path),
        "format": "Prefect 2 JSON result" if written_by_prefect else "ferroflow JSON result document",
        "serializer": serializer.get("type") if isinstance(serializer, dict) else serializer,
        "serializer_description": serializer,
        "data_size": len(data),
        "file_size": path.stat().st_size,
        "prefect_version" if written_by_prefect else "ferroflow_version": document.get(
            "prefect_version" if written_by_prefect else "ferroflow_version"
        ),
    }


# --- prune -----------------------------------------------------------------------------------------

_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_MAX_AGE_DAYS = (datetime.now(UTC).date() - datetime.min.date()).days
_AGE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_age(text: str) -> timedelta:
    """`7d`, `12h`, `30m`, `45s`, `2w` (a number and one unit) as a timedelta."""
    match = _AGE_PATTERN.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not an age; write a number and a unit: s, m, h, d or w (e.g. 7d, 12h, 30m)."
        )
    number, unit = match.groups()
    try:
        age = timedelta(**{_AGE_UNITS[unit]: float(number)})
        datetime.now(UTC) - age  # noqa: B018 - an age reaching before the year 1 has no date
    except OverflowError:
        raise ValueError(
            f"{text!r} reaches back before the year 1; give an age of at most {_MAX_AGE_DAYS:,} days "
            "(older files have no other date to compare with)."
        ) from None
    return age


class _Parsed(click.ParamType):
    """An option value read by a parser that raises ValueError with the message to show."""

    def __init__(self, name: str, parse: Callable[[str], Any], parsed_type: type) -> None:
        self.name = name
        self._parse = parse
        self._parsed_type = parsed_type

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, self._parsed_type):  # a default given already parsed
            return value
        try:
            return self._parse(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*$")
_SIZE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str) -> int:
    match = _SIZE_PATTERN.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a size; write a number of bytes, or one with a unit: 500M, 2G, 10k."
        )
    number, unit = match.groups()
    return int(float(number) * _SIZE_UNITS[unit.lower()])


# `30m`, `12h`, `7d`, `2w`, `45s`, `1.5h`: a number and one unit.
AGE = _Parsed("AGE", parse_age, timedelta)
# `500M`, `2G`, `10k`, `1048576`: bytes, with an optional binary unit (k, M, G, T).
SIZE = _Parsed("SIZE", parse_size, int)


@results.command("prune")
@click.option(
    "--older-than",
    "age",
    type=AGE,
    help="Remove result files last written longer ago than this: 7d, 12h, 30m, 2w.",
)
@click.option(
    "--max-bytes",
    type=SIZE,
    help="Then remove the least recently used results until the folder holds at most this: 500M, 2G.",
)
@click.option(
    "--min-age",
    type=AGE,
    default="1m",
    show_default=True,
    help="Never remove files younger than this (results being written, not yet recorded).",
)
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.option(
    "--storage",
    "storage_spec",
    metavar="SLUG_OR_PATH",
    help="A saved storage's slug (local-file-system/NAME, s3/NAME), a folder, or a bucket prefix "
    "(s3://bucket/prefix). Default: the default result storage, FERROFLOW_LOCAL_STORAGE_PATH.",
)
def prune(
    age: timedelta | None, max_bytes: int | None, min_age: timedelta, dry_run: bool, storage_spec: str | None
) -> None:
    """Remove result files by age and/or to keep a folder under a size.

    --older-than removes results last written before then, except those a live (unexpired)
    cache entry names. --max-bytes then removes the least recently used results, cached or
    not, until the folder holds at most that. Recorded runs do not keep their files: a run
    whose result was removed says so when the result is read. Cache entries naming a removed
    result are removed with it. Temporary files of writes a killed process left unfinished go
    by age. Only ferroflow result files are ever removed, and never one younger than --min-age.
    Safe to run while flows write, and alongside another prune.

    \b
    Examples:
      ferroflow results prune --older-than 7d --dry-run
      ferroflow results prune --max-bytes 20G
      ferroflow results prune --older-than 30d --max-bytes 500M --storage local-file-system/dev
      ferroflow results prune --older-than 2w --storage /data/results
      ferroflow results prune --older-than 7d --storage s3://my-bucket/results
    """
    if age is None and max_bytes is None:
        raise click.UsageError("Give --older-than AGE, --max-bytes SIZE, or both (e.g. --older-than 7d).")
    remote = _object_storage(storage_spec)
    if remote is not None:
        _prune_objects(remote, age, max_bytes, min_age, dry_run)
        return
    folder = _storage_folder(storage_spec)
    now = datetime.now(UTC)
    with cli_store() as store:
        entries = store.list_cache_entries()
    indexed = {
        (entry.result.storage, entry.result.key)
        for entry in entries
        if entry.result.storage is not None and entry.result.key is not None and not entry.is_expired(now)
    }
    cached = {path.relative_to(folder).as_posix() for path in _referenced_paths(indexed, folder)}
    plan = plan_prune(
        stored_files(str(folder)),
        now=now.timestamp(),
        older_than=None if age is None else age.total_seconds(),
        max_bytes=max_bytes,
        min_age=min_age.total_seconds(),
        cached_keys=live_cached_keys(str(folder), cached),
    )
    if dry_run:
        for item in plan.remove:
            click.echo(f"would remove {item.path} ({_size(item.size)})")
        freed = plan.freed
    else:
        freed = _remove(str(folder), plan)
    _report(plan, freed, dry_run, age, max_bytes, str(folder), "file")


def _report(
    plan: PrunePlan,
    freed: int,
    dry_run: bool,
    age: timedelta | None,
    max_bytes: int | None,
    where: str,
    noun: str,
) -> None:
    verb = "Would remove" if dry_run else "Removed"
    nouns = noun if len(plan.remove) == 1 else noun + "s"
    reasons = []
    if age is not None:
        reasons.append(f"{len(plan.by_age)} older than {_age_text(age)}")
    if max_bytes is not None:
        reasons.append(f"{len(plan.by_size)} to stay under {_size(max_bytes)}")
    click.echo(
        f"{verb} {len(plan.remove)} result {nouns} ({', '.join(reasons)}) from {where}, "
        f"{'freeing' if dry_run else 'freed'} {_size(freed)}; kept {plan.kept}"
        + (f", {plan.kept_cached} of them old but cached" if plan.kept_cached else "")
        + "."
    )


def _object_storage(spec: str | None) -> RemoteStorage | None:
    """The object storage to prune, when `spec` names one (a URL or a saved one's slug)."""
    if spec is None:
        return None
    if _is_object_url(spec):
        return RemoteFileSystem(basepath=spec)
    if spec in saved_storages():
        storage = resolve_storage(spec)
        if isinstance(storage, (S3, RemoteFileSystem)):
            return storage
    return None


def _prune_objects(
    storage: RemoteStorage, age: timedelta | None, max_bytes: int | None, min_age: timedelta, dry_run: bool
) -> None:
    """`prune` on a bucket prefix, with the retention rules of a folder: an object is a
    candidate by age or by size as a file is, the cache records and entries naming it keep it
    from removal by age, and it is deleted only once its header shows it is a ferroflow result."""
    url = storage.store_url()
    now = datetime.now(UTC)
    with cli_store() as store:
        entries = store.list_cache_entries()
    indexed = {
        entry.result.key
        for entry in entries
        if entry.result.storage is not None
        and entry.result.key is not None
        and not entry.is_expired(now)
        and _same_store(entry.result.storage, url) is not False
    }
    plan = plan_prune_of_results(
        stored_objects(storage),
        lambda item: _is_result_object(storage, item.key),
        now=now.timestamp(),
        older_than=None if age is None else age.total_seconds(),
        max_bytes=max_bytes,
        min_age=min_age.total_seconds(),
        cached_keys=live_cached_keys(storage.record_storage(), indexed),
    )
    if dry_run:
        for item in plan.remove:
            click.echo(f"would remove {item.path} ({_size(item.size)})")
        freed = plan.freed
    else:
        freed = remove_objects(storage, plan.by_age, "ferroflow results prune (by age)")
        freed += remove_objects(storage, plan.by_size, "ferroflow results prune (by size)")
    _report(plan, freed, dry_run, age, max_bytes, url, "object")


def _same_store(reference: str, url: str) -> bool | None:
    """Whether a result reference's storage is the object store at `url`; None when the
    storage cannot be opened any more (its keys are then kept, to be safe)."""
    try:
        storage = storage_from_reference(reference)
    except Exception:
        return None
    return isinstance(storage, (S3, RemoteFileSystem)) and storage.store_url().rstrip("/") == url.rstrip("/")


def _is_result_object(storage: RemoteStorage, key: str) -> bool:
    # The header's integrity and key only: a result the read settings refuse (unsigned, say) is
    # still a result, and prunable.
    try:
        storage.store.read_header(key)
    except (OSError, ValueError):
        return False
    return True


def _storage_folder(spec: str | None) -> Path:
    """The folder of the storage to prune: a saved storage by slug, a folder, or the default."""
    if spec is None:
        return Path(get_current_settings().local_storage_path).expanduser().resolve()
    if spec in saved_storages():
        storage = resolve_storage(spec)
        if not isinstance(storage, LocalFileSystem):
            raise click.ClickException(
                f"{spec} is a {storage.type_slug} storage; `results prune` works on local folders "
                "(local-file-system storages) only."
            )
        return _local_folder(storage)
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        saved = ", ".join(saved_storages()) or "none saved yet"
        raise click.ClickException(
            f"--storage {spec!r} is neither a saved storage nor a folder. Give a folder, or the "
            f"slug of a saved storage (saved: {saved})."
        )
    return folder.resolve()


def _referenced_paths(references: set[tuple[str, str]], folder: Path) -> set[Path]:
    """The files in `folder` that the run store's references point at. A reference whose
    storage cannot be opened any more (a saved storage since deleted) might be this folder:
    its key is kept too, to be safe."""
    paths = set()
    for storage, key in references:
        storage_folder = _folder_of(storage)
        if storage_folder is not _UNKNOWN_FOLDER and storage_folder != folder:
            continue
        try:
            paths.add(Path(LocalFileSystem(basepath=str(folder)).path_of(key)))
        except ValueError:  # a key that escapes its folder names no file of ours
            continue
    return paths


_UNKNOWN_FOLDER = Path("<unknown>")


def _folder_of(storage_reference: str) -> Path | None:
    """The folder of a local storage as a result reference names it (a description as JSON, or
    a saved storage's slug); None for another kind of storage; `_UNKNOWN_FOLDER` if it cannot
    be opened."""
    try:
        storage = storage_from_reference(storage_reference)
    except Exception:
        return _UNKNOWN_FOLDER
    if not isinstance(storage, LocalFileSystem):
        return None
    return _local_folder(storage)


def _local_folder(storage: LocalFileSystem) -> Path:
    return Path(storage.basepath or get_current_settings().local_storage_path).resolve()


def _remove(folder: str, plan: PrunePlan) -> int:
    columns = (TextColumn("Removing result files"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console(), transient=True) as progress:
        task_id = progress.add_task("remove", total=len(plan.remove))

        def advance() -> None:
            progress.advance(task_id)

        freed = remove_files(folder, plan.by_age, "ferroflow results prune (by age)", advance)
        return freed + remove_files(folder, plan.by_size, "ferroflow results prune (by size)", advance)


def _size(nbytes: int) -> str:
    if nbytes < 1024:
        return f"{nbytes} bytes"
    value = nbytes / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _age_text(age: timedelta) -> str:
    """`7d`, `12h`, `90s`: the age in the largest unit that states it exactly."""
    seconds = age.total_seconds()
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length and seconds % length == 0:
            return f"{seconds / length:g}{unit}"
    return f"{seconds:g}s"


__all__ = ["parse_age", "parse_size", "results"]
