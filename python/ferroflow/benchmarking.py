"""Measuring serializers on the user's own data: the logic behind `ferroflow bench`.

For one input (a pickle file, a NumPy `.npy` file, a folder of files or a built-in sample) and a
grid of cases (serializer x codec x level), each case runs in a child process (one for all cases where

1. loads the input value (not timed);
2. *dump*, `repeat` times: `PersistedResult.create(value, ...)` into a temporary folder, i.e.
   `serializer.dump_segments(value)` and the core's framed, atomic `write_blob` (no fsync; lzma
   and zstd on all cores, as the engine persists results);
3. *load*, `repeat` times: `PersistedResult.get()` on a fresh reference, i.e. the core's
   `map_blob` (every segment's checksum verified, compressed segments decompressed) and
   `serializer.load_segments(segments)`.

The file was just written, so loads read it from the OS page cache: the figures measure
ferroflow, not the disk. Throughput (MB/s, 10**6 bytes per second) is the input's size divided by
the best of the repeats, so every case of one input is measured against the same size. The input
size is the file's size, the folder's total, or a sample's pickled size.

Peak memory is the child's resident set above what it held once the value was loaded, for each
phase: tracemalloc cannot see the Rust core's allocations, so it is read from the OS (Linux: the
VmHWM high-water mark, reset before each phase; elsewhere ru_maxrss, which cannot be reset, so
the load figure is only seen when it exceeds the dump's). The loaded value replaces the input
value during the load phase, so one copy of the data is never counted.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import gc
import math
import multiprocessing
import os
import pickle
import random
import re
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from ferroflow.exceptions import SerializationError
from ferroflow.serializers import (
    CORE_CODECS,
    CompressedSerializer,
    JSONSerializer,
    Serializer,
    known_serializer_types,
    resolve_serializer,
)

MB = 10**6

#: "low", "default" and "high" levels of each core codec: the fastest level, the codec's own
#: default, and a strong level that still runs at a usable speed on large data (zstd 19 and
#: lzma's extreme presets take minutes per GiB; ask for them with --level).
CODEC_LEVELS: dict[str, dict[str, int]] = {
    "zstd": {"low": 1, "default": 3, "high": 12},
    "zlib": {"low": 1, "default": 6, "high": 9},
    "bz2": {"low": 1, "default": 9, "high": 9},
    "lzma": {"low": 0, "default": 6, "high": 9},
}
LEVEL_NAMES = ("low", "default", "high")
NO_CODEC = "none"
CODECS = (NO_CODEC, *CORE_CODECS)
#: The quick grid `ferroflow bench` measures unless asked for the full one: every codec at its
#: fastest level, which is where each codec's trade-off shows, and zstd (the codec most results
#: should use) at its default too. The full grid adds every codec's default and high levels.
QUICK_LEVELS: dict[str, tuple[str, ...]] = {
    "zstd": ("low", "default"),
    "zlib": ("low",),
    "bz2": ("low",),
    "lzma": ("low",),
}
SAMPLE_KINDS = ("text", "records", "floats", "random")
RANKINGS = ("dump", "load", "ratio", "balanced")
#: A case whose two fastest runs of a phase differ by more than this (relative to the fastest)
#: is reported as noisy: the best time is then not confirmed by a second run.
NOISE_THRESHOLD = 0.25
#: Without an explicit repeat count, each phase runs until its runs total this many seconds, at
#: least twice (so that two runs can confirm each other) unless one run alone takes longer than
#: `SINGLE_RUN_SECONDS`, and at most `AUTO_MAX_RUNS` times.
AUTO_BUDGET_SECONDS = 0.5
SINGLE_RUN_SECONDS = 0.5
AUTO_MAX_RUNS = 3

Ranking = Literal["dump", "load", "ratio", "balanced"]


class BenchmarkError(ValueError):
    """A benchmark cannot run as asked; the message says what to change."""


# ---------------------------------------------------------------------------------------------
# Sizes

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}
# A sample is held as a value, its pickle, a loaded copy and a blob at once, with their overheads.
SAMPLE_MEMORY_FACTOR = 4
_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes in a size such as "64MiB", "500KB", "1.5GiB" or "4096" (K/M/G alone are binary)."""
    match = _SIZE_PATTERN.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise BenchmarkError(
            f"Cannot read the size {text!r}: write a number and a unit, e.g. 64MiB, 500KB, "
            "1.5GiB or 4096 (bytes). Units: B, KB, MB, GB (powers of 1000), KiB, MiB, GiB (of 1024)."
        )
    size = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if size <= 0:
        raise BenchmarkError(f"The size {text!r} is zero; give a positive size, e.g. 16MiB.")
    return size


def check_sample_size(size: int) -> int:
    """`size` if a sample that large fits in this machine's memory a few times over (the sample,
    its pickle, a loaded copy and the compressed blob are held at once), else a BenchmarkError."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # not a POSIX system: no bound known
        return size
    if size * SAMPLE_MEMORY_FACTOR > memory:
        raise BenchmarkError(
            f"A sample of {format_bytes(size)} would not fit in this machine's memory "
            f"({format_bytes(memory)}; a sample needs about {SAMPLE_MEMORY_FACTOR}x its size). "
            f"Give a --size of at most {format_bytes(memory // SAMPLE_MEMORY_FACTOR)}."
        )
    return size


def format_bytes(size: float) -> str:
    """A size for people: "1.5 KiB", "256.0 MiB"."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# Built-in samples: data that behaves like real results, seeded so runs compare

_WORDS = (
    "flow task result cache storage retry state value record batch window sensor price order "
    "customer region error warning request latency upload download checkpoint metric"
).split()


def make_sample(kind: str, size: int) -> Any:
    """About `size` bytes (pickled) of a sample value: "text" (log lines, a str), "records" (a list
    of dicts: ids, names, categories, amounts), "floats" (a smooth NumPy float64 series, like
    measurements) or "random" (incompressible bytes)."""
    makers: dict[str, Callable[[int], Any]] = {
        "text": _text_sample,
        "records": _records_sample,
        "floats": _floats_sample,
        "random": lambda n: random.Random(7).randbytes(n),
    }
    if kind not in makers:
        raise BenchmarkError(f"Unknown sample {kind!r}; choose one of {', '.join(SAMPLE_KINDS)}.")
    return makers[kind](size)


def _text_sample(size: int) -> str:
    rng = random.Random(1)
    lines: list[str] = []
    length = 0
    while length < size:
        words = " ".join(rng.choices(_WORDS, k=rng.randint(4, 12)))
        line = f"2026-11-25T12:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z {rng.choice(('INFO', 'WARN', 'DEBUG'))} worker-{rng.randrange(16)} {words} id={rng.randrange(10**6)}\n"
        lines.append(line)
        length += len(line)
    return "".join(lines)[:size]


# A pickled record of _records_sample takes about this many bytes (measured; pickle memoizes keys).
_RECORD_PICKLED_BYTES = 54


def _records_sample(size: int) -> list[dict[str, Any]]:
    rng = random.Random(2)
    regions = ("eu-west", "eu-north", "us-east", "us-west", "ap-south")
    return [
        {
            "id": index,
            "customer": f"customer-{rng.randrange(20_000):05d}",
            "region": rng.choice(regions),
            "item": rng.choice(_WORDS),
            "quantity": rng.randint(1, 20),
            "amount": round(rng.lognormvariate(3, 1), 2),
            "paid": rng.random() < 0.93,
        }
        for index in range(max(1, size // _RECORD_PICKLED_BYTES))
    ]


def _floats_sample(size: int) -> Any:
    numpy = _import_numpy("the 'floats' sample")
    rng = numpy.random.default_rng(3)
    # A random walk rounded to 4 decimals: compressible the way real measurements are.
    return numpy.round(numpy.cumsum(rng.standard_normal(max(1, size // 8))), 4)


def _import_numpy(purpose: str) -> Any:
    try:
        import numpy
    except ImportError as exc:
        raise BenchmarkError(f"NumPy is needed for {purpose}: pip install numpy") from exc
    return numpy


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where a benchmark's value comes from: a pickle file, a `.npy` file or a folder of files
    (loaded as {relative path: bytes}). Built-in samples are written to a pickle file first."""

    kind: Literal["pickle", "npy", "folder"]
    path: Path
    label: str
    #: Bytes of the input: the file's size, or the total of the folder's files.
    size: int

    def load(self) -> Any:
        """The value to measure. Unpickling runs the file's code: benchmark files you trust."""
        try:
            return self._load()
        except BenchmarkError:
            raise
        except Exception as exc:  # anything unpickling can raise, e.g. a class that is not installed
            raise BenchmarkError(
                f"Cannot load the {self.label}: {type(exc).__name__}: {exc}. Check that the file is "
                "complete and that the libraries its objects need are installed here."
            ) from exc

    def _load(self) -> Any:
        if self.kind == "npy":
            return _import_numpy(f"reading {self.path}").load(self.path, allow_pickle=False)
        if self.kind == "folder":
            return {str(path.relative_to(self.path)): path.read_bytes() for path in _folder_files(self.path)}
        with self.path.open("rb") as file:
            return pickle.load(file)


def source_from_path(path: str | os.PathLike[str]) -> DataSource:
    """The input at `path`: a folder, a `.npy` file, or any other file read as a pickle."""
    location = Path(path)
    if not location.exists():
        raise BenchmarkError(
            f"{str(location)!r} does not exist. Give a pickle file, a .npy file or a folder, "
            "or use a built-in sample: --sample records."
        )
    if not (location.is_dir() or location.is_file()):
        raise BenchmarkError(
            f"{str(location)!r} is neither a regular file nor a folder (a FIFO, socket or device); "
            "give a pickle file, a .npy file or a folder."
        )
    if location.is_dir():
        size = sum(path.stat().st_size for path in _folder_files(location))
        if size == 0:
            raise BenchmarkError(
                f"The folder {str(location)!r} holds no data to benchmark (no files, or only empty ones)."
            )
        return DataSource("folder", location, f"folder {location}", size)
    if location.suffix.lower() == ".npy":
        return DataSource("npy", location, f"NumPy file {location}", location.stat().st_size)
    _check_is_pickle(location)
    return DataSource("pickle", location, f"pickle file {location}", location.stat().st_size)


def _check_is_pickle(path: Path) -> None:
    with path.open("rb") as file:
        start = file.read(2)
    # Protocol 2+ pickles open with PROTO (0x80) and the protocol number.
    if len(start) < 2 or start[0] != 0x80 or not 2 <= start[1] <= 5:
        raise BenchmarkError(
            f"{str(path)!r} is not a pickle file (protocol 2 or later). Give a pickle file, a .npy "
            "file or a folder of files; to measure a file's raw bytes, put it in a folder."
        )


def sample_source(kind: str, size: int, folder: Path) -> DataSource:
    """A built-in sample of about `size` bytes, written to a pickle file in `folder`."""
    value = make_sample(kind, size)
    path = folder / f"sample-{kind}.pickle"
    with path.open("wb") as file:
        pickle.dump(value, file, protocol=5)
    return DataSource("pickle", path, f"sample {kind!r}", path.stat().st_size)


def _folder_files(folder: Path) -> Iterator[Path]:
    return (path for path in sorted(folder.rglob("*")) if path.is_file())


# ---------------------------------------------------------------------------------------------
# Cases


@dataclasses.dataclass(frozen=True)
class Case:
    """One serializer with one codec at one level (`codec="none"`: no compression)."""

    serializer: str
    codec: str = NO_CODEC
    level: int | None = None

    @property
    def label(self) -> str:
        if self.codec == NO_CODEC:
            return self.serializer
        level = "" if self.level is None else f":{self.level}"
        return f"{self.serializer}+{self.codec}{level}"

    def build_serializer(self) -> Serializer:
        inner = resolve_serializer(self.serializer)
        if self.codec == NO_CODEC:
            return inner
        return CompressedSerializer(serializer=inner, compressionlib=self.codec, level=self.level)


def benchmarkable_serializers() -> list[str]:
    """Serializer types the grid combines with codecs: every known type but the compressed ones."""
    return [name for name in known_serializer_types() if not name.startswith("compressed")]


def check_serializers(names: Sequence[str]) -> None:
    known = benchmarkable_serializers()
    for name in names:
        if name in known:
            continue
        hint = (
            " Compression is chosen with --codec, e.g. --serializer pickle --codec lzma."
            if name.startswith("compressed")
            else ""
        )
        raise BenchmarkError(f"Unknown serializer {name!r}. Known serializers: {', '.join(known)}.{hint}")


def parse_levels(texts: Sequence[str]) -> list[int | str]:
    """--level values: integers, or the names low/default/high (per codec, see CODEC_LEVELS)."""
    levels: list[int | str] = []
    for text in texts:
        if text in LEVEL_NAMES:
            levels.append(text)
            continue
        try:
            level = int(text)
        except ValueError:
            raise BenchmarkError(
                f"Cannot read the level {text!r}: give an integer (e.g. 3) or one of "
                f"{', '.join(LEVEL_NAMES)}."
            ) from None
        if not -(2**31) <= level < 2**31:
            raise BenchmarkError(
                f"The level {text} is out of range: every codec's levels lie between -131072 "
                "(zstd's fastest) and 22 (zstd's strongest)."
            )
        levels.append(level)
    return levels


def case_grid(
    serializers: Sequence[str], codecs: Sequence[str] = CODECS, levels: Sequence[int | str] = LEVEL_NAMES
) -> list[Case]:
    """Every serializer x codec x level, without duplicates (bz2's default is also its high)."""
    for codec in codecs:
        if codec not in CODECS:
            raise BenchmarkError(f"Unknown codec {codec!r}. Known codecs: {', '.join(CODECS)}.")
    cases: list[Case] = []
    for serializer in serializers:
        for codec in codecs:
            for level in _codec_levels(codec, levels):
                case = Case(serializer, codec, level)
                if case not in cases:
                    cases.append(case)
    return cases


def quick_grid(serializers: Sequence[str], codecs: Sequence[str] = CODECS) -> list[Case]:
    """The cases measured by default: each serializer uncompressed and with each codec at the
    levels of `QUICK_LEVELS`."""
    cases: list[Case] = []
    for codec in codecs:
        if codec not in CODECS:
            raise BenchmarkError(f"Unknown codec {codec!r}. Known codecs: {', '.join(CODECS)}.")
    for serializer in serializers:
        for codec in codecs:
            levels = () if codec == NO_CODEC else QUICK_LEVELS[codec]
            cases.extend(case for case in case_grid([serializer], [codec], levels) if case not in cases)
    return cases


def _codec_levels(codec: str, levels: Sequence[int | str]) -> list[int | None]:
    if codec == NO_CODEC:
        return [None]
    return [CODEC_LEVELS[codec][level] if isinstance(level, str) else level for level in levels]


def choose_serializers(source: DataSource, requested: Sequence[str]) -> tuple[list[str], str | None]:
    """The serializers to measure, and a note when json was left out of the default choice.

    Asked for explicitly, a serializer that cannot write the data is an error; by default
    (pickle and json) json is measured only where the data allows.
    """
    check_serializers(requested)
    chosen = list(requested) or ["pickle", "json"]
    if "json" not in chosen:
        return chosen, None
    refusal = _json_refusal(source.load())
    if refusal is None:
        return chosen, None
    if requested:
        raise BenchmarkError(f"The json serializer cannot write this data. {refusal}")
    chosen.remove("json")
    # The refusal's first sentence names the value: "Cannot serialize ... as JSON: result is a ...".
    what = refusal.partition(": ")[2].partition(". ")[0]
    return chosen, f"json left out: it cannot write this data ({what})."


def _json_refusal(value: Any) -> str | None:
    try:
        JSONSerializer().dumps(value)
    except SerializationError as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------------------------------------
# Measuring one case (in a child process)


@dataclasses.dataclass
class CaseResult:
    """What one case measured. Throughputs use `input_bytes` and the best of the repeats."""

    case: Case
    input_bytes: int
    stored_bytes: int
    dump_seconds: list[float]
    load_seconds: list[float]
    dump_peak_bytes: int
    load_peak_bytes: int

    @property
    def dump_mb_s(self) -> float:
        return self.input_bytes / min(self.dump_seconds) / MB

    @property
    def load_mb_s(self) -> float:
        return self.input_bytes / min(self.load_seconds) / MB

    @property
    def ratio(self) -> float:
        """Input size over stored size (the whole file, header included)."""
        return self.input_bytes / self.stored_bytes

    @property
    def spread(self) -> float | None:
        """How far the two fastest runs of a phase are apart, relative to the fastest (the larger
        of dump and load); None when no phase ran twice."""
        spreads = [
            spread
            for spread in (_relative_spread(self.dump_seconds), _relative_spread(self.load_seconds))
            if spread is not None
        ]
        return max(spreads) if spreads else None

    @property
    def noisy(self) -> bool:
        """Whether the best time of a phase is contradicted by its next best: on a busy machine
        runs slow down at random, so two close runs confirm the best one."""
        return self.spread is not None and self.spread > NOISE_THRESHOLD

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.case.label,
            "serializer": self.case.serializer,
            "codec": self.case.codec,
            "level": self.case.level,
            "input_bytes": self.input_bytes,
            "stored_bytes": self.stored_bytes,
            "ratio": self.ratio,
            "dump_mb_s": self.dump_mb_s,
            "load_mb_s": self.load_mb_s,
            "dump_seconds": self.dump_seconds,
            "load_seconds": self.load_seconds,
            "dump_peak_bytes": self.dump_peak_bytes,
            "load_peak_bytes": self.load_peak_bytes,
            "spread": self.spread,
            "noisy": self.noisy,
        }


def _relative_spread(seconds: Sequence[float]) -> float | None:
    if len(seconds) < 2:
        return None
    fastest, second = sorted(seconds)[:2]
    return (second - fastest) / fastest


class PeakMemory:
    """This process's peak resident memory during a phase, above its memory when it began."""

    def __init__(self) -> None:
        self._start = 0
        self._resettable = _reset_high_water_mark()

    def start(self) -> None:
        if self._resettable:
            _reset_high_water_mark()
            self._start = _proc_status_bytes("VmRSS")
        else:
            self._start = _max_rss_bytes()

    def extra_bytes(self) -> int:
        peak = _proc_status_bytes("VmHWM") if self._resettable else _max_rss_bytes()
        return max(0, peak - self._start)


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as file:  # "5": reset VmHWM (Linux 4.0+)
            file.write("5")
        return _proc_status_bytes("VmHWM") > 0
    except OSError:
        return False


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    return 0


def _max_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def _enough_runs(seconds: Sequence[float], repeat: int | None) -> bool:
    """Whether a phase has run enough: `repeat` times if given, else as AUTO_* say."""
    if repeat is not None:
        return len(seconds) >= repeat
    if len(seconds) >= AUTO_MAX_RUNS:
        return True
    if len(seconds) == 1:
        return seconds[0] > SINGLE_RUN_SECONDS
    return sum(seconds) >= AUTO_BUDGET_SECONDS


def measure_case(source: DataSource, case: Case, repeat: int | None, folder: str) -> CaseResult:
    """Time dumps, then loads of the source's value (module docstring): `repeat` of each, or
    with `repeat=None` as many as `_enough_runs` asks for."""
    from ferroflow.filesystems import LocalFileSystem
    from ferroflow.results import PersistedResult
    from ferroflow.settings import temporary_settings

    value = source.load()
    serializer = case.build_serializer()
    storage = LocalFileSystem(basepath=folder)
    # Warm up on a tiny value: first-call imports and set-up are not what is measured.
    PersistedResult.create([b"warm-up"], storage=storage, serializer=serializer, storage_key="warm-up").get()
    storage.delete("warm-up")
    memory = PeakMemory()
    dump_seconds: list[float] = []
    gc.collect()
    memory.start()
    result: PersistedResult | None = None
    with temporary_settings(results_fsync=False):
        attempt = 0
        while not _enough_runs(dump_seconds, repeat):
            attempt += 1
            # A new file each time, as the engine writes (replacing a file would also time the
            # release of the old one); the previous file is removed untimed.
            previous = result
            started = time.perf_counter()
            result = PersistedResult.create(
                value,
                storage=storage,
                serializer=serializer,
                storage_key=f"bench-{attempt}",
                cache_in_memory=False,
            )
            dump_seconds.append(time.perf_counter() - started)
            if previous is not None:
                storage.delete(previous.storage_key)
    assert result is not None  # at least one run
    dump_peak = memory.extra_bytes()
    stored = os.path.getsize(storage.path_of(result.storage_key))
    del value
    gc.collect()
    load_seconds: list[float] = []
    memory.start()
    while not _enough_runs(load_seconds, repeat):
        reference = PersistedResult.from_reference(result.to_reference(), cache_in_memory=False)
        started = time.perf_counter()
        loaded = reference.get()
        load_seconds.append(time.perf_counter() - started)
        del loaded
    storage.delete(result.storage_key)  # the folder is the next case's
    return CaseResult(
        case=case,
        input_bytes=source.size,
        stored_bytes=stored,
        dump_seconds=dump_seconds,
        load_seconds=load_seconds,
        dump_peak_bytes=dump_peak,
        load_peak_bytes=memory.extra_bytes(),
    )


def run_cases(
    source: DataSource,
    cases: Iterable[Case],
    *,
    repeat: int | None = None,
    on_start: Callable[[Case], None] | None = None,
) -> Iterator[CaseResult]:
    """Measure the cases in a child process, one after the other (never two at once: they would
    compete for the cores), yielding each result as it is done. `repeat`: runs of each phase
    (None: as many as needed to confirm the best, see `_enough_runs`).

    Where the peak-memory high-water mark can be reset (Linux), one child measures every case,
    each phase's peak taken from a reset mark; elsewhere each case gets a fresh child, whose
    peak cannot be reset. Starting a Python process per case would cost about a second each."""
    if repeat is not None and repeat < 1:
        raise BenchmarkError(f"--repeat must be at least 1, not {repeat}.")
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter, not a copy of this one
    # Resetting the mark here too is harmless: this process's peak is not reported.
    one_child = _reset_high_water_mark()
    with tempfile.TemporaryDirectory(prefix="ferroflow-bench-") as folder, contextlib.ExitStack() as children:
        pool: concurrent.futures.ProcessPoolExecutor | None = None
        for case in cases:
            if on_start is not None:
                on_start(case)
            if pool is None or not one_child:
                children.close()  # the previous case's child, if any
                pool = children.enter_context(
                    concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=spawn)
                )
            try:
                yield pool.submit(measure_case, source, case, repeat, folder).result()
            except concurrent.futures.process.BrokenProcessPool as exc:
                raise BenchmarkError(
                    f"The process measuring {case.label} died (out of memory?). Try a smaller "
                    "input or --size, or leave that case out with --codec/--level."
                ) from exc
            except BenchmarkError:
                raise
            except ValueError as exc:  # e.g. a level the codec does not have, data a serializer refuses
                raise BenchmarkError(f"Cannot measure {case.label} on {source.label}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Reporting


def rank(results: Sequence[CaseResult], by: Ranking) -> list[CaseResult]:
    """Best first. "balanced": the geometric mean of dump MB/s, load MB/s and ratio, each
    relative to the best of the results, so no single figure dominates."""
    if by not in RANKINGS:
        raise BenchmarkError(f"Unknown ranking {by!r}; choose one of {', '.join(RANKINGS)}.")
    return sorted(results, key=lambda result: score(result, results, by), reverse=True)


def score(result: CaseResult, results: Sequence[CaseResult], by: Ranking) -> float:
    if by == "dump":
        return result.dump_mb_s
    if by == "load":
        return result.load_mb_s
    if by == "ratio":
        return result.ratio
    best_dump = max(r.dump_mb_s for r in results)
    best_load = max(r.load_mb_s for r in results)
    best_ratio = max(r.ratio for r in results)
    return math.prod(
        (result.dump_mb_s / best_dump, result.load_mb_s / best_load, result.ratio / best_ratio)
    ) ** (1 / 3)


def report(
    source: DataSource, results: Sequence[CaseResult], by: Ranking, repeat: int | None
) -> dict[str, Any]:
    """The JSON document `ferroflow bench --json` prints."""
    ranked = rank(results, by)
    return {
        "input": {"kind": source.kind, "label": source.label, "bytes": source.size},
        "repeat": "auto" if repeat is None else repeat,
        "rank": by,
        "noise_threshold": NOISE_THRESHOLD,
        "machine": machine_description(),
        "results": [{**result.to_dict(), "score": score(result, results, by)} for result in ranked],
    }


def machine_description() -> dict[str, Any]:
    from ferroflow.version import __version__

    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "ferroflow": __version__,
    }


def check_plotting() -> None:
    """Raise a BenchmarkError saying how to install matplotlib when it is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise BenchmarkError(
            "--plot needs matplotlib, an optional extra: pip install 'ferroflow[plot]'"
        ) from exc


def plot(results: Sequence[CaseResult], path: str | os.PathLike[str], title: str) -> None:
    """Draw each case as a row, best first (balanced ranking): its dump and load throughput as two
    bars of different colours side by side (log scale), and its compression ratio in a second
    panel. Case names label the rows, so they never overlap however close the figures are."""
    check_plotting()
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")  # files only: no display needed
    from matplotlib import pyplot

    ranked = list(reversed(rank(results, "balanced")))  # matplotlib draws row 0 at the bottom
    rows = range(len(ranked))
    height = 0.38
    figure, (speed, ratio) = pyplot.subplots(
        1,
        2,
        sharey=True,
        figsize=(11, 1.2 + 0.42 * len(ranked)),
        gridspec_kw={"width_ratios": [3, 1.2]},
    )
    dump_bars = speed.barh(
        [row + height / 2 for row in rows],
        [r.dump_mb_s for r in ranked],
        height,
        color="#1f77b4",
        label="dump (write)",
    )
    load_bars = speed.barh(
        [row - height / 2 for row in rows],
        [r.load_mb_s for r in ranked],
        height,
        color="#ff7f0e",
        label="load (read)",
    )
    speed.bar_label(dump_bars, labels=[f"{r.dump_mb_s:,.0f}" for r in ranked], padding=3, fontsize=8)
    speed.bar_label(load_bars, labels=[f"{r.load_mb_s:,.0f}" for r in ranked], padding=3, fontsize=8)
    speed.set_xscale("log")
    fastest = max(max(r.dump_mb_s, r.load_mb_s) for r in ranked)
    slowest = min(min(r.dump_mb_s, r.load_mb_s) for r in ranked)
    speed.set_xlim(slowest / 2, fastest * 3)  # room for the figures at the bars' ends
    speed.set_xlabel("throughput, MB/s of the input (log scale; longer is faster)")
    speed.set_yticks(list(rows), [r.case.label for r in ranked], fontsize=9)
    speed.grid(True, axis="x", which="both", alpha=0.3)
    # Plain numbers (10, 100, 1,000), not powers of ten.
    speed.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:,.0f}"))
    speed.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    # Above the bars, where it can hide none of them.
    speed.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=2, frameon=False, fontsize=9)

    ratio_bars = ratio.barh(list(rows), [r.ratio for r in ranked], 0.6, color="#2ca02c")
    ratio.bar_label(ratio_bars, labels=[f"{r.ratio:.2f}" for r in ranked], padding=3, fontsize=8)
    ratio.set_xlim(0, max(r.ratio for r in ranked) * 1.25)
    ratio.set_xlabel("compression ratio (input / stored)")
    ratio.grid(True, axis="x", alpha=0.3)

    figure.suptitle(f"{title} (best first, balanced ranking)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)


__all__ = [
    "BenchmarkError",
    "Case",
    "CaseResult",
    "DataSource",
    "case_grid",
    "make_sample",
    "quick_grid",
    "measure_case",
    "parse_size",
    "plot",
    "rank",
    "report",
    "run_cases",
    "sample_source",
    "source_from_path",
]
