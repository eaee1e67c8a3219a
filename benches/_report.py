"""Shared helpers of the benchmarks: timing that resists a busy machine, and a printed table.

Benchmarks print figures and ratios measured in one run; they never assert on timing.
"""

import os
import time
from collections.abc import Callable, Sequence


def race(
    candidates: dict[str, Callable[[], object]],
    repeat: int = 3,
    after: Callable[[str], object] | None = None,
) -> dict[str, float]:
    """Best wall time in seconds of each candidate, running them in turn `repeat` times.

    Taking turns spreads any load from other processes over all candidates alike, and the best
    of several runs is the one least disturbed by it. `after(name)` runs untimed after each call
    (deleting a written file, say, so that no write is throttled by the write-back of an earlier one).
    """
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(repeat):
        for name, candidate in candidates.items():
            start = time.perf_counter()
            candidate()
            best[name] = min(best[name], time.perf_counter() - start)
            if after is not None:
                after(name)
    return best


def mb_per_s(nbytes: int, seconds: float) -> float:
    """Throughput in MB/s (10**6 bytes per second)."""
    return nbytes / seconds / 1e6


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Prints `rows` as aligned columns under `title`; floats get two decimals."""
    cells = [[_format(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    # Other work on the machine slows every figure; the load (this run included) says how much.
    load = os.getloadavg()[0]
    print(f"\n{title}  [1-min load average {load:.1f}, this run included, on {os.cpu_count()} cores]")
    for index, row in enumerate(cells):
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def _format(cell: object) -> str:
    return f"{cell:.2f}" if isinstance(cell, float) else str(cell)
