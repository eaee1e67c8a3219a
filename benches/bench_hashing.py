"""ferroflow's hashes against hashlib's md5 and sha256 on the same buffer.

Run with `make bench` (or `pytest benches/bench_hashing.py -s`). Figures are printed, not asserted.
"""

import hashlib

import numpy as np

from _report import mb_per_s, print_table, race
from ferroflow import _core

BUFFER_MIB = 256


def test_hashes_against_hashlib():
    # Hash speed does not depend on content; random bytes keep any shortcut out.
    buffer = np.random.default_rng(1).integers(0, 256, size=BUFFER_MIB * 2**20, dtype=np.uint8)
    candidates = {
        f"ferroflow {name}": (lambda name=name: _core.hash_buffers([buffer], name))
        for name in _core.HASH_ALGORITHMS
    }
    candidates["hashlib md5"] = lambda: hashlib.md5(buffer).digest()
    candidates["hashlib sha256"] = lambda: hashlib.sha256(buffer).digest()
    seconds = race(candidates, repeat=3)
    md5_speed = mb_per_s(buffer.nbytes, seconds["hashlib md5"])
    rows = []
    for name, elapsed in seconds.items():
        speed = mb_per_s(buffer.nbytes, elapsed)
        target = ""
        if name == "ferroflow blake3":
            target = ">= 5x md5 and >= 4000 MB/s " + (
                "met" if speed >= 5 * md5_speed and speed >= 4000 else "MISSED"
            )
        rows.append([name, speed, speed / md5_speed, target])
    print_table(f"Hashing one {BUFFER_MIB} MiB buffer", ["hash", "MB/s", "x md5", "target"], rows)


def test_small_buffers_through_one_hasher():
    # Cache keys hash many small pieces: the per-call cost matters more than raw speed.
    pieces = [bytes([i % 256]) * 200 for i in range(20_000)]
    total = sum(map(len, pieces))

    def ferroflow_update_many():
        hasher = _core.Hasher()
        hasher.update_many(pieces)
        return hasher.digest()

    def ferroflow_update_each():
        hasher = _core.Hasher()
        for piece in pieces:
            hasher.update(piece)
        return hasher.digest()

    def hashlib_sha256_each():
        hasher = hashlib.sha256()
        for piece in pieces:
            hasher.update(piece)
        return hasher.digest()

    seconds = race(
        {
            "ferroflow blake3 update_many": ferroflow_update_many,
            "ferroflow blake3 update per piece": ferroflow_update_each,
            "hashlib sha256 update per piece": hashlib_sha256_each,
        },
        repeat=3,
    )
    rows = [
        [name, mb_per_s(total, elapsed), elapsed / len(pieces) * 1e9] for name, elapsed in seconds.items()
    ]
    print_table(f"{len(pieces)} pieces of 200 bytes", ["way", "MB/s", "ns per piece"], rows)
