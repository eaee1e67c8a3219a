"""What a command-line argument names in the run store: a flow run or a task run by its id (or
the beginning of it), a persisted result by its key or by the run that produced it, and the
place a recorded result lives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from ferroflow.cli.console import is_text
from ferroflow.exceptions import UnknownRunError
from ferroflow.filesystems import LocalFileSystem
from ferroflow.results.references import storage_from_reference
from ferroflow.runstore import FlowRunRecord, ResultRef, RunStore, TaskRunRecord

Run = FlowRunRecord | TaskRunRecord
CANDIDATES_SHOWN = 5


class NoSuchRunError(click.ClickException):
    """No flow run or task run has an id starting with the one given."""


def find_run(store: RunStore, run_id: str) -> Run:
    """The flow run or task run whose id is `run_id`, or the only one whose id starts with it."""
    if not run_id.strip():
        raise click.ClickException(
            "The run id is empty; give a flow or task run id as `ferroflow runs ls` shows it."
        )
    found: list[Run] = []
    candidates: list[str] = []
    for lookup in (store.get_flow_run, store.get_task_run):
        try:
            found.append(lookup(run_id))
        except UnknownRunError as error:
            candidates.extend(error.candidates)
    if len(found) == 1 and not candidates:
        return found[0]
    candidates.extend(run.id for run in found)
    if candidates:
        shown = ", ".join(sorted(candidates)[:CANDIDATES_SHOWN])
        more = ", ..." if len(candidates) > CANDIDATES_SHOWN else ""
        raise click.ClickException(
            f"{run_id!r} is the start of several run ids ({shown}{more}); give more of the id."
        )
    raise NoSuchRunError(
        f"No flow run or task run has an id starting with {run_id!r} in the run store {store.url}. "
        "List recent flow runs with `ferroflow runs ls`, and a flow run's task runs with "
        "`ferroflow runs show FLOW_RUN_ID`."
    )


def last_result(store: RunStore, run: Run) -> ResultRef | None:
    """The result of the run's latest state that has one."""
    results = [state.result for state in store.list_states(run.id) if state.result is not None]
    return results[-1] if results else None


def result_path(reference: ResultRef) -> Path | None:
    """The file of a persisted result in a local folder; None for a literal result, a storage of
    another kind, or a storage that cannot be opened any more (a saved storage since deleted)."""
    if reference.kind != "persisted" or reference.storage is None or reference.key is None:
        return None
    try:
        storage = storage_from_reference(reference.storage)
        if not isinstance(storage, LocalFileSystem):
            return None
        return Path(storage.path_of(reference.key))
    except Exception:  # any failure to open a recorded storage leaves its place unknown, not the command
        return None


def location(reference: ResultRef) -> str:
    """Where a result is, whole: its file's path, or its storage and key; for a literal, its value."""
    if reference.kind == "literal":
        return f"literal {reference.value_json}"
    path = result_path(reference)
    if path is not None:
        return str(path)
    return f"key {reference.key} in storage {reference.storage}"


@dataclass(frozen=True)
class FoundResult:
    reference: ResultRef
    source: str
    """What named it, for the user: `result key ...`, `task run ...`."""


def find_result(store: RunStore, given: str) -> FoundResult | None:
    """The result `given` names: a recorded result's key (or the only one starting with it), else
    the latest result of the flow or task run with that id; None if it names neither."""
    if not given.strip() or not is_text(given):
        return None
    references = store.referenced_result_keys()
    exact = {(storage, key) for storage, key in references if key == given}
    matching = exact or {(storage, key) for storage, key in references if key.startswith(given)}
    if len({key for _, key in matching}) > 1:
        keys = sorted({key for _, key in matching})
        shown = ", ".join(keys[:CANDIDATES_SHOWN]) + (", ..." if len(keys) > CANDIDATES_SHOWN else "")
        raise click.ClickException(
            f"{given!r} is the start of several result keys ({shown}); give more of the key."
        )
    if matching:
        # One key; were it in several storages, the copy whose file exists is the one meant.
        places = sorted(matching)
        references_found = [ResultRef.persisted(storage, key, "") for storage, key in places]
        existing = [
            ref for ref in references_found if (path := result_path(ref)) is not None and path.exists()
        ]
        reference = (existing or references_found)[0]
        return FoundResult(reference, f"result key {reference.key}")
    try:
        run = find_run(store, given)
    except NoSuchRunError:
        return None
    run_result = last_result(store, run)
    kind = "flow run" if isinstance(run, FlowRunRecord) else "task run"
    if run_result is None:
        raise click.ClickException(f"The {kind} {run.id} ({run.name}) has no recorded result.")
    return FoundResult(run_result, f"the result of {kind} {run.id} ({run.name})")


__all__ = [
    "FoundResult",
    "NoSuchRunError",
    "Run",
    "find_result",
    "find_run",
    "last_result",
    "location",
    "result_path",
]
