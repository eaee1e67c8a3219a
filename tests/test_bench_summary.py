"""benches/summary.py: cutting the benchmarks' printed output into a markdown summary."""

import importlib.util
import sys
from pathlib import Path

import pytest

SUMMARY_PATH = Path(__file__).resolve().parent.parent / "benches" / "summary.py"
spec = importlib.util.spec_from_file_location("bench_summary", SUMMARY_PATH)
summary = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = summary  # dataclasses look their module up while the class is built
spec.loader.exec_module(summary)

LOG = """\
============================= test session starts ==============================
collected 3 items

benches/bench_blob_write.py 
write (256 MiB, best of 5):
  write_blob                             4189 MB/s
  ratio ferroflow / python: 0.90
.
benches/bench_hashing.py 
Hashing one 64 MiB buffer
hash      MB/s  target
------  -------  ------
blake3  5000.00  >= 5x md5 and >= 4000 MB/s met
.s
========================= 2 passed, 1 skipped in 12.00s =========================
"""


def test_the_log_is_cut_per_benchmark_without_progress_marks():
    outputs = summary.split_by_benchmark(LOG.splitlines(keepends=True))
    assert [output.name for output in outputs] == ["bench_blob_write", "bench_hashing"]
    assert outputs[0].lines == [
        "write (256 MiB, best of 5):",
        "  write_blob                             4189 MB/s",
        "  ratio ferroflow / python: 0.90",
    ]
    assert outputs[1].lines[-1] == "blake3  5000.00  >= 5x md5 and >= 4000 MB/s met"


def test_ratio_and_target_lines_are_the_headlines_with_their_table_title():
    blob_write, hashing = summary.split_by_benchmark(LOG.splitlines())
    assert blob_write.headlines() == ["write (256 MiB, best of 5): ratio ferroflow / python: 0.90"]
    assert hashing.headlines() == [
        "Hashing one 64 MiB buffer: blake3  5000.00  >= 5x md5 and >= 4000 MB/s met"
    ]


def test_the_markdown_has_the_machine_the_headlines_and_every_output():
    outputs = summary.split_by_benchmark(LOG.splitlines())
    text = summary.render(outputs, {"cores": "2"}, "make bench", failed=False)
    assert "- **cores**: 2" in text and "- **command**: `make bench`" in text
    assert "| bench_blob_write | write (256 MiB, best of 5): ratio ferroflow / python: 0.90 |" in text
    assert text.count("```text") == 2
    assert "failed" not in text


def test_a_log_without_benchmark_output_is_an_error(tmp_path, capsys):
    log = tmp_path / "empty.log"
    log.write_text("nothing here\n")
    assert summary.main(["--from-log", str(log), "--out", str(tmp_path / "summary.md")]) == 1
    assert "No benchmark output found" in capsys.readouterr().err


def test_a_missing_log_is_an_error(tmp_path):
    with pytest.raises(SystemExit):
        summary.main(["--from-log", str(tmp_path / "missing.log")])
