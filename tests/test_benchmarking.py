import dataclasses
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from ferroflow import benchmarking
from ferroflow.benchmarking import (
    BenchmarkError,
    Case,
    CaseResult,
    DataSource,
    PeakMemory,
    case_grid,
    choose_serializers,
    measure_case,
    parse_levels,
    parse_size,
    rank,
    source_from_path,
)

KIB = 1024


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4096", 4096),
        ("64MiB", 64 * 2**20),
        ("64 mib", 64 * 2**20),
        ("500KB", 500_000),
        ("1.5GiB", int(1.5 * 2**30)),
        ("2M", 2 * 2**20),
        ("10b", 10),
    ],
)
def test_sizes_are_read_with_their_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "64 MiBs", "-5MiB", "1e6", "sixty"])
def test_a_bad_size_says_how_to_write_one(text):
    with pytest.raises(BenchmarkError, match="e.g. 64MiB"):
        parse_size(text)


def test_a_zero_size_is_refused():
    with pytest.raises(BenchmarkError, match="zero"):
        parse_size("0KiB")


@pytest.mark.parametrize("kind", benchmarking.SAMPLE_KINDS)
def test_each_sample_pickles_to_about_the_size_asked_for(kind):
    value = benchmarking.make_sample(kind, 256 * KIB)
    assert 0.8 < len(pickle.dumps(value, protocol=5)) / (256 * KIB) < 1.25


def test_samples_are_the_same_on_every_run():
    first = benchmarking.make_sample("records", 32 * KIB)
    assert first == benchmarking.make_sample("records", 32 * KIB)


def test_an_unknown_sample_lists_the_known_ones():
    with pytest.raises(BenchmarkError, match="text, records, floats, random"):
        benchmarking.make_sample("images", 1024)


def test_a_missing_path_is_an_error_naming_it(tmp_path):
    with pytest.raises(BenchmarkError, match="nowhere.pickle' does not exist"):
        source_from_path(tmp_path / "nowhere.pickle")


def test_a_file_that_is_not_a_pickle_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("plain text")
    with pytest.raises(BenchmarkError, match="is not a pickle file"):
        source_from_path(path)


def test_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(BenchmarkError, match="holds no data"):
        source_from_path(tmp_path)


def test_each_input_kind_loads_its_value(tmp_path):
    (tmp_path / "value.pickle").write_bytes(pickle.dumps({"a": [1, 2]}, protocol=5))
    np.save(tmp_path / "array.npy", np.arange(10))
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.bin").write_bytes(b"1" * 10)
    (folder / "sub" / "two.bin").write_bytes(b"22")

    assert source_from_path(tmp_path / "value.pickle").load() == {"a": [1, 2]}
    npy = source_from_path(tmp_path / "array.npy")
    assert npy.kind == "npy" and npy.load().tolist() == list(range(10))
    listing = source_from_path(folder)
    assert listing.size == 12
    assert listing.load() == {"one.bin": b"1" * 10, "sub/two.bin": b"22"}


def test_the_default_grid_covers_every_codec_at_three_levels_without_duplicates():
    cases = case_grid(["pickle"])
    assert Case("pickle") in cases
    assert Case("pickle", "zstd", 1) in cases and Case("pickle", "zstd", 12) in cases
    assert Case("pickle", "lzma", 0) in cases
    assert len(cases) == len(set(cases)) == 1 + 3 + 3 + 2 + 3  # bz2's default level is its highest


def test_levels_narrow_the_grid_by_name_or_number():
    cases = case_grid(["json"], ["none", "zlib", "zstd"], parse_levels(["low", "7"]))
    assert [case.label for case in cases] == [
        "json",
        "json+zlib:1",
        "json+zlib:7",
        "json+zstd:1",
        "json+zstd:7",
    ]


def test_a_bad_level_or_codec_is_an_error():
    with pytest.raises(BenchmarkError, match="low, default, high"):
        parse_levels(["fast"])
    with pytest.raises(BenchmarkError, match="Known codecs: none, lzma, bz2, zlib, zstd"):
        case_grid(["pickle"], ["snappy"])


def test_an_unknown_serializer_lists_the_known_ones():
    with pytest.raises(BenchmarkError, match="Unknown serializer 'yaml'. Known serializers: json, pickle"):
        benchmarking.check_serializers(["yaml"])
    with pytest.raises(BenchmarkError, match="--codec"):
        benchmarking.check_serializers(["compressed/pickle"])


def _pickle_source(tmp_path, value, name="value.pickle"):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(value, protocol=5))
    return source_from_path(path)


def test_json_is_measured_only_where_the_data_allows(tmp_path):
    records = _pickle_source(tmp_path, [{"id": 1}], "records.pickle")
    array = _pickle_source(tmp_path, np.zeros(4), "array.pickle")
    assert choose_serializers(records, []) == (["pickle", "json"], None)
    chosen, note = choose_serializers(array, [])
    assert chosen == ["pickle"]
    assert (
        note
        == "json left out: it cannot write this data (result is a numpy.ndarray (numpy.ndarray is not supported))."
    )
    with pytest.raises(BenchmarkError, match="json serializer cannot write this data"):
        choose_serializers(array, ["json"])


def test_a_case_times_dumps_and_loads_and_reads_the_stored_size(tmp_path):
    source = _pickle_source(tmp_path, benchmarking.make_sample("text", 512 * KIB))
    result = measure_case(source, Case("pickle", "zstd", 3), repeat=2, folder=str(tmp_path / "out"))
    assert len(result.dump_seconds) == len(result.load_seconds) == 2
    assert result.input_bytes == source.size
    assert list((tmp_path / "out").iterdir()) == []  # left empty for the next case
    assert result.ratio > 3  # log lines compress well
    assert result.dump_mb_s == source.size / min(result.dump_seconds) / 1e6


def test_peak_memory_sees_a_large_allocation():
    memory = PeakMemory()
    memory.start()
    block = bytearray(64 * 2**20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page, so it is resident
    assert memory.extra_bytes() >= 60 * 2**20
    del block


def test_each_case_runs_in_a_child_process_for_every_input_kind(tmp_path):
    np.save(tmp_path / "array.npy", np.arange(50_000, dtype=np.float64))
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.txt").write_text("abc " * 10_000)
    sources = [
        source_from_path(tmp_path / "array.npy"),
        source_from_path(tmp_path / "folder"),
        benchmarking.sample_source("records", 64 * KIB, tmp_path),
    ]
    for source in sources:
        started = []
        results = list(
            benchmarking.run_cases(source, [Case("pickle", "zlib", 1)], repeat=1, on_start=started.append)
        )
        assert started == [Case("pickle", "zlib", 1)]
        assert [result.case for result in results] == started
        assert results[0].stored_bytes < source.size


def _result(level, dump, load, ratio, spread=0.0):
    """A zstd case on 1 MB of input measured at `dump`/`load` MB/s, its dump times `spread` apart."""
    dump_seconds = 1 / dump
    return CaseResult(
        case=Case("pickle", "zstd", level),
        input_bytes=1_000_000,
        stored_bytes=round(1_000_000 / ratio),
        dump_seconds=[dump_seconds, dump_seconds * (1 + spread)],
        load_seconds=[1 / load],
        dump_peak_bytes=0,
        load_peak_bytes=0,
    )


def test_rankings_order_by_their_figure_best_first():
    fast, small, even = _result(1, 500, 900, 2.0), _result(19, 20, 800, 5.0), _result(3, 300, 850, 4.0)
    results = [fast, small, even]
    assert rank(results, "dump") == [fast, even, small]
    assert rank(results, "ratio") == [small, even, fast]
    assert rank(results, "load") == [fast, even, small]
    assert rank(results, "balanced") == [even, fast, small]
    with pytest.raises(BenchmarkError, match="dump, load, ratio, balanced"):
        rank(results, "speed")


def test_a_case_is_noisy_only_when_its_two_fastest_runs_disagree():
    assert not _result(1, 100, 100, 2.0, spread=0.05).noisy
    assert not _result(1, 100, 100, 2.0, spread=0.2).noisy  # ordinary jitter
    noisy = _result(1, 100, 100, 2.0, spread=0.4)
    assert noisy.noisy and noisy.spread == pytest.approx(0.4)
    # One slow run among three does not make it noisy: the two fastest agree.
    confirmed = dataclasses.replace(noisy, dump_seconds=[0.01, 0.0105, 0.05])
    assert not confirmed.noisy and confirmed.spread == pytest.approx(0.05)
    single = dataclasses.replace(noisy, dump_seconds=[0.01], load_seconds=[0.01])
    assert single.spread is None and not single.noisy


@pytest.mark.parametrize(
    ("seconds", "enough"),
    [
        ([], False),
        ([0.1], False),  # a second run must confirm the first
        ([0.6], True),  # a run over half a second is not repeated
        ([0.1, 0.1], False),  # under the half-second budget: a third run
        ([0.3, 0.3], True),
        ([0.01, 0.01, 0.01], True),  # at most three
    ],
)
def test_without_a_repeat_count_a_phase_runs_until_confirmed(seconds, enough):
    assert benchmarking._enough_runs(seconds, None) is enough


def test_measuring_with_automatic_repeats(tmp_path):
    source = _pickle_source(tmp_path, benchmarking.make_sample("text", 256 * KIB))
    result = measure_case(source, Case("pickle", "zstd", 1), repeat=None, folder=str(tmp_path / "out"))
    assert 2 <= len(result.dump_seconds) <= 3 and 2 <= len(result.load_seconds) <= 3


def test_the_quick_grid_has_each_codec_at_its_low_level_and_zstd_at_its_default_too():
    labels = [case.label for case in benchmarking.quick_grid(["pickle", "json"])]
    assert labels == [
        "pickle",
        "pickle+lzma:0",
        "pickle+bz2:1",
        "pickle+zlib:1",
        "pickle+zstd:1",
        "pickle+zstd:3",
        "json",
        "json+lzma:0",
        "json+bz2:1",
        "json+zlib:1",
        "json+zstd:1",
        "json+zstd:3",
    ]
    assert len(benchmarking.case_grid(["pickle", "json"])) == 24  # the full grid
    assert [case.label for case in benchmarking.quick_grid(["pickle"], ["none", "zstd"])] == [
        "pickle",
        "pickle+zstd:1",
        "pickle+zstd:3",
    ]


def test_the_json_report_lists_every_result_with_its_figures():
    source = DataSource("pickle", Path("data.pickle"), "pickle file data.pickle", 1_000_000)
    document = benchmarking.report(source, [_result(1, 500, 900, 2.0), _result(3, 300, 850, 4.0)], "ratio", 3)
    assert document["input"] == {"kind": "pickle", "label": "pickle file data.pickle", "bytes": 1_000_000}
    assert [row["label"] for row in document["results"]] == ["pickle+zstd:3", "pickle+zstd:1"]
    assert document["results"][0]["score"] == pytest.approx(4.0)


def test_plotting_without_matplotlib_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(BenchmarkError, match=r"pip install 'ferroflow\[plot\]'"):
        benchmarking.plot([_result(1, 500, 900, 2.0)], "out.png", "title")


def test_the_plot_is_drawn_when_matplotlib_is_installed(tmp_path):
    pytest.importorskip("matplotlib")
    benchmarking.plot([_result(1, 500, 900, 2.0), _result(3, 300, 850, 4.0)], tmp_path / "bench.png", "title")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
