"""Fitting the command line's tables to narrow terminals."""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

Cell = str | Text


def fits(headers: Sequence[str], rows: Sequence[Sequence[Cell]], width: int) -> bool:
    """Whether a table of these columns shows every cell on one line in `width` columns."""
    return sum(_natural_widths(headers, rows)) + _borders_and_padding(len(headers)) <= width


def narrow_first(
    table: Table, rows: Sequence[Sequence[Cell]], width: int, *, narrowed: str, kept: str, minimum: int = 8
) -> None:
    """On a terminal too narrow for `table`, take the missing room from the `narrowed` column
    before the `kept` one, so that the longest word of `kept` still fits on a line.

    Left to itself, rich shrinks the widest wrapping columns to equal widths, which cuts a folder
    path or a flow name in the middle; this sets the `narrowed` column's `max_width` (never below
    `minimum`) instead. `rows` are the cells given to `add_row`, in the table's column order.
    """
    headers = [str(column.header) for column in table.columns]
    narrowed_index, kept_index = headers.index(narrowed), headers.index(kept)
    widths = _natural_widths(headers, rows)
    others = sum(
        column_width for index, column_width in enumerate(widths) if index not in (narrowed_index, kept_index)
    )
    room = width - others - _borders_and_padding(len(headers))
    if widths[narrowed_index] + widths[kept_index] <= room:
        return
    longest_word = max(cell_len(word) for row in rows for word in str(row[kept_index]).split())
    table.columns[narrowed_index].max_width = max(minimum, room - longest_word)


def _natural_widths(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> list[int]:
    """Each column's width with every cell on one line."""
    return [
        max(cell_len(str(cell)) for cell in [header, *(row[index] for row in rows)])
        for index, header in enumerate(headers)
    ]


def _borders_and_padding(columns: int) -> int:
    # The default box: a border before each column and after the last; padding 1 + 1 per column.
    return 3 * columns + 1


__all__ = ["fits", "narrow_first"]
