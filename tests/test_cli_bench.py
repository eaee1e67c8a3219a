import json
import os
import pickle
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from ferroflow.cli import app

# One case per run keeps these tests quick: each case is measured in a fresh process.
ONE_CASE = ["--serializer", "pickle", "--codec", "zstd", "--level", "low", "--repeat", "1"]


def invoke(*args):
    return CliRunner().invoke(app, ["bench", *map(str, args)], env={"COLUMNS": "200"})


def test_help_shows_examples():
    result = invoke("--help")
    assert result.exit_code == 0
    assert "ferroflow bench --sample records --size 64MiB --rank ratio" in result.output


def test_a_missing_file_is_an_error(tmp_path):
    result = invoke(tmp_path / "results.pickle")
    assert result.exit_code == 2
    assert "results.pickle' does not exist" in result.output
    assert "--sample records" in result.output


def test_an_unknown_serializer_lists_the_known_ones():
    result = invoke("--sample", "text", "--serializer", "msgpack")
    assert result.exit_code == 2
    assert "Unknown serializer 'msgpack'. Known serializers: json, pickle" in result.output


@pytest.mark.parametrize("size", ["64 MiBs", "lots", "0MB"])
def test_a_bad_size_is_an_error(size):
    result = invoke("--sample", "records", "--size", size)
    assert result.exit_code == 2
    assert f"{size!r}" in result.output


def test_a_path_or_a_sample_is_needed_but_not_both(tmp_path):
    assert "not neither" in invoke().output
    path = tmp_path / "value.pickle"
    path.write_bytes(pickle.dumps([1], protocol=5))
    assert "not both" in invoke(path, "--sample", "text").output


def test_plot_without_matplotlib_names_the_extra_before_measuring(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = invoke("--sample", "text", "--plot", tmp_path / "bench.png", *ONE_CASE)
    assert result.exit_code == 2
    assert "pip install 'ferroflow[plot]'" in result.output


def test_json_output_has_the_input_and_one_row_per_case():
    result = invoke("--sample", "records", "--size", "256KiB", "--json", "--codec", "none", *ONE_CASE)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["input"]["kind"] == "pickle" and document["input"]["label"] == "sample 'records'"
    assert document["repeat"] == 1 and document["rank"] == "balanced"
    assert {row["label"] for row in document["results"]} == {"pickle", "pickle+zstd:1"}
    row = next(row for row in document["results"] if row["codec"] == "zstd")
    expected = {
        "serializer",
        "codec",
        "level",
        "input_bytes",
        "stored_bytes",
        "ratio",
        "dump_mb_s",
        "load_mb_s",
        "dump_seconds",
        "load_seconds",
        "dump_peak_bytes",
        "load_peak_bytes",
        "spread",
        "noisy",
        "score",
    }
    assert expected <= row.keys()
    assert row["ratio"] > 2 and row["dump_mb_s"] > 0 and row["load_mb_s"] > 0


def test_a_table_is_printed_for_a_pickle_file(tmp_path):
    path = tmp_path / "value.pickle"
    path.write_bytes(pickle.dumps({"rows": list(range(20_000))}, protocol=5))
    result = invoke(path, "--rank", "ratio", *ONE_CASE)
    assert result.exit_code == 0, result.output
    assert f"pickle file {path}" in result.output
    assert "pickle+zstd:1" in result.output and "ranked by ratio" in result.output


def test_a_numpy_file_leaves_json_out_and_says_why(tmp_path):
    np.save(tmp_path / "array.npy", np.linspace(0, 1, 20_000))
    result = invoke(tmp_path / "array.npy", "--codec", "none", "--repeat", "1")
    assert result.exit_code == 0, result.output
    assert "json left out: it cannot write this data" in result.output
    assert "NumPy file" in result.output


def test_a_folder_is_measured_as_its_files_bytes(tmp_path):
    (tmp_path / "a.csv").write_text("id,value\n" + "1,2\n" * 10_000)
    result = invoke(tmp_path, *ONE_CASE)
    assert result.exit_code == 0, result.output
    assert f"folder {tmp_path}" in result.output


def test_without_a_terminal_each_finished_case_prints_a_line():
    result = invoke(
        "--sample",
        "records",
        "--size",
        "64KiB",
        "--serializer",
        "pickle",
        "--codec",
        "none",
        "--codec",
        "zlib",
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert [line.split(":")[0] for line in lines] == ["[1/2] pickle", "[2/2] pickle+zlib"]
    assert all("MB/s" in line and "ratio" in line for line in lines)


def test_plot_draws_an_image(tmp_path):
    pytest.importorskip("matplotlib")
    result = invoke("--sample", "floats", "--size", "128KiB", "--plot", tmp_path / "bench.png", *ONE_CASE)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("extra", [[], ONE_CASE], ids=["loaded-here", "loaded-in-the-child"])
def test_a_damaged_pickle_is_an_error_not_a_traceback(tmp_path, extra):
    path = tmp_path / "cut.pickle"
    path.write_bytes(pickle.dumps(list(range(1000)), protocol=5)[:100])
    result = invoke(path, *extra)
    assert result.exit_code == 2
    assert f"Cannot load the pickle file {path}: UnpicklingError" in result.output


def test_a_level_the_codec_does_not_have_is_an_error():
    result = invoke(
        "--sample",
        "text",
        "--size",
        "16KiB",
        "--serializer",
        "pickle",
        "--codec",
        "zlib",
        "--level",
        "42",
        "--repeat",
        "1",
    )
    assert result.exit_code == 2
    assert "Cannot measure pickle+zlib:42 on sample 'text'" in result.output


@pytest.mark.parametrize("size", ["99999999999999999GiB", "1000000GiB"])
def test_a_sample_larger_than_memory_is_refused_before_it_is_made(size):
    result = invoke("--sample", "records", "--size", size)
    assert result.exit_code == 2
    assert (
        "would not fit in this machine's memory" in result.output
        and "Give a --size of at most" in result.output
    )


@pytest.mark.timeout(30)  # reading a FIFO would block
def test_a_level_out_of_any_range_and_a_fifo_are_errors_not_tracebacks(tmp_path):
    huge = invoke("--sample", "text", "--size", "16KiB", "--codec", "zstd", "--level", "9" * 20)
    assert huge.exit_code == 2 and "is out of range" in huge.output
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    piped = invoke(fifo)
    assert piped.exit_code == 2 and "neither a regular file nor a folder" in piped.output
