"""Fitting the command line's tables to narrow terminals.

Left to itself, rich shrinks the widest columns of a table too wide for the terminal to equal
widths and folds their cells at the last character that fits: `load_daily_pri` / `ces`, or a
storage folder cut in the middle of a directory name with the file name on the next line. Here
each column says what it holds, and the room left by the columns that must stay whole goes to
the others by priority:

- a *name* (a flow, task or run name) breaks only after `-`, `_`, `.`, `/` or a space;
- a *path* stays on one line, shortened from the middle, its file name kept whole;
- *text* (messages, state histories) wraps between words, as rich does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

Cell = str | Text | PurePath
"""A table cell. A `PurePath` in a path column is shortened to fit; other cells there are shown
as they are (a literal result's value, say)."""

ColumnKind = Literal["fixed", "name", "path", "text"]

ELLIPSIS = "…"
_NAME_BREAK = re.compile(r"(?<=[-_./ ])")


@dataclass(frozen=True)
class Column:
    header: str
    kind: ColumnKind = "fixed"
    """`fixed` cells (ids, times, states, counts) always get their whole width, on one line."""
    priority: int = 0
    """Among the other columns, those with a lower priority get the room they need first."""


def fitted_table(title: str, columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int) -> Table:
    """A table of `rows` (cells in the order of `columns`) at most `width` columns wide, when the
    fixed columns and the shortest form of the others fit in it."""
    widths = column_widths(columns, rows, width)
    table = Table(title=title)
    for column, column_width in zip(columns, widths):
        if column.kind == "fixed":
            table.add_column(column.header, no_wrap=True)
        else:
            table.add_column(column.header, width=column_width, overflow="fold")
    for row in rows:
        table.add_row(*(_fit_cell(column, cell, w) for column, cell, w in zip(columns, row, widths)))
    return table


def fits(headers: Sequence[str], rows: Sequence[Sequence[Cell]], width: int) -> bool:
    """Whether a table of these columns shows every cell whole, on one line, in `width` columns."""
    naturals = [
        _natural_width(Column(header), [row[index] for row in rows]) for index, header in enumerate(headers)
    ]
    return sum(naturals) + _borders_and_padding(len(headers)) <= width


def column_widths(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int) -> list[int]:
    """Each column's content width: the natural width (every cell whole on one line) when the
    table fits; else the fixed columns whole, every other column at least its shortest form, and
    the room that remains shared by priority: the columns of the lowest priority share it in
    proportion to what they still lack, what they leave goes to the next priority. A name column
    then gives back what its broken lines do not use."""
    cells = [[row[index] for row in rows] for index in range(len(columns))]
    natural = [_natural_width(column, column_cells) for column, column_cells in zip(columns, cells)]
    if sum(natural) + _borders_and_padding(len(columns)) <= width:
        return natural
    widths = [
        natural[index] if column.kind == "fixed" else _minimum_width(column, cells[index])
        for index, column in enumerate(columns)
    ]
    room = width - _borders_and_padding(len(columns)) - sum(widths)
    priorities = sorted({column.priority for column in columns if column.kind != "fixed"})
    for _ in range(2):  # the second round hands out what the names gave back
        for priority in priorities:
            group = [
                i
                for i, column in enumerate(columns)
                if column.kind != "fixed" and column.priority == priority
            ]
            room = _share(group, widths, natural, room)
        unused = 0
        for index, column in enumerate(columns):
            if column.kind == "name":
                used = max(
                    (
                        cell_len(line)
                        for cell in cells[index]
                        for line in _plain(_fit_cell(column, cell, widths[index])).splitlines()
                    ),
                    default=1,
                )
                used = max(used, *(cell_len(word) for word in column.header.split()))
                unused += widths[index] - used
                widths[index] = used
                natural[index] = used  # a name column needs no more than this now
        if unused == 0:
            break
        room += unused
    return widths


def _share(group: list[int], widths: list[int], natural: list[int], room: int) -> int:
    """Widen the columns of `group` towards their natural widths, in proportion to what each
    lacks, with at most `room` more; what is left."""
    lacking = {index: natural[index] - widths[index] for index in group if natural[index] > widths[index]}
    total = sum(lacking.values())
    if total == 0 or room <= 0:
        return room
    if total <= room:
        for index, missing in lacking.items():
            widths[index] += missing
        return room - total
    given = 0
    for index, missing in lacking.items():
        share = room * missing // total
        widths[index] += share
        given += share
    for index in list(lacking)[: room - given]:  # the remainder of the division, one each
        widths[index] += 1
    return 0


def break_name(name: str, width: int) -> str:
    """`name` on lines of at most `width` cells, broken only after a separator (`-_./` or a
    space); a piece longer than a line is folded, as nothing else can be done."""
    lines: list[str] = []
    line = ""
    for piece in _NAME_BREAK.split(name):
        if line and cell_len(line + piece.rstrip()) > width:
            lines.append(line.rstrip())
            line = ""
        line += piece
        while cell_len(line) > width > 0:
            lines.append(line[:width])
            line = line[width:]
    lines.append(line.rstrip())
    return "\n".join(lines)


def shorten_path(path: str, width: int) -> str:
    """`path` in at most `width` cells: whole folder names from its beginning and its end, the
    ones in the middle replaced by an ellipsis, and the file name kept whole (only a file name
    longer than the room loses its beginning)."""
    if cell_len(path) <= width:
        return path
    folder, separator, name = path.rpartition("/")
    tail = separator + name
    folders = folder.split("/")
    start: list[str] = []
    end: list[str] = []
    # Keep folder names from both ends in turn, while they fit around the ellipsis; when the next
    # one from one end does not fit, a shorter one from the other end still may.
    from_start = True
    while folders:
        first, last = _joined([*start, folders[0]], end, tail), _joined(start, [folders[-1], *end], tail)
        fits_first, fits_last = cell_len(first) <= width, cell_len(last) <= width
        if not (fits_first or fits_last):
            break
        if fits_first and (from_start or not fits_last):
            start.append(folders.pop(0))
        else:
            end.insert(0, folders.pop())
        from_start = not from_start
    shortened = _joined(start, end, tail)
    if cell_len(shortened) <= width:
        return shortened
    if cell_len(name) + len(ELLIPSIS) <= width:
        return ELLIPSIS + name
    return ELLIPSIS + name[-(width - len(ELLIPSIS)) :] if width > len(ELLIPSIS) else name


def _joined(start: list[str], end: list[str], tail: str) -> str:
    return "/".join([*start, ELLIPSIS, *end]) + tail


def _fit_cell(column: Column, cell: Cell, width: int) -> str | Text:
    if isinstance(cell, PurePath):
        return shorten_path(str(cell), width) if column.kind == "path" else str(cell)
    if column.kind == "name" and isinstance(cell, str):
        return break_name(cell, width)
    return cell


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def _natural_width(column: Column, cells: Sequence[Cell]) -> int:
    lines = [column.header, *(line for cell in cells for line in _plain(cell).splitlines())]
    return max(cell_len(line) for line in lines)


def _minimum_width(column: Column, cells: Sequence[Cell]) -> int:
    """The narrowest the column can be without cutting a word of its header or a piece of a cell:
    a name's longest piece between separators, a path's file name and ellipsis, a text's longest
    word."""
    pieces = column.header.split()
    for cell in cells:
        if column.kind == "path" and isinstance(cell, PurePath):
            pieces.append(ELLIPSIS + cell.name)
        elif column.kind == "name" and isinstance(cell, str):
            pieces.extend(piece.rstrip() for piece in _NAME_BREAK.split(cell))
        else:
            pieces.extend(_plain(cell).split())
    return max(cell_len(piece) for piece in pieces) if pieces else 1


def _borders_and_padding(columns: int) -> int:
    # The default box: a border before each column and after the last; padding 1 + 1 per column.
    return 3 * columns + 1


__all__ = ["Cell", "Column", "break_name", "column_widths", "fits", "fitted_table", "shorten_path"]
