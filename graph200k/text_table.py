"""Plain-text tables that fit a terminal: every CLI table of the project goes through `format_table`.

Columns are padded to their widest cell and two spaces apart, as before; a table that would be
wider than `TABLE_WIDTH` wraps its widest columns' cells onto more lines instead, and long
free-text fields (why an annotator was skipped, how to enable it) go to indented details lines
under their row, wrapped to the same width.
"""

from __future__ import annotations

import textwrap
from typing import Sequence

TABLE_WIDTH = 120
GAP = "  "
MIN_COLUMN = 8  # a column is never wrapped narrower than this (or its header)
DETAIL_INDENT = "    "


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]], *,
                 details: Sequence[Sequence[tuple[str, str]]] | None = None, width: int = TABLE_WIDTH) -> str:
    """The table as text, no line longer than `width` (unless its columns' minimum widths alone
    exceed it). `details[i]`: (label, text) pairs printed under row i as `    label: text`,
    wrapped; empty texts are left out."""
    cells = [[str(c) for c in row] for row in rows]
    widths = _fit([max(len(r[i]) for r in [list(header), *cells]) for i in range(len(header))],
                  [max(MIN_COLUMN, len(h)) for h in header], width)
    lines = _render(list(header), widths) + [GAP.join("-" * w for w in widths)]
    for i, row in enumerate(cells):
        lines += _render(row, widths)
        for label, text in (details[i] if details else ()):
            if text:
                lines += textwrap.wrap(f"{label}: {text}", width, initial_indent=DETAIL_INDENT,
                                       subsequent_indent=DETAIL_INDENT + "  ", break_on_hyphens=False)
    return "\n".join(lines)


def wrap_line(text: str, width: int = TABLE_WIDTH, indent: str = "  ") -> str:
    """A long listing line (e.g. `nodes: target 8, canny 8, ...`) wrapped after its ", "
    separators (an item is never split), continuation lines indented."""
    items = text.split(", ")
    lines = [items[0]]
    for item in items[1:]:
        if len(lines[-1]) + len(", ") + len(item) + len(",") <= width:
            lines[-1] += ", "
            lines[-1] += item
        else:
            lines[-1] += ","
            lines.append(indent + item)
    return "\n".join(lines)


def _fit(natural: list[int], minimum: list[int], width: int) -> list[int]:
    """Column widths: the natural ones, the widest cut down one at a time until the row fits."""
    widths = list(natural)
    while sum(widths) + len(GAP) * (len(widths) - 1) > width:
        shrinkable = [i for i, w in enumerate(widths) if w > minimum[i]]
        if not shrinkable:
            break
        i = max(shrinkable, key=lambda j: widths[j])
        excess = sum(widths) + len(GAP) * (len(widths) - 1) - width
        others = sorted((widths[j] for j in shrinkable if j != i), reverse=True)
        floor = max(minimum[i], others[0] if others else 0, widths[i] - excess)
        widths[i] = floor if floor < widths[i] else widths[i] - 1
    return widths


def _render(row: list[str], widths: list[int]) -> list[str]:
    wrapped = [textwrap.wrap(c, w, break_on_hyphens=False) or [""] if len(c) > w else [c]
               for c, w in zip(row, widths)]
    height = max(len(w) for w in wrapped)
    return [GAP.join((w[k] if k < len(w) else "").ljust(widths[j]) for j, w in enumerate(wrapped)).rstrip()
            for k in range(height)]
