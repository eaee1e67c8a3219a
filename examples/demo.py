"""ferroflow demo: run the sensor pipeline twice and show what ferroflow did.

Run 1 persists every task result (pickle + zstd) to the demo's storage; the report fails on the
flow's first attempt (a simulated outage) and the flow's retry reuses the tasks that completed.
Run 2 is a new flow run with the same inputs: the two producing tasks are task-cache hits, read
back from storage instead of computed. Afterwards it prints the `ferroflow` commands that show
the recorded runs, the cache entries and the result files.

Everything lives in the demo folder (default `.demo/` at the top of the repository): its
FERROFLOW_HOME, with the run store (`ferroflow.db`) and the result storage (`storage/`). The
folder is emptied at the start of each demo unless --keep is given. With --runstore-url the runs
and cache entries go to that store instead (a PostgreSQL database, say), where the demo clears
the cache entries of its own tasks at the start unless --keep is given.

Usage: python examples/demo.py [--size 256MiB] [--home DIR] [--keep] [--runstore-url URL]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich import box
from rich.console import Console
from rich.status import Status
from rich.table import Table

from ferroflow import _core
from ferroflow.benchmarking import BenchmarkError, format_bytes, parse_size
from ferroflow.cli.console import state_text
from ferroflow.filesystems import LocalFileSystem
from ferroflow.runstore import open_store
from ferroflow.settings import check_runstore_url, redact_url
from pipeline import RESULT_SERIALIZER, PipelineSize, load_maintenance_log, record_readings, sensor_pipeline

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_HOME = REPOSITORY / ".demo"
#: A file that marks a folder as made by this demo, so that only such a folder is ever emptied.
MARKER = ".ferroflow-demo"


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Example: python examples/demo.py --size 32MiB --home /tmp/ferroflow-demo",
    )
    parser.add_argument(
        "--size", default="256MiB", help="size of the readings array, e.g. 256MiB (default), 1GiB, 8MiB"
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=DEFAULT_HOME,
        help=f"demo folder, used as FERROFLOW_HOME (default: {DEFAULT_HOME})",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the runs, cache and results of earlier demos (run 1 then hits the cache too)",
    )
    parser.add_argument(
        "--runstore-url",
        help="record the runs and cache entries in this run store instead of the demo folder's, "
        "e.g. postgresql://user:password@host:5432/database",
    )
    return parser.parse_args(argv)


def prepare_store(url: str, keep: bool) -> None:
    """Record in the store at `url`; unless `keep`, clear the cache entries of the demo's tasks
    there (their results were in the demo folder, which was emptied)."""
    os.environ["FERROFLOW_RUNSTORE_URL"] = url
    if not keep:
        with open_store(url) as store:
            for cached_task in (record_readings, load_maintenance_log):
                store.delete_cache_entries(task_name=cached_task.name)


def prepare_home(home: Path, keep: bool) -> None:
    """Empty the demo folder (only if this demo made it) and make it FERROFLOW_HOME."""
    if home.exists() and any(home.iterdir()) and not (home / MARKER).exists():
        sys.exit(f"{home} is not empty and was not made by this demo; choose a new folder with --home.")
    if not keep and home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).touch()
    # Set before ferroflow reads its settings: the run store and storage follow FERROFLOW_HOME.
    os.environ["FERROFLOW_HOME"] = str(home)
    for name in [name for name in os.environ if name.startswith("FERROFLOW_") and name != "FERROFLOW_HOME"]:
        del os.environ[name]  # e.g. a FERROFLOW_RUNSTORE_URL would send the runs elsewhere


@dataclass
class RunSummary:
    """One flow run as the run store recorded it, and the result files it wrote."""

    title: str
    flow_run_id: str
    seconds: float
    new_files: list[Path]


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        readings_bytes = parse_size(arguments.size)
    except BenchmarkError as error:
        sys.exit(f"--size: {error}")
    home = arguments.home.resolve()
    runstore_url = None
    if arguments.runstore_url:
        try:
            runstore_url = check_runstore_url(arguments.runstore_url)
        except ValueError as error:
            sys.exit(f"--runstore-url: {error}")
    prepare_home(home, arguments.keep)
    if runstore_url is not None:
        prepare_store(runstore_url, arguments.keep)
    storage = LocalFileSystem(basepath=str(home / "storage"))
    pipeline = sensor_pipeline.with_options(result_storage=storage)
    size = PipelineSize.for_bytes(readings_bytes)
    parameters = {"sensors": size.sensors, "samples": size.samples, "log_rows": size.log_rows}

    report = Report(home, RESULT_SERIALIZER.frame_codec, runstore_url)
    report.introduce(size)
    runs = []
    for title, fail_first_attempt in (
        ("Run 1: the first attempt fails, the retry reuses completed tasks", True),
        ("Run 2: same inputs, a new flow run: cached tasks are read back", False),
    ):
        with report.status(title):
            before = set(report.result_files())
            started = time.perf_counter()
            state = pipeline(**parameters, fail_first_attempt=fail_first_attempt, return_state=True)
            seconds = time.perf_counter() - started
        run = RunSummary(
            title, report.latest_flow_run_id(), seconds, sorted(set(report.result_files()) - before)
        )
        runs.append(run)
        report.show_run(run)
        if not state.is_completed():
            report.console.print(f"[red]The flow run ended {state.name}: {state.message}")
            return 1
    report.show_totals(runs)
    report.show_commands(runs)
    return 0


class Report:
    """Prints the demo's story with rich, reading the run store and the result files."""

    def __init__(self, home: Path, frame_codec: tuple[str, int | None], runstore_url: str | None) -> None:
        self.console = Console()
        self.home = home
        self.runstore_url = runstore_url
        self.storage_path = home / "storage"
        self.codec = f"{frame_codec[0]} level {frame_codec[1]}"

    def introduce(self, size: PipelineSize) -> None:
        self.console.rule("[bold]ferroflow demo: a sensor pipeline")
        self.console.print(
            f"readings: {size.sensors} sensors x {size.samples:,} float32 samples "
            f"([bold]{format_bytes(size.readings_bytes)}[/]); maintenance log: {size.log_rows:,} records\n"
            f"results: pickle, compressed with {self.codec}, in {self.storage_path}\n"
            f"demo folder (FERROFLOW_HOME): {self.home}, with the run store ferroflow.db\n"
            if self.runstore_url is None
            else f"demo folder (FERROFLOW_HOME): {self.home}; run store: {redact_url(self.runstore_url)}\n"
        )

    def status(self, title: str) -> Status:
        return self.console.status(f"{title} ...")

    def result_files(self) -> list[Path]:
        if not self.storage_path.exists():
            return []
        return [
            path for path in self.storage_path.iterdir() if path.is_file() and not path.name.startswith(".")
        ]

    def latest_flow_run_id(self) -> str:
        store = open_store()
        try:
            return store.list_flow_runs(limit=1)[0].id
        finally:
            store.close()

    def show_run(self, run: RunSummary) -> None:
        store = open_store()
        try:
            flow_run = store.get_flow_run(run.flow_run_id)
            flow_states = store.list_states(flow_run.id)
            task_runs = [
                (task_run, store.list_states(task_run.id)) for task_run in store.list_task_runs(flow_run.id)
            ]
        finally:
            store.close()
        retries_started = [state.timestamp for state in flow_states if state.name == "Retrying"]
        table = Table(
            title=f"[bold]{run.title}",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            padding=(0, 1),
            collapse_padding=True,
        )
        for heading in ("try", "task run", "state", "time", "data -> file"):
            table.add_column(heading, justify="right" if heading in ("try", "time") else "left", no_wrap=True)
        hits = reused = 0
        for task_run, states in task_runs:
            attempt = 1 + sum(started <= task_run.created for started in retries_started)
            final = states[-1] if states else None
            label = state_text(task_run.state_type, task_run.state_name)
            if final is not None and final.name == "Cached":
                # In a retry the engine first reuses the earlier attempt's result; a cache hit
                # is a Cached run on the first attempt (see ferroflow/_engine/caching.py).
                if attempt > 1:
                    reused += 1
                    label.append(" (reused)", style="dim")
                else:
                    hits += 1
                    label.append(" (cache hit)", style="dim")
            result = final.result if final is not None else None
            table.add_row(
                str(attempt),
                task_run.task_name,
                label,
                _seconds(task_run.duration_seconds),
                self._describe_result(
                    result.key if result is not None and result.kind == "persisted" else None
                ),
            )
        self.console.print(table)
        reuse = [
            f"{hits} cache hits" if hits else "",
            f"{reused} tasks reused by the retry" if reused else "",
        ]
        self.console.print(
            f"flow run [bold]{flow_run.name}[/]",
            state_text(flow_run.state_type, flow_run.state_name),
            f"after {flow_run.run_count} attempt{'s' if flow_run.run_count > 1 else ''} "
            f"({' > '.join(state.name for state in flow_states)}) in {run.seconds:.1f} s; "
            f"{', '.join(filter(None, reuse)) or 'nothing reused'}; wrote {self._files_summary(run.new_files)}\n",
        )

    def _describe_result(self, key: str | None) -> str:
        if key is None:
            return "-"
        path = self.storage_path / key
        if not path.exists():
            return "file missing"
        raw = _core.read_header(path).raw_length
        return f"{format_bytes(raw)} -> {format_bytes(path.stat().st_size)}"

    def _files_summary(self, files: list[Path]) -> str:
        if not files:
            return "no result files"
        raw = sum(_core.read_header(path).raw_length for path in files)
        stored = sum(path.stat().st_size for path in files)
        smaller = f", {raw / stored:.1f}x smaller" if raw > stored else ""
        return f"{len(files)} result files ({format_bytes(raw)} of data in {format_bytes(stored)}{smaller})"

    def show_totals(self, runs: list[RunSummary]) -> None:
        total = sum(run.seconds for run in runs)
        files = [path for run in runs for path in run.new_files]
        self.console.rule("[bold]Summary")
        self.console.print(
            f"{len(runs)} flow runs in {total:.1f} s; storage holds {self._files_summary(files)}.\n"
            f"Run 2 took {runs[-1].seconds:.1f} s against run 1's {runs[0].seconds:.1f} s: "
            "its cached tasks were read back, not computed.\n"
        )

    def show_commands(self, runs: list[RunSummary]) -> None:
        executable = Path(sys.executable).with_name("ferroflow")
        command = shlex.quote(os.path.relpath(executable)) if executable.exists() else "ferroflow"
        prefix = f"FERROFLOW_HOME={shlex.quote(str(self.home))} {command}"
        if self.runstore_url is not None:  # its password, if any, is left for the reader to put back
            shown = redact_url(self.runstore_url)
            prefix = f"FERROFLOW_RUNSTORE_URL={shlex.quote(shown)} {prefix}"
            if shown != self.runstore_url:
                self.console.print("(put the run store's password in place of ***)")
        largest = max(
            (path for run in runs for path in run.new_files), key=lambda p: p.stat().st_size, default=None
        )
        self.console.print("[bold]Look further[/] (paste into a shell):")
        lines = [
            f"{prefix} runs ls",
            f"{prefix} runs show {runs[0].flow_run_id[:8]}",
            f"{prefix} cache ls",
        ]
        if largest is not None:
            lines.append(f"{prefix} results inspect {shlex.quote(str(largest))}")
        for line in lines:
            self.console.print(f"  {line}", soft_wrap=True, highlight=False)


def _seconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


if __name__ == "__main__":
    sys.exit(main())
