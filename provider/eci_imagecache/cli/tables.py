"""Long tables at a small, fixed cost per row.

rich's ``Table`` measures, wraps and renders every cell through its layout engine: about 2 ms
a row, so a listing of 10,000 caches took half a minute to draw. :class:`Listing` draws the
same table (rich's default box, padding, title and header styles) from plain-text cells: the
column widths come from one pass over the cells' lengths and each row is one line of text.
"""

from __future__ import annotations

from collections.abc import Iterator

from rich import box
from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions
from rich.measure import Measurement
from rich.segment import Segment
from rich.text import Text

PADDING = 1  # spaces on each side of a cell, as in rich's default table
ELLIPSIS = "…"


class Listing:
    """A table of plain-text cells, one line a row, drawn like rich's default ``Table``.

    Cells are single lines of text, shown as they are (no markup). Rows wider than the console
    do not wrap: the widest columns are cut, with an ellipsis, until the table fits; the first
    column (what identifies a row) is cut last.
    """

    def __init__(self, *headers: str, title: str | None = None) -> None:
        self.headers = list(headers)
        self.title = title
        self.rows: list[list[str]] = []

    def add_row(self, *cells: str) -> None:
        if len(cells) != len(self.headers):
            raise ValueError(f"a row has {len(self.headers)} cells, not {len(cells)}")
        self.rows.append(list(cells))

    def _natural_widths(self) -> list[int]:
        """Each column's widest cell, header included (in terminal cells)."""
        widths = [_cells(h) for h in self.headers]
        for column, cells in enumerate(zip(*self.rows, strict=True) if self.rows else ()):
            widths[column] = max(widths[column], max(map(_cells, cells)))
        return widths

    @staticmethod
    def _outer(widths: list[int]) -> int:
        return sum(widths) + 2 * PADDING * len(widths) + len(widths) + 1

    def _fitted_widths(self, max_width: int) -> list[int]:
        widths = self._natural_widths()
        excess = self._outer(widths) - max_width
        while excess > 0:
            # The widest column gives one cell; the first only when no other can.
            others = [i for i in range(1, len(widths)) if widths[i] > 1]
            candidates = others or ([0] if widths and widths[0] > 1 else [])
            if not candidates:
                break  # too narrow for any table: the console crops the lines
            widest = max(candidates, key=lambda i: (widths[i], i))
            widths[widest] -= 1
            excess -= 1
        return widths

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        width = min(self._outer(self._natural_widths()), options.max_width)
        return Measurement(width, width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        widths = self._fitted_widths(options.max_width)
        spans = [w + 2 * PADDING for w in widths]
        lines = box.HEAVY_HEAD.substitute(options, safe=console.safe_box)
        newline = Segment.line()
        if self.title:
            title = Text(self.title, style="table.title", justify="center")
            yield from console.render(title, options.update(width=self._outer(widths), height=None))
        yield Segment(lines.get_top(spans))
        yield newline
        header = console.get_style("table.header")
        for column, (cell, width) in enumerate(zip(self.headers, widths, strict=True)):
            yield Segment(lines.head_vertical if column else lines.head_left)
            # Padding and text apart, as rich styles them: the same bytes on a terminal.
            yield Segment(" " * PADDING, header)
            yield Segment(_fitted(cell, width), header)
            yield Segment(" " * PADDING, header)
        yield Segment(lines.head_right)
        yield newline
        yield Segment(lines.get_row(spans, "head"))
        yield newline
        left, right, between = lines.mid_left, lines.mid_right, lines.mid_vertical
        for row in self.rows:  # one segment a row: the cost per row is joining its cells
            cells = between.join(_padded(c, w) for c, w in zip(row, widths, strict=True))
            yield Segment(f"{left}{cells}{right}\n")
        yield Segment(lines.get_bottom(spans))
        yield newline


def _cells(text: str) -> int:
    """Terminal cells ``text`` takes: its length when it is printable ASCII (nearly always)."""
    return len(text) if text.isascii() and text.isprintable() else cell_len(text)


def _fitted(text: str, width: int) -> str:
    """``text`` in exactly ``width`` terminal cells: filled with spaces, or cut with an ellipsis."""
    length = _cells(text)
    if length > width:
        if width < 2:
            return ELLIPSIS[:width]
        text = set_cell_size(text, width - 1).rstrip() + ELLIPSIS
        length = cell_len(text)
    return text + " " * (width - length)


def _padded(text: str, width: int) -> str:
    return f"{' ' * PADDING}{_fitted(text, width)}{' ' * PADDING}"
