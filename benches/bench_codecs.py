"""ferroflow's codecs against the stdlib modules on the same data, and two threads against one.

Run with `make bench` (or `pytest benches/bench_codecs.py -s`). Figures are printed, not asserted.
"""

import bz2
import lzma
import threading
import zlib
from collections.abc import Callable

from _report import mb_per_s, print_table, race
from ferroflow import _core

STDLIB: dict[str, tuple[Callable[[bytes, int], bytes], Callable[[bytes], bytes]]] = {
    "lzma": (lambda data, level: lzma.compress(data, preset=level), lzma.decompress),
    "bz2": (lambda data, level: bz2.compress(data, compresslevel=level), bz2.decompress),
    "zlib": (lambda data, level: zlib.compress(data, level), zlib.decompress),
}

# (codec, level, encoder threads, speed-up over the stdlib we aim for on 2 cores, compression runs)
CASES = [
    ("zlib", 6, 1, 1.3, 3),
    ("bz2", 9, 1, 1.0, 2),
    ("lzma", 6, 2, 1.8, 1),
    ("zstd", 3, 1, None, 3),
    ("zstd", 3, 2, None, 3),
]
# Decompression is fast enough for every codec to take the best of several runs.
DECOMPRESS_RUNS = 3


def codec_rows(payload: bytes, codec: str, level: int, threads: int, target: float | None, runs: int):
    packed = _core.compress(payload, codec, level=level, threads=threads)
    compressors = {"ours": lambda: _core.compress(payload, codec, level=level, threads=threads)}
    decompressors = {"ours": lambda: _core.decompress(packed, codec, size_hint=len(payload))}
    stdlib_packed = None
    if codec in STDLIB:
        stdlib_compress, stdlib_decompress = STDLIB[codec]
        stdlib_packed = stdlib_compress(payload, level)
        compressors["stdlib"] = lambda: stdlib_compress(payload, level)
        decompressors["stdlib"] = lambda: stdlib_decompress(stdlib_packed)
    for step, seconds in [
        ("compress", race(compressors, runs)),
        ("decompress", race(decompressors, DECOMPRESS_RUNS)),
    ]:
        ours = mb_per_s(len(payload), seconds["ours"])
        row = [codec, level, threads, step, ours, "-", "-", len(payload) / len(packed), "-", ""]
        if stdlib_packed is not None:
            stdlib = mb_per_s(len(payload), seconds["stdlib"])
            row[5:7] = [stdlib, ours / stdlib]
            row[8] = len(payload) / len(stdlib_packed)
            if target is not None and step == "compress":
                row[9] = f">= {target}x " + ("met" if ours / stdlib >= target else "MISSED")
        yield row


def test_codecs_against_the_stdlib(records_payload):
    rows = [row for case in CASES for row in codec_rows(records_payload, *case)]
    print_table(
        f"Codecs on {len(records_payload) / 2**20:.1f} MiB of pickled records (MB/s of uncompressed data)",
        [
            "codec",
            "level",
            "threads",
            "step",
            "ours MB/s",
            "stdlib MB/s",
            "speed-up",
            "ratio ours",
            "ratio stdlib",
            "target",
        ],
        rows,
    )


def test_two_threads_compressing_at_once_against_one_after_the_other(records_payload):
    halves = [records_payload[: len(records_payload) // 2], records_payload[len(records_payload) // 2 :]]
    rows = []
    # zstd gets through a half in tens of milliseconds, where thread start-up and scheduling noise
    # would swamp the figure: it compresses each half several times, so every job lasts long
    # enough to measure.
    for codec, level, rounds in [("zlib", 6, 1), ("bz2", 9, 1), ("lzma", 1, 1), ("zstd", 3, 8)]:

        def compress_half(half, codec=codec, level=level, rounds=rounds):
            for _ in range(rounds):
                _core.compress(half, codec, level=level)

        def one_after_the_other():
            for half in halves:
                compress_half(half)

        def two_at_once():
            workers = [threading.Thread(target=compress_half, args=(half,)) for half in halves]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()

        seconds = race({"sequential": one_after_the_other, "threads": two_at_once}, repeat=3)
        speedup = seconds["sequential"] / seconds["threads"]
        rows.append(
            [
                codec,
                level,
                seconds["sequential"],
                seconds["threads"],
                speedup,
                "met" if speedup >= 1.6 else "MISSED",
            ]
        )
    print_table(
        "Two Python threads compressing one half each vs one thread doing both (GIL released)",
        ["codec", "level", "sequential s", "2 threads s", "speed-up", "target >= 1.6x"],
        rows,
    )
