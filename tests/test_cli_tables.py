"""Fitting tables to narrow terminals: names broken after separators, paths shortened from the
middle with their file names kept."""

from pathlib import PurePath

import pytest
from rich.console import Console

from ferroflow.cli.tables import Column, break_name, column_widths, fitted_table, shorten_path


@pytest.mark.parametrize(
    ("name", "width", "lines"),
    [
        ("load_daily_prices", 40, ["load_daily_prices"]),
        ("load_daily_prices", 12, ["load_daily_", "prices"]),
        ("nightly-market-data-pipeline", 15, ["nightly-market-", "data-pipeline"]),
        ("a run with spaces", 8, ["a run", "with", "spaces"]),
        ("averyveryverylongword_x", 8, ["averyver", "yverylon", "gword_x"]),  # folded: nothing else fits
    ],
)
def test_break_name(name, width, lines):
    assert break_name(name, width).splitlines() == lines


@pytest.mark.parametrize(
    ("path", "width", "shown"),
    [
        ("/data/results/abc", 40, "/data/results/abc"),
        ("/home/someone/.ferroflow/storage/0123456789", 30, "/home/…/storage/0123456789"),
        ("/home/someone/.ferroflow/storage/0123456789", 20, "/home/…/0123456789"),
        ("/home/someone/.ferroflow/storage/0123456789", 16, "/…/0123456789"),
        ("/home/someone/.ferroflow/storage/0123456789", 11, "…0123456789"),
        ("/home/someone/.ferroflow/storage/0123456789", 6, "…56789"),
    ],
)
def test_shorten_path(path, width, shown):
    assert shorten_path(path, width) == shown
    assert len(shown) <= width


def test_fixed_columns_stay_whole_and_the_others_share_the_rest_by_priority():
    columns = [Column("ID"), Column("Name", "name", priority=1), Column("File", "path")]
    rows = [
        ["3f2a9c1e", "the_quarterly_report_task", PurePath("/very/long/folder/of/results/0123456789abcdef")]
    ]
    widths = column_widths(columns, rows, 60)
    assert widths[0] == 8 and sum(widths) + 3 * 3 + 1 <= 60
    # The path is served first: the name gets only the width of its longest piece.
    assert widths[1] == len("quarterly_") and widths[2] == 60 - 10 - 8 - 10
    printed = Console(width=60, record=True)
    printed.print(fitted_table("t", columns, rows, 60))
    text = printed.export_text()
    assert max(len(line) for line in text.splitlines()) <= 60
    assert "quarterly_" in text and "report_" in text and "/very/…/results/0123456789abcdef" in text
