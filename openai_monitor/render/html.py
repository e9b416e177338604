"""A static, self-contained HTML report: inline SVG charts drawn here, one inline stylesheet, no scripts,
fonts, images or links to anything outside the file, so it opens offline and can be mailed as is.

Data in (``service.report_html.gather_report``), text out. Every string from the data is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape
from typing import Any

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:960px;
color:#1d232b;padding:0 1rem;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #dde3ea}
.muted{color:#66707c;font-size:.9rem}.cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:1rem 0}
.card{border:1px solid #dde3ea;border-radius:6px;padding:.6rem .9rem;min-width:150px}
.card b{display:block;font-size:1.3rem}table{border-collapse:collapse;width:100%;font-size:.9rem}
td,th{border-bottom:1px solid #eef1f4;padding:.3rem .4rem;text-align:left}td.n,th.n{text-align:right}
svg text{font-size:11px;fill:#3d4650}.grid{stroke:#eef1f4}.axis{stroke:#9aa4ae}
.hist{fill:none;stroke:#2364aa;stroke-width:2}.fc{fill:none;stroke:#e07a10;stroke-width:2;stroke-dasharray:5 3}
.band{fill:#e07a10;fill-opacity:.18;stroke:none}.bar{fill:#2364aa}
"""
_HEAT = ("#f4f6f8", "#d6e6f5", "#9ecae1", "#4292c6", "#08519c")


def _usd(v: float) -> str:
    return f"${v:,.2f}"


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    import math

    mag = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * mag:
            return m * mag
    return 10 * mag


def line_chart_svg(
    labels: Sequence[str],
    values: Sequence[float],
    forecast: Sequence[tuple[str, float, float, float]] = (),
    *,
    width: int = 900,
    height: int = 280,
    title: str = "",
) -> str:
    """History line plus an optional forecast median with its shaded 80% band (label, yhat, lo, hi)."""
    all_labels = list(labels) + [f[0] for f in forecast]
    n = len(all_labels)
    if n == 0:
        return '<p class="muted">no data in this window</p>'
    left, right, top, bottom = 64, 12, 14, 34
    pw, ph = width - left - right, height - top - bottom
    ymax = _nice_max(max([*values, *(f[3] for f in forecast), 0.0]))

    def x(i: int) -> float:
        return left + (pw * i / (n - 1) if n > 1 else pw / 2)

    def y(v: float) -> float:
        return top + ph * (1 - v / ymax)

    parts = [f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" width="100%">']
    for k in range(5):
        v = ymax * k / 4
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>')
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{escape(_usd(v))}</text>')
    step = max(1, n // 8)
    for i in range(0, n, step):
        parts.append(
            f'<text x="{x(i):.1f}" y="{height - 12}" text-anchor="middle">{escape(all_labels[i][5:])}</text>'
        )
    nh = len(values)
    if forecast:
        idx = range(nh, nh + len(forecast))
        upper = " ".join(f"{x(i):.1f},{y(f[3]):.1f}" for i, f in zip(idx, forecast))
        lower = " ".join(f"{x(i):.1f},{y(f[2]):.1f}" for i, f in reversed(list(zip(idx, forecast))))
        parts.append(f'<polygon class="band" points="{upper} {lower}"/>')
        start = [f"{x(nh - 1):.1f},{y(values[-1]):.1f}"] if nh else []
        med = " ".join(start + [f"{x(i):.1f},{y(f[1]):.1f}" for i, f in zip(idx, forecast)])
        parts.append(f'<polyline class="fc" points="{med}"/>')
    if nh:
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline class="hist" points="{pts}"/>')
    parts.append(f'<line class="axis" x1="{left}" x2="{width - right}" y1="{top + ph}" y2="{top + ph}"/>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart_svg(items: Sequence[tuple[str, float]], *, width: int = 900, title: str = "") -> str:
    """Horizontal bars, one per (label, USD)."""
    if not items:
        return '<p class="muted">no data in this window</p>'
    row, label_w, value_w = 22, 260, 90
    height = row * len(items) + 8
    vmax = max(v for _l, v in items) or 1.0
    pw = width - label_w - value_w
    parts = [f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" width="100%">']
    for i, (label, v) in enumerate(items):
        yy = 4 + i * row
        short = label if len(label) <= 38 else label[:37] + "…"
        parts.append(f'<text x="{label_w - 8}" y="{yy + 15}" text-anchor="end">{escape(short)}</text>')
        parts.append(
            f'<rect class="bar" x="{label_w}" y="{yy + 3}" width="{max(pw * v / vmax, 1):.1f}" height="{row - 7}"/>'
        )
        parts.append(f'<text x="{label_w + pw * v / vmax + 6:.1f}" y="{yy + 15}">{escape(_usd(v))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def heatmap_svg(
    values: Sequence[Sequence[float]], row_labels: Sequence[str], *, width: int = 900, title: str = ""
) -> str:
    """Hour-of-week grid, darker = more; each cell carries its value as a tooltip."""
    from .heatmap import level

    top = max((max(r) for r in values if len(r)), default=0.0)
    left, head = 44, 20
    cw = (width - left) / 24
    ch = 22
    height = head + ch * len(values) + 4
    parts = [f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" width="100%">']
    for h in range(0, 24, 2):
        parts.append(f'<text x="{left + cw * h + cw / 2:.1f}" y="14" text-anchor="middle">{h:02d}</text>')
    for d, (label, row) in enumerate(zip(row_labels, values)):
        yy = head + d * ch
        parts.append(f'<text x="{left - 6}" y="{yy + 15}" text-anchor="end">{escape(label)}</text>')
        for h, v in enumerate(row):
            colour = _HEAT[level(float(v), top)]
            parts.append(
                f'<rect x="{left + cw * h:.1f}" y="{yy}" width="{cw - 1:.1f}" height="{ch - 2}" fill="{colour}">'
                f"<title>{escape(label)} {h:02d}:00 {escape(_usd(float(v)))}</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    head = "".join(
        f'<th class="{"n" if i in numeric else ""}">{escape(h)}</th>' for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"n" if i in numeric else ""}">{escape(str(c))}</td>' for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _date(ts: int | None, tz: str = "UTC") -> str:
    if ts is None:
        return "-"
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(int(ts), ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def render_report(data: dict[str, Any]) -> str:
    """The whole page as one string."""
    tz = data["timezone"]
    t = data["totals"]
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(data['title'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(data['title'])}</h1>",
        f'<p class="muted">{escape(_date(data["since"], tz))} to {escape(_date(data["until"], tz))} ({escape(tz)}); '
        f"generated {escape(datetime.fromtimestamp(data['generated_at'], timezone.utc).strftime('%Y-%m-%d %H:%M UTC'))}"
        " by openai-monitor</p>",
        '<div class="cards">',
        f'<div class="card">Total spend<b id="total-cost">{escape(_usd(t["cost_usd"]))}</b></div>',
        f'<div class="card">Billed (provider-reported)<b>{escape(_usd(t["cost_billed_usd"]))}</b></div>',
        f'<div class="card">Estimated (from tokens)<b>{escape(_usd(t["cost_estimated_usd"]))}</b></div>',
        f'<div class="card">Requests<b>{t["requests"]:,}</b></div>',
        f'<div class="card">Tokens in / out<b>{t["input_tokens"]:,} / {t["output_tokens"]:,}</b></div>',
        "</div>",
    ]
    if data.get("unpriced_message"):
        out.append(f'<p class="muted">{escape(data["unpriced_message"])}</p>')

    out.append("<h2>Spend per day</h2>")
    fc = data.get("forecast")
    band = [(p["day"], p["yhat"], p["lower"], p["upper"]) for p in fc["points"]] if fc else []
    labels = [d["day"] for d in data["daily"]]
    values = [d["cost_usd"] for d in data["daily"]]
    out.append(line_chart_svg(labels, values, band, title="spend per day"))
    if fc:
        proj = (fc.get("summary") or {}).get("projection")
        msg = f"Dashed: {escape(fc['kind'])} forecast with its 80% band, trained {escape(_date(fc['trained_at'], tz))}."
        if proj:
            msg += (
                f" Month-end projection at training time: {escape(_usd(proj['mean']))} "
                f"(80%: {escape(_usd(proj['lower_80']))} to {escape(_usd(proj['upper_80']))})."
            )
        out.append(f'<p class="muted">{msg}</p>')
    else:
        out.append('<p class="muted">No forecast: run <code>oaim train</code> to add one.</p>')

    for key, name in (("by_model", "model"), ("by_user", "user"), ("by_project", "project")):
        out.append(f"<h2>Spend by {name}</h2>")
        out.append(bar_chart_svg([(r["key"], r["cost_usd"]) for r in data[key]], title=f"spend by {name}"))

    pat = data.get("patterns") or {}
    out.append("<h2>When usage happens</h2>")
    if pat.get("hours_with_usage"):
        out.append(
            heatmap_svg(pat["heatmap"]["values"], pat["heatmap"]["days"], title="hour-of-week heatmap")
        )
        pk = pat["peaks"]
        out.append(
            f'<p class="muted">Spend by local weekday and hour ({escape(tz)}). Peak hours: '
            + escape(", ".join(f"{h['hour']:02d}:00 ({h['share']:.0%})" for h in pk["peak_hours"]))
            + ". Peak days: "
            + escape(", ".join(f"{d['day']} ({d['share']:.0%})" for d in pk["peak_days"]))
            + ".</p>"
        )
        out.append("<h3>Kinds of days</h3>")
        out.append(
            _table(
                ("Kind", "Days", "Spend per day", "Mostly"),
                [
                    (
                        c["label"],
                        c["days"],
                        _usd(c["mean_value_per_day"]),
                        ", ".join(k["key"] or "(none)" for k in c["keys"][:3]),
                    )
                    for c in pat["clusters"]
                ],
                numeric=(1, 2),
            )
        )
        sess = pat.get("sessions") or {}
        if sess.get("count"):
            out.append(f"<h3>CLI sessions ({sess['count']}, {escape(_usd(sess['total_cost_usd']))})</h3>")
            out.append(
                _table(
                    ("Start", "Minutes", "Cost", "Model", "Project"),
                    [
                        (
                            _date(s["start_ts"], tz),
                            round(s["duration_s"] / 60),
                            _usd(s["cost_usd"]),
                            s["model"],
                            s["project"],
                        )
                        for s in sess["timeline"]
                    ],
                    numeric=(1, 2),
                )
            )
    else:
        out.append('<p class="muted">no usage in this window</p>')

    out.append("<h2>Anomalies</h2>")
    out.append(
        _table(
            ("Start", "Scope", "Severity", "Impact", "Status", "Explanation"),
            [
                (
                    _date(a["start_ts"], tz),
                    a["scope"],
                    a["severity"],
                    _usd(a["impact_usd"]),
                    a["status"],
                    a["explanation"],
                )
                for a in data.get("anomalies") or []
            ],
            numeric=(3,),
        )
    )

    recs = data.get("recommendations")
    out.append("<h2>Recommendations</h2>")
    if recs is None:
        out.append('<p class="muted">recommendations are not available in this installation</p>')
    else:
        items = recs.get("recommendations") or []
        out.append(
            _table(
                ("Recommendation", "Saving / month", "Confidence"),
                [
                    (r["title"], _usd(r["monthly_saving_usd"]), r.get("confidence_label", ""))
                    for r in items[:12]
                ],
                numeric=(1,),
            )
        )
        if items:
            out.append(
                f'<p class="muted">Total (best alternative per model): {escape(_usd(recs["total_monthly_saving_usd"]))}'
                " per month.</p>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"
