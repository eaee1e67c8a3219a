"""What signing results costs: a signed 256 MiB blob written and read against an unsigned one.

Run: .venv/bin/python -m pytest benches/bench_signing.py -s
Prints the seconds of both and their ratio (signed / unsigned: 1.00 means signing is free), with
the target of at most 1.10. A signed write is the unsigned write plus a keyed BLAKE3 of the
header and the segment checksums and a rewrite of the header; a signed read (with the signature
required) adds reading the trailer once more and the same MAC, all before the payload is read.
The small-result rows show the same for the per-result cost of many tiny results. Figures are
printed, never asserted.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from _report import print_table, race
from ferroflow._core import ReadPolicy, SigningKey, load_blob, read_blob, write_blob

SIZE = 256 * 2**20
SMALL_COUNT = 2000
SERIALIZER = '{"type":"pickle","protocol":5}'
KEY = SigningKey(b"a benchmark's signing key, long enough")
REQUIRED = ReadPolicy(verification_keys=[KEY], require_signature=True)
TARGET = 1.10
HEADER = ["operation", "unsigned ms", "signed ms", "ratio", "target"]


@pytest.fixture(scope="module")
def payload() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, SIZE, dtype=np.uint8)


def row(operation: str, seconds: dict[str, float]) -> list:
    ratio = seconds["signed"] / seconds["unsigned"]
    verdict = f"<= {TARGET:.2f} {'met' if ratio <= TARGET else 'MISSED'}"
    return [operation, 1000 * seconds["unsigned"], 1000 * seconds["signed"], ratio, verdict]


def test_signing_costs_against_unsigned_blobs(tmp_path, payload):
    paths = {"unsigned": tmp_path / "unsigned.ffb", "signed": tmp_path / "signed.ffb"}

    def write(name: str, key: SigningKey | None) -> Callable[[], object]:
        return lambda: write_blob(paths[name], [payload], serializer=SERIALIZER, key="k", signing_key=key)

    rows = []
    seconds = race(
        {"unsigned": write("unsigned", None), "signed": write("signed", KEY)},
        repeat=11,
        after=lambda name: paths[name].unlink(),
    )
    rows.append(row(f"write {SIZE >> 20} MiB", seconds))

    write("unsigned", None)()
    write("signed", KEY)()

    def read(name: str, policy: ReadPolicy | None) -> Callable[[], object]:
        return lambda: read_blob(paths[name], key="k", policy=policy)

    def load_mapped(name: str, policy: ReadPolicy | None) -> Callable[[], object]:
        return lambda: load_blob(paths[name], 0, key="k", policy=policy)

    for label, reader in (("read", read), ("read, mapped", load_mapped)):
        seconds = race({"unsigned": reader("unsigned", None), "signed": reader("signed", REQUIRED)}, 7)
        rows.append(row(f"{label} {SIZE >> 20} MiB", seconds))

    small = pickle_sized(43)
    folders = {name: tmp_path / f"small-{name}" for name in paths}
    for folder in folders.values():
        folder.mkdir()

    def write_many(name: str, key: SigningKey | None) -> Callable[[], object]:
        def run() -> None:
            for index in range(SMALL_COUNT):
                write_blob(
                    folders[name] / str(index),
                    [small],
                    serializer=SERIALIZER,
                    key=str(index),
                    signing_key=key,
                )

        return run

    seconds = race({"unsigned": write_many("unsigned", None), "signed": write_many("signed", KEY)}, 3)
    rows.append(row(f"write {SMALL_COUNT} x 43 B", seconds))

    def read_many(name: str, policy: ReadPolicy | None) -> Callable[[], object]:
        def run() -> None:
            for index in range(SMALL_COUNT):
                load_blob(folders[name] / str(index), 32 * 1024, key=str(index), policy=policy)

        return run

    seconds = race({"unsigned": read_many("unsigned", None), "signed": read_many("signed", REQUIRED)}, 3)
    rows.append(row(f"read {SMALL_COUNT} x 43 B", seconds))

    print_table("signing, keyed BLAKE3 over header and checksums (signed / unsigned time)", HEADER, rows)


def pickle_sized(size: int) -> bytes:
    return bytes(Path(__file__).read_bytes()[:size])
