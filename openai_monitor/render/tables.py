"""Rich tables for reports: plain data (dicts) in, a string out, so commands and tests print the same text."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: str = "text"  # text | int | tokens | usd
    drop: int = 0  # > 0: may be left out on a narrow terminal, highest first


def fmt_int(v: Any) -> str:
    return f"{int(v or 0):,}"


def fmt_tokens(v: Any) -> str:
    """Compact token count for terminals (JSON and CSV keep exact integers)."""
    n = int(v or 0)
    for limit, div, unit in ((1e12, 1e12, "T"), (1e9, 1e9, "B"), (1e6, 1e6, "M"), (1e5, 1e3, "k")):
        if abs(n) >= limit:
            return f"{n / div:.1f}{unit}" if abs(n) >= 10 * limit else f"{n / div:.2f}{unit}"
    return f"{n:,}"


def fmt_usd(v: Any) -> str:
    x = float(v or 0.0)
    if x and abs(x) < 0.01:
        return f"${x:.4f}"
    return f"${x:,.2f}"


def fmt_cell(v: Any, kind: str) -> str:
    if kind == "int":
        return fmt_int(v)
    if kind == "tokens":
        return fmt_tokens(v)
    if kind == "usd":
        return fmt_usd(v)
    return "" if v is None else str(v)


def _width(width: int | None) -> int:
    if width is not None:
        return width
    try:
        return max(int(os.environ.get("COLUMNS", "")), 40)
    except ValueError:
        return 120


def _console(buf: io.StringIO, width: int | None):
    from rich.console import Console

    return Console(
        file=buf, width=_width(width), no_color=True, color_system=None, highlight=False, emoji=False
    )


def render_table(
    columns: Sequence[Column],
    rows: Sequence[dict[str, Any]],
    *,
    title: str | None = None,
    total: dict[str, Any] | None = None,
    caption: str | None = None,
    width: int | None = None,
) -> str:
    """A table of ``rows`` (dicts keyed by ``Column.key``) with an optional total row and caption line."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_footer=total is not None,
        title_justify="left",
        pad_edge=False,
        collapse_padding=True,
    )
    footers = [
        fmt_cell(total.get(c.key), c.kind) if total is not None and c.key in total else "" for c in columns
    ]
    cells = [[fmt_cell(r.get(c.key), c.kind) for c in columns] for r in rows]
    # Labels longer than 32 characters are cut with an ellipsis; nothing else is: a truncated number misleads,
    # so on a narrow terminal whole optional columns are left out instead.
    widths = [
        min(max([len(c.header), len(footers[i]), *(len(row[i]) for row in cells)]), 32)
        for i, c in enumerate(columns)
    ]
    keep = list(range(len(columns)))
    room = _width(width)
    for i in sorted((i for i, c in enumerate(columns) if c.drop), key=lambda i: -columns[i].drop):
        if sum(widths[j] + 2 for j in keep) <= room:
            break
        keep.remove(i)
    for i in keep:
        c = columns[i]
        table.add_column(
            c.header,
            footer=footers[i],
            justify="left" if c.kind == "text" else "right",
            no_wrap=True,
            overflow="ellipsis",
            min_width=widths[i],
        )
    for row in cells:
        table.add_row(*(row[i] for i in keep))
    buf = io.StringIO()
    con = _console(buf, width)
    con.print(table)
    if caption:
        con.print(caption, markup=False, soft_wrap=True)
    return buf.getvalue()


def render_pairs(
    pairs: Sequence[tuple[str, str]], *, title: str | None = None, width: int | None = None
) -> str:
    """A two-column label/value table (the summary)."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE, show_header=False, title_justify="left")
    table.add_column("", style=None)
    table.add_column("", justify="right")
    for k, v in pairs:
        table.add_row(k, v)
    buf = io.StringIO()
    _console(buf, width).print(table)
    return buf.getvalue()
