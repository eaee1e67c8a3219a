"""`ferroflow bench`: measure serializers and codecs on your own data."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ferroflow import benchmarking
from ferroflow.benchmarking import (
    CODECS,
    NOISE_THRESHOLD,
    RANKINGS,
    SAMPLE_KINDS,
    BenchmarkError,
    CaseResult,
    DataSource,
    format_bytes,
)

DEFAULT_SAMPLE_SIZE = "16MiB"
MIB = 2**20


@click.command("bench")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--sample", type=click.Choice(SAMPLE_KINDS), help="Use a built-in sample instead of PATH.")
@click.option(
    "--size",
    default=DEFAULT_SAMPLE_SIZE,
    show_default=True,
    metavar="SIZE",
    help="Size of the --sample, e.g. 64MiB, 500KB, 1GiB.",
)
@click.option(
    "--serializer",
    "serializers",
    multiple=True,
    metavar="NAME",
    help="Only this serializer (repeatable). Default: pickle, and json if it can write the data.",
)
@click.option(
    "--codec",
    "codecs",
    multiple=True,
    type=click.Choice(CODECS),
    help="Only this codec (repeatable; 'none' for no compression). Default: all.",
)
@click.option(
    "--level",
    "levels",
    multiple=True,
    metavar="LEVEL",
    help="Only this level (repeatable): an integer, or low, default, high. "
    "Default: each codec's low level, and zstd's default (--full: all three).",
)
@click.option(
    "--full",
    is_flag=True,
    help="Measure the full grid: every codec at its low, default and high levels (minutes on large data).",
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1, max=1000),
    default=None,
    help="Timed runs of each phase of each case; the best is reported. "
    "Default: until two runs confirm the best (at most 3; once for a run over half a second).",
)
@click.option(
    "--rank",
    "ranking",
    type=click.Choice(RANKINGS),
    default="balanced",
    show_default=True,
    help="Order of the table: dump or load speed, ratio, or all three balanced.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of a table.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.png",
    help="Also draw throughput against ratio to this image (pip install 'ferroflow[plot]').",
)
def bench(
    path: Path | None,
    sample: str | None,
    size: str,
    serializers: Sequence[str],
    codecs: Sequence[str],
    levels: Sequence[str],
    full: bool,
    repeat: int | None,
    ranking: benchmarking.Ranking,
    as_json: bool,
    plot_path: Path | None,
) -> None:
    """Measure how fast each serializer and codec persists and loads your data, and how small.

    PATH is a pickle file (its unpickled value is measured), a NumPy .npy file, or a folder
    (a dict of each file's bytes). Each case writes a result blob to a temporary folder and
    reads it back through ferroflow's persistence path, in a child process, until two runs
    confirm the best time (or --repeat times). By default the quick grid is measured: each
    codec at its fastest level and zstd at its default too; --full measures every level.
    MB/s are of the input's size; peak memory is above the loaded input. Details: docs/bench.md.

    \b
    Examples:
      ferroflow bench results.pickle
      ferroflow bench results.pickle --full
      ferroflow bench features.npy --codec zstd --codec none
      ferroflow bench ./exports --serializer pickle --level low
      ferroflow bench --sample records --size 64MiB --rank ratio
      ferroflow bench --sample floats --json > bench.json
      ferroflow bench --sample text --plot bench.png
    """
    try:
        with tempfile.TemporaryDirectory(prefix="ferroflow-bench-input-") as scratch:
            source = _source(path, sample, size, Path(scratch))
            cases = _cases(source, serializers, codecs, levels, full)
            if plot_path is not None:
                benchmarking.check_plotting()
            results = _run(source, cases, repeat)
    except BenchmarkError as exc:
        raise click.UsageError(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(benchmarking.report(source, results, ranking, repeat), indent=2))
    else:
        _print_table(source, results, ranking, repeat)
    if plot_path is not None:
        benchmarking.plot(results, plot_path, f"ferroflow bench: {source.label}")
        click.echo(f"Plot written to {plot_path}", err=as_json)


def _source(path: Path | None, sample: str | None, size: str, scratch: Path) -> DataSource:
    if (path is None) == (sample is None):
        raise BenchmarkError(
            "Give either a PATH (pickle file, .npy file or folder) or --sample "
            f"{'|'.join(SAMPLE_KINDS)}, not {'both' if path else 'neither'}."
        )
    if sample is not None:
        return benchmarking.sample_source(
            sample, benchmarking.check_sample_size(benchmarking.parse_size(size)), scratch
        )
    assert path is not None
    return benchmarking.source_from_path(path)


def _cases(
    source: DataSource, serializers: Sequence[str], codecs: Sequence[str], levels: Sequence[str], full: bool
) -> list[benchmarking.Case]:
    chosen, note = benchmarking.choose_serializers(source, serializers)
    if note:
        click.echo(note, err=True)
    if levels or full:
        return benchmarking.case_grid(
            chosen, codecs or CODECS, benchmarking.parse_levels(levels) or benchmarking.LEVEL_NAMES
        )
    return benchmarking.quick_grid(chosen, codecs or CODECS)


def _run(source: DataSource, cases: list[benchmarking.Case], repeat: int | None) -> list[CaseResult]:
    """Measure the cases, showing progress on stderr: a bar on a terminal, else one line per
    finished case (a log, or CI, shows how far it got)."""
    errors = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        disable=not errors.is_terminal,
        transient=True,
    )
    results = []
    started = time.monotonic()
    with progress:
        bar = progress.add_task("starting", total=len(cases))

        def show(case: benchmarking.Case) -> None:
            progress.update(bar, description=case.label)

        for result in benchmarking.run_cases(source, cases, repeat=repeat, on_start=show):
            results.append(result)
            progress.advance(bar)
            if not errors.is_terminal:
                click.echo(
                    f"[{len(results)}/{len(cases)}] {result.case.label}: dump {result.dump_mb_s:,.0f} MB/s, "
                    f"load {result.load_mb_s:,.0f} MB/s, ratio {result.ratio:.2f} "
                    f"({time.monotonic() - started:.0f} s)",
                    err=True,
                )
    return results


def _print_table(
    source: DataSource, results: Sequence[CaseResult], ranking: benchmarking.Ranking, repeat: int | None
) -> None:
    console = Console()
    runs = "best run (2-3 runs, 1 for runs over half a second)" if repeat is None else f"best of {repeat}"
    console.print(
        f"[bold]{source.label}[/]: {format_bytes(source.size)}, {runs}, ranked by {ranking}",
        soft_wrap=True,
        highlight=False,
    )
    table = Table(
        caption="MB/s of the input's size. Peak memory above the loaded input, MiB, dump/load.",
        box=box.SIMPLE_HEAD,
    )
    for heading in ("case", "dump MB/s", "load MB/s", "ratio", "stored", "peak MiB", "spread"):
        table.add_column(heading, justify="left" if heading == "case" else "right", no_wrap=True)
    for result in benchmarking.rank(results, ranking):
        table.add_row(
            result.case.label,
            f"{result.dump_mb_s:,.0f}",
            f"{result.load_mb_s:,.0f}",
            f"{result.ratio:.2f}",
            format_bytes(result.stored_bytes),
            f"{result.dump_peak_bytes / MIB:,.0f}/{result.load_peak_bytes / MIB:,.0f}",
            _spread_text(result),
        )
    console.print(table)
    noisy = [result.case.label for result in results if result.noisy]
    if noisy:
        console.print(
            f"[yellow]Warning:[/] in {len(noisy)} of {len(results)} cases the two fastest runs differed by "
            f"more than {NOISE_THRESHOLD:.0%} ({', '.join(noisy[:5])}{', ...' if len(noisy) > 5 else ''}): "
            "other work was probably taking the cores. Compare those with care, or run them again "
            "with --repeat 5."
        )


def _spread_text(result: CaseResult) -> str:
    """How far the two fastest runs were apart ("-": each phase ran once)."""
    if result.spread is None:
        return "-"
    return f"[yellow]{result.spread:.0%}[/]" if result.noisy else f"{result.spread:.0%}"
