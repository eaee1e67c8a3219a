"""Run every benchmark in benches/ and write what they print as one markdown summary.

    python benches/summary.py                      # run them, write .bench/summary.md
    python benches/summary.py --from-log run.log   # summarize output captured earlier
    python benches/summary.py -- -k codecs         # pass arguments on to pytest

`make bench` calls the first form. The benchmarks print their own tables and ratios (figures
are never asserted); this script adds the machine and the commit they ran on, pulls out the
lines that state a ratio or a target ("... met" / "... MISSED") into one table at the top, and
keeps each benchmark file's full output below it. The summary holds numbers of one machine, so
`.bench/` is not committed; dated snapshots are kept in benches/results/.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCHES = Path(__file__).resolve().parent
REPOSITORY = BENCHES.parent
# Not -q: at its default verbosity pytest prints each file's path as it starts it (then the
# progress marks of its tests), which is how the output is told apart per benchmark. The
# bench_*.py files are collected by benches/conftest.py; adding `-o python_files=bench_*.py`
# would collect, and run, each of them twice.
PYTEST_COMMAND = [sys.executable, "-m", "pytest", "benches", "-p", "no:cacheprovider", "-s"]

_FILE_START = re.compile(r"^benches/(bench_\w+)\.py\s*(.*)$")
_PROGRESS_ONLY = re.compile(r"^[.sFEx]+(\s+\[\s*\d+%\])?$")
# A target verdict ("... met" / "... MISSED" / "(target: ...)") or a ratio ("ratio ...: 0.90", "ratio  16.6x").
_HEADLINE = re.compile(r"\b(met|MISSED)\s*$|\(target:|\bratio\b.*\s[\d.]+x?\s*$")
_SESSION_END = re.compile(r"^=+ .*(passed|failed|error).* =+$")


@dataclass
class BenchmarkOutput:
    """What one bench_*.py file printed."""

    name: str
    lines: list[str] = field(default_factory=list)

    def headlines(self) -> list[str]:
        """Lines stating a ratio or whether a target was met, each with the title of its table
        (the benchmarks print a blank line, then the title, then the table)."""
        found, title, after_blank = [], "", True
        for line in self.lines:
            if line.strip() and after_blank:  # a title, even one that states a target
                title = line.strip().rstrip(":")
            elif _HEADLINE.search(line):
                found.append(f"{title}: {line.strip()}" if title else line.strip())
            after_blank = not line.strip()
        return found


def split_by_benchmark(log: Iterable[str]) -> list[BenchmarkOutput]:
    """The pytest output, cut into each benchmark file's printed lines (progress marks dropped)."""
    outputs: list[BenchmarkOutput] = []
    for raw in log:
        line = raw.rstrip("\n")
        started = _FILE_START.match(line)
        if started:
            outputs.append(BenchmarkOutput(started.group(1)))
            line = started.group(2)
        if _SESSION_END.match(line):
            break
        if not outputs:
            continue
        if _PROGRESS_ONLY.match(line.strip()):
            line = ""  # a test ended here: keep it as the break between two tests' output
        lines = outputs[-1].lines
        if line.strip() or (lines and lines[-1].strip()):  # no runs of blank lines
            lines.append(line)
    for output in outputs:
        while output.lines and not output.lines[0].strip():
            output.lines.pop(0)
        while output.lines and not output.lines[-1].strip():
            output.lines.pop()
    return outputs


def machine() -> dict[str, str]:
    """What the figures depend on: CPU, cores, memory, Python, ferroflow and the commit."""
    from ferroflow import __version__

    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "ferroflow": __version__,
        "commit": _git("rev-parse", "--short", "HEAD")
        + (" (with local changes)" if _git("status", "--porcelain") else ""),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        with open("/proc/meminfo") as meminfo:
            kib = int(meminfo.readline().split()[1])
        return f"{kib / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        return "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPOSITORY, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def render(outputs: Sequence[BenchmarkOutput], facts: dict[str, str], command: str, failed: bool) -> str:
    lines = ["# ferroflow benchmark summary", ""]
    lines += [f"- **{name}**: {value}" for name, value in facts.items()]
    lines += [f"- **command**: `{command}`", ""]
    if failed:
        lines += [
            "**Some benchmarks failed**: their figures are missing or partial; see the output below.",
            "",
        ]
    lines += ["## Ratios and targets", "", "| benchmark | figure |", "|---|---|"]
    for output in outputs:
        lines += [f"| {output.name} | {_table_cell(headline)} |" for headline in output.headlines()]
    lines.append("")
    for output in outputs:
        lines += [f"## {output.name}", "", "```text", *output.lines, "```", ""]
    return "\n".join(lines)


def _table_cell(text: str) -> str:
    return re.sub(r"\s{2,}", " ", text).replace("|", "\\|")


def run_benchmarks(pytest_arguments: Sequence[str]) -> tuple[list[str], int]:
    """Run the benchmarks, echoing their output as it comes; returns it and pytest's exit code."""
    process = subprocess.Popen(
        [*PYTEST_COMMAND, *pytest_arguments],
        cwd=REPOSITORY,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        bufsize=1,
    )
    assert process.stdout is not None
    log = []
    for line in process.stdout:
        sys.stdout.write(line)
        log.append(line)
    return log, process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--out",
        type=Path,
        default=REPOSITORY / ".bench" / "summary.md",
        help="where to write the markdown (default: .bench/summary.md)",
    )
    parser.add_argument(
        "--from-log",
        type=Path,
        metavar="LOG",
        help="summarize this captured pytest output instead of running the benchmarks",
    )
    parser.add_argument("pytest_arguments", nargs="*", help="arguments for pytest, after --")
    arguments = parser.parse_args(argv)
    if arguments.from_log is not None:
        if not arguments.from_log.is_file():
            parser.error(f"{arguments.from_log} is not a file: give the output of a benchmark run")
        log, status = arguments.from_log.read_text().splitlines(keepends=True), 0
    else:
        log, status = run_benchmarks(arguments.pytest_arguments)
    outputs = split_by_benchmark(log)
    if not outputs:
        print("No benchmark output found: was pytest run on benches/ with -s?", file=sys.stderr)
        return 1
    command = (
        "make bench"
        if not arguments.pytest_arguments
        else f"python benches/summary.py -- {' '.join(arguments.pytest_arguments)}"
    )
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(render(outputs, machine(), command, failed=status != 0))
    print(f"\nSummary written to {arguments.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
