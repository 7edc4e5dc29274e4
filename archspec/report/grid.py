"""Aligned text tables in the three layouts archspec prints: "simple", "plain" and Markdown "pipe".

The output is the same as tabulate's for these layouts (tests/test_grid.py holds the two together on
random tables), without its cost: importing tabulate and wcwidth took 40 ms and formatting ResNet-152's
table another 40 ms, a quarter of `archspec analyze`'s start-up budget. Cells are strings; they are
stripped, and a line of "simple" or "plain" ends without trailing spaces, as tabulate's do.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Literal

Align = Literal["left", "right", "center"]
Layout = Literal["simple", "plain", "pipe"]

HEADER_PADDING = 2  # a header is given two more columns than its text, so it never touches its neighbour


def text_width(text: str) -> int:
    """Columns a terminal gives `text`: East Asian wide characters take two, combining marks none."""
    if text.isascii():
        return len(text)
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def _pad(text: str, width: int, align: Align) -> str:
    gap = width - text_width(text)
    if align == "right":
        return " " * gap + text
    if align == "center":
        left = gap // 2
        return " " * left + text + " " * (gap - left)
    return text + " " * gap


def grid(
    rows: Sequence[Sequence[object]],
    headers: Sequence[str] | None = None,
    layout: Layout = "simple",
    align: Sequence[Align] | None = None,
) -> str:
    """`rows` as an aligned table; `align` gives each column's alignment (default left)."""
    body = [["" if cell is None else str(cell).strip() for cell in row] for row in rows]
    head = None if headers is None else [str(h).strip() for h in headers]
    columns = len(head) if head is not None else max((len(row) for row in body), default=0)
    if any(len(row) != columns for row in body):
        raise ValueError(f"every row needs {columns} cells")
    aligns = list(align) if align is not None else ["left"] * columns
    widths = [max((text_width(row[c]) for row in body), default=0) for c in range(columns)]
    if head is not None:
        widths = [max(w, text_width(h) + HEADER_PADDING) for w, h in zip(widths, head, strict=True)]

    def line(cells: list[str]) -> str:
        padded = [_pad(cell, w, a) for cell, w, a in zip(cells, widths, aligns, strict=True)]
        if layout == "pipe":
            return "| " + " | ".join(padded) + " |"
        return "  ".join(padded).rstrip()

    def rule() -> str:
        if layout == "pipe":
            marks = {"left": (":", "-"), "right": ("-", ":"), "center": (":", ":")}
            return (
                "|" + "|".join(marks[a][0] + "-" * w + marks[a][1] for w, a in zip(widths, aligns, strict=True)) + "|"
            )
        return "  ".join("-" * w for w in widths).rstrip()

    if not body and head is None:
        return ""
    lines = [] if head is None else [line(head)]
    if layout != "plain":
        # Under the header; a pipe table has its alignment rule even without one, and a "simple" table
        # without one is framed by a rule above and below.
        lines.append(rule())
    lines.extend(line(row) for row in body)
    if layout == "simple" and head is None:
        lines.append(rule())
    return "\n".join(lines)
