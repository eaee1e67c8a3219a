"""Persisting and reading back a 256 MiB result, ferroflow's framed blobs against the JSON document
form (pickle, base64, one JSON string: what Prefect 2 wrote) and a plain Python write of the same
bytes. Run: `make bench` or `.venv/bin/python -m pytest benches/bench_results.py -s`.

Figures are printed, never asserted: a missed target is a finding to report, not a failed test.
Peak memory is measured in a fresh subprocess per case (the kernel's resident-set high-water mark,
reset after the value is built), because the core allocates outside Python's allocator where
tracemalloc cannot see it. Linux only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# lzma over 256 MiB of floats takes minutes on 2 cores: longer than the test suite's timeout.
pytestmark = pytest.mark.timeout(1800)

SIZE = 256 * 1024 * 1024
MIB = 1024 * 1024
TARGETS = {
    "write vs plain write": 0.90,
    "write (fsync) vs plain write+fsync": 0.70,
    "write vs JSON document": 5.0,
    "numpy read via map (GB/s)": 2.0,
    "peak extra memory / result size": 1.2,
}

# One script, run in a subprocess per case so that each peak-memory figure starts clean.
CASE_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    from ferroflow.filesystems import LocalFileSystem
    from ferroflow.results import PersistedResult, PersistedResultBlob
    from ferroflow.serializers import CompressedSerializer, resolve_serializer
    from ferroflow.settings import temporary_settings

    kind, serializer_name, mode, folder, size, fsync = sys.argv[1:7]
    size, fsync = int(size), fsync == "1"
    if ":" in serializer_name:  # "compressed/pickle:zstd" -> that codec around pickle
        base, codec = serializer_name.split(":")
        serializer_name = CompressedSerializer(serializer=base.split("/")[1], compressionlib=codec)
    rng = np.random.default_rng(0)
    if kind == "numpy":
        # Smooth floats: compressible like real measurements, unlike random bytes.
        value = np.cumsum(rng.standard_normal(size // 8)).astype(np.float64)
        raw = value
    else:
        # Log-like text: words drawn from a small vocabulary, compressible as real text is.
        words = np.array([w.encode() for w in "the flow task result cache key storage retry "
                          "persisted value array record state completed failed 0 1 2 3 4 5 6 7 8 9".split()])
        picks = rng.integers(0, len(words), size // 5)
        value = (b" ".join(words[picks].tolist()) + b" " * size)[:size]
        raw = value
    def status_mib(field):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError(f"{field} missing from /proc/self/status")
    # Building the value allocated temporaries; reset the high-water mark so that the peak below
    # is the write's own (Linux: writing 5 to clear_refs resets VmHWM).
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    before = status_mib("VmRSS")
    target = os.path.join(folder, "out")
    start = time.perf_counter()
    if mode == "plain":
        with open(target, "wb") as f:
            f.write(raw)
            if fsync:
                f.flush(); os.fsync(f.fileno())
        stored = os.path.getsize(target)
    elif mode == "document":
        serializer = resolve_serializer(serializer_name)
        blob = PersistedResultBlob(serializer=serializer.to_description(), data=serializer.dumps(value))
        with open(target, "w") as f:
            f.write(blob.to_json())
            if fsync:
                f.flush(); os.fsync(f.fileno())
        stored = os.path.getsize(target)
    else:
        storage = LocalFileSystem(basepath=folder)
        with temporary_settings(results_fsync=fsync):
            result = PersistedResult.create(
                value, storage=storage, serializer=resolve_serializer(serializer_name), cache_in_memory=False
            )
        stored = os.path.getsize(os.path.join(folder, result.storage_key))
    write_seconds = time.perf_counter() - start
    extra = status_mib("VmHWM") - before
    read_seconds = None
    if mode == "framed":
        start = time.perf_counter()
        loaded = result.get()
        if kind == "numpy":
            float(loaded.sum())  # touch every page, so a lazy map is really read
        read_seconds = time.perf_counter() - start
    elif mode == "document":
        start = time.perf_counter()
        with open(target, "rb") as f:
            loaded = PersistedResultBlob.from_json(f.read()).load()
        if kind == "numpy":
            float(loaded.sum())
        read_seconds = time.perf_counter() - start
    print(json.dumps({"write": write_seconds, "read": read_seconds, "stored": stored, "extra_mib": extra}))
    """
)


def run_case(tmp_path: Path, kind: str, serializer: str, mode: str, fsync: bool = False) -> dict:
    folder = tmp_path / f"{kind}-{serializer.replace('/', '_')}-{mode}-{int(fsync)}"
    folder.mkdir()
    # Start every case with no dirty pages left by the one before, so that none pays for another's
    # write-back.
    os.sync()
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            CASE_SCRIPT,
            kind,
            serializer,
            mode,
            str(folder),
            str(SIZE),
            "1" if fsync else "0",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    for path in folder.rglob("*"):
        if path.is_file():
            path.unlink()
    return json.loads(completed.stdout.strip().splitlines()[-1])


def mbps(seconds: float | None) -> str:
    return "-" if not seconds else f"{SIZE / MIB / seconds:8.0f}"


@pytest.mark.parametrize("kind", ["bytes", "numpy"])
def test_persist_256_mib(tmp_path, kind):
    rows = []
    plain = run_case(tmp_path, kind, "pickle", "plain")
    plain_fsync = run_case(tmp_path, kind, "pickle", "plain", fsync=True)
    document = run_case(tmp_path, kind, "pickle", "document")
    framed = run_case(tmp_path, kind, "pickle", "framed")
    framed_fsync = run_case(tmp_path, kind, "pickle", "framed", fsync=True)
    rows.append(("plain Python write", plain))
    rows.append(("plain Python write+fsync", plain_fsync))
    rows.append(("JSON document (pickle+base64)", document))
    rows.append(("ferroflow pickle", framed))
    rows.append(("ferroflow pickle, fsync on", framed_fsync))
    for codec in ("zstd", "zlib", "lzma"):
        name = "compressed/pickle" if codec == "lzma" else f"compressed/pickle:{codec}"
        rows.append((f"ferroflow compressed/pickle ({codec})", run_case(tmp_path, kind, name, "framed")))

    print(f"\n256 MiB {kind} result (MiB/s; stored MiB; peak extra MiB during the write)")
    print(f"{'path':38} {'write':>8} {'read':>8} {'stored':>8} {'extra':>8}")
    for label, case in rows:
        print(
            f"{label:38} {mbps(case['write'])} {mbps(case['read'])} "
            f"{case['stored'] / MIB:8.1f} {case['extra_mib']:8.0f}"
        )
    ratios = {
        "write vs plain write": plain["write"] / framed["write"],
        "write (fsync) vs plain write+fsync": plain_fsync["write"] / framed_fsync["write"],
        "write vs JSON document": document["write"] / framed["write"],
        "peak extra memory / result size": framed["extra_mib"] * MIB / SIZE,
    }
    if kind == "numpy":
        ratios["numpy read via map (GB/s)"] = SIZE / framed["read"] / 1e9
    print("ratios (target in brackets):")
    for name, value in ratios.items():
        target = TARGETS[name]
        met = value <= target if name.startswith("peak") else value >= target
        print(
            f"  {name:38} {value:6.2f}  [{'<=' if name.startswith('peak') else '>='} {target}]  {'met' if met else 'MISSED'}"
        )
