"""Framed blob I/O against plain Python file I/O on a 256 MiB buffer.

Run: .venv/bin/python -m pytest benches/bench_blob_write.py -s
Prints MB/s of both sides and their ratio (ferroflow / Python; above 1 means ferroflow is faster).
Rounds of the two sides alternate and the best round of each counts, which keeps page-cache
and frequency noise from favouring one side. Nothing is asserted about speed.
"""

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ferroflow._core import map_blob, read_blob, write_blob

SIZE = 256 * 1024 * 1024
SERIALIZER = '{"type": "pickle", "protocol": 5}'


@pytest.fixture(scope="module")
def payload() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, SIZE, dtype=np.uint8)


def best_seconds(run: Callable[[], object], before: Callable[[], object] | None, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        if before is not None:
            before()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def compare(title: str, ours: tuple[str, Callable], theirs: tuple[str, Callable], before=None, rounds=5) -> None:
    """Alternates single rounds of both sides and prints the best of each and their ratio."""
    ours_times: list[float] = []
    theirs_times: list[float] = []
    for _ in range(rounds):
        theirs_times += best_seconds(theirs[1], before, 1)
        ours_times += best_seconds(ours[1], before, 1)
    mb = SIZE / 1e6
    ours_rate, theirs_rate = mb / min(ours_times), mb / min(theirs_times)
    print(
        f"\n{title} (256 MiB, best of {rounds}):\n"
        f"  {ours[0]:<34} {ours_rate:8.0f} MB/s\n"
        f"  {theirs[0]:<34} {theirs_rate:8.0f} MB/s\n"
        f"  ratio ferroflow / python: {ours_rate / theirs_rate:.2f}"
    )


def remover(*paths: Path) -> Callable[[], None]:
    def remove() -> None:
        for path in paths:
            path.unlink(missing_ok=True)

    return remove


def python_write(path: Path, data, durable: bool) -> None:
    with open(path, "wb") as file:
        file.write(data)
        if durable:
            file.flush()
            os.fsync(file.fileno())


def test_write(tmp_path, payload):
    blob, plain = tmp_path / "framed.ffb", tmp_path / "plain.bin"
    compare(
        "write",
        ("write_blob", lambda: write_blob(blob, [payload], serializer=SERIALIZER)),
        ("open().write()", lambda: python_write(plain, payload, durable=False)),
        before=remover(blob, plain),
    )


def test_durable_write(tmp_path, payload):
    blob, plain = tmp_path / "framed.ffb", tmp_path / "plain.bin"
    compare(
        "durable write",
        ("write_blob(durable=True)", lambda: write_blob(blob, [payload], serializer=SERIALIZER, durable=True)),
        ("open().write() + os.fsync()", lambda: python_write(plain, payload, durable=True)),
        before=remover(blob, plain),
        rounds=3,
    )


def test_read(tmp_path, payload):
    blob, plain = tmp_path / "framed.ffb", tmp_path / "plain.bin"
    write_blob(blob, [payload], serializer=SERIALIZER)
    python_write(plain, payload, durable=False)
    compare("read", ("read_blob", lambda: read_blob(blob)), ("open().read()", plain.read_bytes))
    compare("read (mapped)", ("map_blob", lambda: map_blob(blob)), ("open().read()", plain.read_bytes))
