"""archspec's table layout against tabulate's, the library whose output it replaces (see report/grid.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tabulate import tabulate

from archspec.report.grid import grid, text_width

# Cells: printable ASCII with inner spaces, plus a few CJK wide characters and a combining accent.
CHARS = st.sampled_from([*"abcXYZ019 ,.:/()x+-_", "漢", "字", "é", "×", "e\u0301"])
# archspec's cells never start or end with a space (tabulate measures a header before stripping it).
CELL = st.lists(CHARS, max_size=12).map(lambda chars: "".join(chars).strip())
ALIGN = st.sampled_from(["left", "right", "center"])


@st.composite
def tables(draw):
    columns = draw(st.integers(1, 5))
    # At least one row: archspec never prints an empty table (tabulate drops the alignment marks on one).
    rows = draw(st.lists(st.lists(CELL, min_size=columns, max_size=columns), min_size=1, max_size=6))
    headers = draw(st.one_of(st.none(), st.lists(CELL, min_size=columns, max_size=columns)))
    align = draw(st.one_of(st.none(), st.lists(ALIGN, min_size=columns, max_size=columns)))
    return rows, headers, align


@settings(max_examples=300, deadline=None)
@given(tables(), st.sampled_from(["simple", "plain", "pipe"]))
def test_grid_equals_tabulate(table, layout):
    rows, headers, align = table
    expected = tabulate(rows, headers=headers or (), tablefmt=layout, colalign=align, disable_numparse=True)
    assert grid(rows, headers, layout, align) == expected


def test_grid_layouts_written_out():
    rows, headers = [["a", "1"], ["bbbb", "22"]], ["h", "long"]
    # Widths: column 0 = max(len "bbbb" = 4, len "h" + 2 = 3) = 4; column 1 = max(2, len "long" + 2 = 6) = 6.
    assert grid(rows, headers, "simple", ["left", "right"]) == "h       long\n----  ------\na          1\nbbbb      22"
    assert grid(rows, headers, "pipe", ["left", "right"]) == (
        "| h    |   long |\n|:-----|-------:|\n| a    |      1 |\n| bbbb |     22 |"
    )
    assert grid([["x", ""], ["yy", "z"]], layout="plain") == "x\nyy  z"  # lines end without trailing spaces


def test_text_width_counts_terminal_columns():
    assert text_width("conv1") == 5
    assert text_width("漢字") == 4  # East Asian wide: two columns each
    assert text_width("e\u0301") == 1  # a combining accent takes no column


def test_ragged_rows_are_a_programming_error():
    with pytest.raises(ValueError, match="every row needs 2 cells"):
        grid([["a", "b"], ["c"]], ["h", "k"])
