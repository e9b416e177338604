"""Hour-of-week heatmap as text: data in, text out.

Shading uses block glyphs (" ░▒▓█") so the picture survives NO_COLOR, pipes and copy-paste; with colour
on, cells are also tinted through rich markup. Fits 80 columns (4 + 24 x 3)."""

from __future__ import annotations

from collections.abc import Sequence

GLYPHS = " ░▒▓█"
_COLOURS = ("", "grey50", "yellow", "dark_orange", "red")


def level(value: float, top: float) -> int:
    """Shade index 0..4: 0 only for no usage; the rest split the range up to ``top`` evenly."""
    if value <= 0 or top <= 0:
        return 0
    return min(4, 1 + int(3.999 * value / top))


def heatmap_text(
    values: Sequence[Sequence[float]],
    *,
    row_labels: Sequence[str] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
    title: str = "",
    legend_fmt: str = "{:.2f}",
    color: bool = False,
) -> str:
    """A 7 x 24 grid; ``values[day][hour]``. Returns plain text, or rich markup when ``color``."""
    top = max((max(r) for r in values if len(r)), default=0.0)
    lines = []
    if title:
        lines.append(title)
    lines.append("    " + "".join(f"{h:02d}" + " " * 7 for h in range(0, 24, 3)).rstrip())
    for label, row in zip(row_labels, values):
        cells = []
        for v in row:
            k = level(float(v), top)
            cell = GLYPHS[k] * 3
            cells.append(f"[{_COLOURS[k]}]{cell}[/]" if color and k else cell)
        lines.append(f"{label:<4}" + "".join(cells))
    if top > 0:
        steps = [top * i / 4 for i in range(1, 5)]
        legend = "  ".join(f"{GLYPHS[i + 1] * 2} <={legend_fmt.format(s)}" for i, s in enumerate(steps))
        lines.append(f"    {GLYPHS[0] * 2}=0  {legend}")
    else:
        lines.append("    (no usage in this window)")
    return "\n".join(lines)
