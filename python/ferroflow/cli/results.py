"""`ferroflow results`: look inside result files, and remove the ones nothing refers to."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from ferroflow.cli.console import cli_store, console, echo_json
from ferroflow.filesystems import (
    S3,
    LocalFileSystem,
    RemoteFileSystem,
    is_unfinished_write,
    resolve_storage,
    saved_storages,
)
from ferroflow.results.blobs import is_json_document, is_result_file, read_blob_header, read_result_document
from ferroflow.results.references import storage_from_reference
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
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect_result(path: str, as_json: bool) -> None:
    """Show what a result file holds, without loading the value.

    For a ferroflow result file: serializer, codec and level, raw and stored sizes, checksum
    algorithm, format version, the ferroflow version that wrote it and when. For a JSON result
    document (a ferroflow export, or a file written by Prefect 2): its serializer and version.

    \b
    Examples:
      ferroflow results inspect ~/.ferroflow/storage/3f2a9c1e0b7d4e5f8a6b1c2d3e4f5a6b
      ferroflow results inspect result.json --json
      ferroflow results inspect s3://my-bucket/results/3f2a9c1e0b7d4e5f8a6b1c2d3e4f5a6b

    An object store URL (s3://, gs://, az://) is read with the credentials and endpoint of the
    environment (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...); only the header is fetched.
    """
    if _is_object_url(path):
        details = _describe_object(path)
    else:
        file = Path(path)
        if not file.is_file():
            raise click.ClickException(
                f"{path} is not a file. Give a result file, or the URL of a result object "
                "(s3://bucket/key, gs://..., az://...)."
            )
        details = _describe_file(file)
    if as_json:
        echo_json(details)
        return
    listing = Table.grid(padding=(0, 2))
    for name, value in details.items():
        shown = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        listing.add_row(Text(name.replace("_", " "), style="bold"), "-" if value is None else shown)
    console().print(listing)


def _describe_file(path: Path) -> dict[str, Any]:
    if is_json_document(path):
        return _describe_json_document(path)
    try:
        fields = read_blob_header(path)
    except ValueError as error:
        raise click.ClickException(
            f"{path} is not a ferroflow result file ({error}). `results inspect` reads the files "
            "in a result storage folder, or JSON result documents."
        ) from error
    serializer = json.loads(fields["serializer"])
    return {
        "path": str(path),
        "format": "ferroflow framed result",
        "format_version": fields["format_version"],
        "serializer": serializer.get("type"),
        "serializer_description": serializer,
        "codec": fields["codec"],
        "level": fields["level"],
        "raw_size": fields["raw_length"],
        "stored_size": fields["stored_length"],
        "file_size": path.stat().st_size,
        "segments": len(fields["segment_raw_lengths"]),
        "checksum_algorithm": fields["checksum_algorithm"],
        "ferroflow_version": fields["ferroflow_version"],
        "created": fields["created_at"].isoformat(),
    }


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
    serializer = json.loads(fields["serializer"])
    return {
        "path": url,
        "format": "ferroflow framed result",
        "format_version": fields["format_version"],
        "serializer": serializer.get("type"),
        "serializer_description": serializer,
        "codec": fields["codec"],
        "level": fields["level"],
        "raw_size": fields["raw_length"],
        "stored_size": fields["stored_length"],
        "file_size": info.size,
        "segments": len(fields["segment_raw_lengths"]),
        "checksum_algorithm": fields["checksum_algorithm"],
        "ferroflow_version": fields["ferroflow_version"],
        "created": fields["created_at"].isoformat(),
    }


def _describe_json_document(path: Path) -> dict[str, Any]:
    try:
        document = read_result_document(path)
    except ValueError as error:
        raise click.ClickException(f"{path} is JSON but not a result document ({error}).") from error
    serializer, data = document["serializer"], document["data"]
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
_AGE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_age(text: str) -> timedelta:
    """`7d`, `12h`, `30m`, `45s`, `2w` (a number and one unit) as a timedelta."""
    match = _AGE_PATTERN.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not an age; write a number and a unit: s, m, h, d or w (e.g. 7d, 12h, 30m)."
        )
    number, unit = match.groups()
    return timedelta(**{_AGE_UNITS[unit]: float(number)})


class _Age(click.ParamType):
    name = "AGE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_age(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


@dataclass
class _PrunePlan:
    remove: list[tuple[Path, int]]
    referenced: int
    newer: int


@results.command("prune")
@click.option(
    "--older-than",
    "age",
    type=_Age(),
    required=True,
    help="Only remove files last written longer ago than this: 7d, 12h, 30m, 2w.",
)
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.option(
    "--storage",
    "storage_spec",
    metavar="SLUG_OR_PATH",
    help="A saved storage's slug (local-file-system/NAME, s3/NAME), a folder, or a bucket prefix "
    "(s3://bucket/prefix). Default: the default result storage, FERROFLOW_LOCAL_STORAGE_PATH.",
)
def prune(age: timedelta, dry_run: bool, storage_spec: str | None) -> None:
    """Remove result files that no recorded run state or live cache entry refers to.

    Only ferroflow result files (and JSON result documents, and temporary files of writes a
    killed process left unfinished) older than --older-than are removed; expired cache entries
    do not keep their files. The age protects results of runs
    still in progress, whose states are recorded after their files are written.

    \b
    Examples:
      ferroflow results prune --older-than 7d --dry-run
      ferroflow results prune --older-than 12h
      ferroflow results prune --older-than 30m --storage local-file-system/dev
      ferroflow results prune --older-than 2w --storage /data/results
      ferroflow results prune --older-than 7d --storage s3://my-bucket/results
    """
    remote = _object_storage(storage_spec)
    if remote is not None:
        _prune_objects(remote, age, dry_run)
        return
    folder = _storage_folder(storage_spec)
    now = datetime.now(UTC)
    with cli_store() as store:
        referenced = _referenced_paths(store.referenced_result_keys(now=now), folder)
    plan = _plan(folder, referenced, (now - age).timestamp())
    freed = sum(size for _, size in plan.remove)
    if dry_run:
        for path, size in plan.remove:
            click.echo(f"would remove {path} ({_size(size)})")
    elif plan.remove:
        _remove(plan.remove)
    verb = "Would remove" if dry_run else "Removed"
    noun = "file" if len(plan.remove) == 1 else "files"
    click.echo(
        f"{verb} {len(plan.remove)} result {noun} from {folder}, "
        f"{'freeing' if dry_run else 'freed'} {_size(freed)}; kept {plan.referenced} still "
        f"referenced and {plan.newer} newer than {_age_text(age)}."
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


def _prune_objects(storage: RemoteStorage, age: timedelta, dry_run: bool) -> None:
    """`prune` on a bucket prefix: unreferenced result objects older than `age` are deleted.
    An object is deleted only once its header shows it is a ferroflow result."""
    url = storage.store_url()
    now = datetime.now(UTC)
    with cli_store() as store:
        references = store.referenced_result_keys(now=now)
    referenced = {key for reference, key in references if _same_store(reference, url) is not False}
    cutoff = (now - age).timestamp()
    remove, kept, newer = [], 0, 0
    for info in storage.list_objects():
        if info.key in referenced:
            kept += 1
        elif info.last_modified >= cutoff:
            newer += 1
        elif _is_result_object(storage, info.key):
            remove.append((info.key, info.size))
    freed = sum(size for _, size in remove)
    for key, size in remove:
        if dry_run:
            click.echo(f"would remove {storage.url_of(key)} ({_size(size)})")
        else:
            storage.delete(key)
    verb = "Would remove" if dry_run else "Removed"
    noun = "object" if len(remove) == 1 else "objects"
    click.echo(
        f"{verb} {len(remove)} result {noun} from {url}, {'freeing' if dry_run else 'freed'} "
        f"{_size(freed)}; kept {kept} still referenced and {newer} newer than {_age_text(age)}."
    )


def _same_store(reference: str, url: str) -> bool | None:
    """Whether a result reference's storage is the object store at `url`; None when the
    storage cannot be opened any more (its keys are then kept, to be safe)."""
    try:
        storage = storage_from_reference(reference)
    except Exception:
        return None
    return isinstance(storage, (S3, RemoteFileSystem)) and storage.store_url().rstrip("/") == url.rstrip("/")


def _is_result_object(storage: RemoteStorage, key: str) -> bool:
    try:
        storage.read_header(key)
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


def _plan(folder: Path, referenced: set[Path], cutoff: float) -> _PrunePlan:
    plan = _PrunePlan(remove=[], referenced=0, newer=0)
    for path in _result_files(folder):
        stat = path.stat()
        if path in referenced:
            plan.referenced += 1
        elif stat.st_mtime >= cutoff:
            plan.newer += 1
        else:
            plan.remove.append((path, stat.st_size))
    return plan


def _result_files(folder: Path) -> list[Path]:
    """Every ferroflow result file (framed, or a JSON result document) under `folder`, and the
    temporary files of writes that never finished; other files are never touched."""
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root, name)
            if is_unfinished_write(name) or is_result_file(path):
                found.append(path)
    return found


def _remove(files: list[tuple[Path, int]]) -> None:
    columns = (TextColumn("Removing result files"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console(), transient=True) as progress:
        for path, _ in progress.track(files):
            path.unlink(missing_ok=True)


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


__all__ = ["parse_age", "results"]
