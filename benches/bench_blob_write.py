"""Framed blob I/O against plain Python file I/O of the same 256 MiB buffer.

Run: .venv/bin/python -m pytest benches/bench_blob_write.py -s
Prints MB/s of both sides and their ratio (ferroflow / Python: above 1 means ferroflow is faster).
ferroflow's side also checksums every byte, writes atomically (temporary file and rename) and,
with durability on, fsyncs the folder as well. Figures are printed, never asserted.
"""

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from _report import mb_per_s, print_table, race
from ferroflow._core import map_blob, read_blob, write_blob

SIZE = 256 * 2**20
SERIALIZER = '{"type": "pickle", "protocol": 5}'
HEADER = ["operation", "ferroflow", "MB/s", "python", "MB/s", "ratio", "target"]


@pytest.fixture(scope="module")
def payload() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, SIZE, dtype=np.uint8)


def best_of_turns(candidates: dict[str, tuple[Callable[[], object], Path]], repeat: int) -> dict[str, float]:
    """Like `_report.race` (turns, best time), but each write's file is deleted after it is timed:
    a deleted file's dirty pages are dropped, so no run is throttled by write-back of earlier ones."""
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(repeat):
        for name, (write, path) in candidates.items():
            start = time.perf_counter()
            write()
            best[name] = min(best[name], time.perf_counter() - start)
            path.unlink()
    return best


def python_write(path: Path, data, durable: bool = False) -> None:
    with open(path, "wb") as file:
        file.write(data)
        if durable:
            file.flush()
            os.fsync(file.fileno())


def row(operation: str, ours: str, theirs: str, seconds: dict[str, float], target: float | None) -> list:
    ours_speed, theirs_speed = mb_per_s(SIZE, seconds[ours]), mb_per_s(SIZE, seconds[theirs])
    ratio = ours_speed / theirs_speed
    verdict = "" if target is None else f">= {target:.2f} {'met' if ratio >= target else 'MISSED'}"
    return [operation, ours, ours_speed, theirs, theirs_speed, ratio, verdict]


def test_blob_write_and_read_against_python_file_io(tmp_path, payload):
    blob, plain = tmp_path / "blob.ffb", tmp_path / "plain.bin"
    rows = []

    seconds = best_of_turns(
        {
            "write_blob": (lambda: write_blob(blob, [payload], serializer=SERIALIZER), blob),
            "open().write()": (lambda: python_write(plain, payload), plain),
        },
        repeat=5,
    )
    rows.append(row("write", "write_blob", "open().write()", seconds, 0.90))

    seconds = best_of_turns(
        {
            "write_blob(durable=True)": (
                lambda: write_blob(blob, [payload], serializer=SERIALIZER, durable=True),
                blob,
            ),
            "write() + os.fsync()": (lambda: python_write(plain, payload, durable=True), plain),
        },
        repeat=3,
    )
    rows.append(row("durable write", "write_blob(durable=True)", "write() + os.fsync()", seconds, 0.70))

    write_blob(blob, [payload], serializer=SERIALIZER)
    python_write(plain, payload)
    seconds = race(
        {
            "read_blob": lambda: read_blob(blob),
            "map_blob": lambda: map_blob(blob),
            "open().read()": plain.read_bytes,
        },
        repeat=5,
    )
    rows.append(row("read", "read_blob", "open().read()", seconds, None))
    rows.append(row("read, mapped", "map_blob", "open().read()", seconds, None))

    print_table(
        f"blob I/O, {SIZE // 2**20} MiB, best of 5 (durable: 3), all verified by checksum", HEADER, rows
    )
