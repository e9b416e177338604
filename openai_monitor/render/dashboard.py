"""The monitor's frame: rich renderables from the figures dict of ``service.monitor.gather``.

Data in, renderable out. Fits 80x24 (the chart and the side tables shrink or drop on small terminals)
and grows with the terminal. Money figures say what part is billed (reported by the provider) and what
part is estimated (computed from tokens)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .charts import forecast_chart


def _usd(x: float | None) -> str:
    if x is None:
        return "-"
    return f"${x:,.2f}" if abs(x) >= 0.01 or x == 0 else f"${x:,.4f}"


def _split(spent: dict[str, Any]) -> str:
    """'billed $a + est. $b' (or just which kind it is when one side is zero)."""
    b, e = spent.get("billed_usd", 0.0), spent.get("estimated_usd", 0.0)
    if not b and not e:
        return "no spend"
    if b and e:
        return f"billed {_usd(b)} + est. {_usd(e)}"
    return "billed" if b else "estimated"


def _bar(value: float, total: float | None, width: int, color: bool) -> RenderableType:
    if not total:
        return Text("")
    style = "red" if value >= total else "yellow" if value >= 0.8 * total else "green"
    return ProgressBar(
        total=total,
        completed=min(value, total),
        width=width,
        complete_style=style if color else "default",
        finished_style=style if color else "default",
    )


def _when(ts: int | None, tz_now: str) -> str:
    if ts is None:
        return "never"
    return (
        datetime.fromtimestamp(int(ts))
        .astimezone(datetime.fromisoformat(tz_now).tzinfo)
        .strftime("%m-%d %H:%M")
    )


def _ago(hours: float | None) -> str:
    if hours is None:
        return ""
    return (
        f"{hours * 60:.0f} min ago"
        if hours < 1
        else f"{hours:.1f} h ago"
        if hours < 48
        else f"{hours / 24:.0f} d ago"
    )


def render_frame(
    frame: dict[str, Any], *, width: int = 80, height: int = 24, color: bool = False
) -> RenderableType:
    """One monitor frame sized for a ``width`` x ``height`` terminal."""
    plan = frame["plan"]
    month, today, burn, proj = frame["month"], frame["today"], frame["burn_rate"], frame["projection"]
    limit = plan.get("limit_usd")
    parts: list[RenderableType] = []

    plan_name = plan["id"] if plan["id"] != "auto" else f"auto -> {plan.get('tier')}"
    title = Text(
        f"openai-monitor  {frame['now'][:16].replace('T', ' ')} {frame['timezone']}  plan {plan_name}"
    )
    if color:
        title.stylize("bold")
    parts.append(title)

    label_w = 14
    bar_w = max(8, min(40, width - 66))
    grid = Table.grid(padding=(0, 1))
    grid.add_column(min_width=label_w, no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True, overflow="ellipsis")
    mtd = month["spent"]
    pct = f" {month['pct_of_limit']:.0f}%" if month.get("pct_of_limit") is not None else ""
    grid.add_row(
        "Month to date",
        _bar(mtd["total_usd"], limit, bar_w, color),
        f"{_usd(mtd['total_usd'])} / {_usd(limit)}{pct} ({_split(mtd)})",
    )
    td = today["spent"]
    fc_today = today.get("forecast_usd")
    grid.add_row(
        "Today",
        _bar(td["total_usd"], fc_today, bar_w, color),
        f"{_usd(td['total_usd'])} / forecast {_usd(fc_today)} ({_split(td)})",
    )
    grid.add_row(
        "Burn rate",
        "",
        f"{_usd(burn['last_hour_usd'])} last hour, {_usd(burn['today_per_hour_usd'])}/h today, "
        f"{_usd(burn['last_24h_usd'])} last 24 h",
    )
    if proj:
        if proj["basis"] == "forecast":
            line = (
                f"{_usd(proj['mean_usd'])} (80%: {_usd(proj['lower_80_usd'])}-{_usd(proj['upper_80_usd'])})"
            )
            if proj.get("prob_exceed_limit") is not None:
                line += f", P(> limit) {proj['prob_exceed_limit']:.0%}"
        else:
            line = f"{_usd(proj['mean_usd'])} at the current pace (estimated; no forecast)"
        grid.add_row("Month end", "", line)
        hit = proj.get("limit_hit")
        if hit:
            when = hit.get("expected") or hit.get("date")
            p = hit.get("probability")
            grid.add_row(
                "Limit hit", "", f"{when}" + (f" ({p:.0%} of paths)" if p is not None else " (pace)")
            )
    for b in frame.get("budgets", [])[:3]:
        grid.add_row(
            f"Budget #{b['budget']['id']}",
            _bar(b["spent_usd"], b["budget"]["amount_usd"], bar_w, color),
            f"{b['budget']['period']} {b['scope']}: {_usd(b['spent_usd'])} / {_usd(b['budget']['amount_usd'])}"
            + (f"; {b['warning']['message']}" if b.get("warning") else ""),
        )
    parts.append(grid)

    # Rows used so far: title 1 + grid rows; leave room for the footer lines.
    used = 1 + grid.row_count
    footer_rows = 2 + min(2, len(frame.get("anomalies") or []))
    chart_h = height - used - footer_rows - 1
    tops = frame["top"]
    side_rows = max((len(v) for v in tops.values()), default=0)
    has_points = any(d["total_usd"] for d in frame["chart"]["actual"]) or frame["chart"]["forecast"]
    if chart_h >= 8 and has_points:
        chart_w = width if width < 110 else width - 40
        history = [(d["date"][5:], d["total_usd"]) for d in frame["chart"]["actual"]]
        fc = [
            (f["date"][5:], f["yhat"] or 0.0, f["lower_80"] or 0.0, f["upper_80"] or 0.0)
            for f in frame["chart"]["forecast"]
            if f["date"] > (frame["chart"]["actual"][-1]["date"] if frame["chart"]["actual"] else "")
        ]
        chart = Text(
            forecast_chart(
                history,
                fc,
                title="daily spend this month (USD) + forecast",
                width=chart_w,
                height=min(chart_h, 20),
                color=color,
            )
        )
        if width >= 110 and side_rows:
            row = Table.grid(padding=(0, 2))
            row.add_row(chart, _tops(tops, 38))
            parts.append(row)
        else:
            parts.append(chart)
    elif side_rows:
        parts.append(_tops(tops, width))

    anomalies = frame.get("anomalies") or []
    for a in anomalies[:2]:
        parts.append(
            Text(
                f"! anomaly {a.get('scope_dim', '')} {a.get('scope_key', '')}: +{_usd(a.get('impact_usd'))} "
                f"{a.get('explanation', '')}"[: width - 1],
                style="red" if color else "",
            )
        )
    rl = frame.get("rate_limits")
    if rl:
        r = rl[0]
        head = []
        if r.get("requests_headroom") is not None:
            head.append(f"{r['requests_headroom']:.0%} requests")
        if r.get("tokens_headroom") is not None:
            head.append(f"{r['tokens_headroom']:.0%} tokens")
        parts.append(
            Text(f"Rate-limit headroom ({r['provider']} {r['model']}): {', '.join(head) or '-'}"[: width - 1])
        )
    fr = frame["freshness"]
    fresh = (
        f"collected {_when(fr['last_collection_at'], frame['now'])} {_ago(fr['last_collection_age_h'])}"
        f"{' STALE' if fr['collection_stale'] else ''} | trained "
        f"{_when(fr['last_training_at'], frame['now'])}{' STALE' if fr['training_stale'] else ''}"
    )
    parts.append(
        Text(
            fresh[: width - 1],
            style="yellow" if color and (fr["collection_stale"] or fr["training_stale"]) else "",
        )
    )
    for h in frame.get("hints", [])[:2]:
        parts.append(Text(f"hint: {h}"[: width - 1], style="dim" if color else ""))
    return Group(*parts)


def _tops(tops: dict[str, list[dict[str, Any]]], width: int) -> RenderableType:
    t = Table(box=None, padding=(0, 1), show_header=True, width=min(width, 60))
    t.add_column("top (month)", no_wrap=True, overflow="ellipsis", ratio=3)
    t.add_column("USD", justify="right", no_wrap=True, ratio=1)
    for dim in ("model", "user", "project"):
        rows = tops.get(dim) or []
        for r in rows[:3]:
            if dim != "model" and r["key"] == "(none)" and len(rows) == 1:
                continue
            t.add_row(f"{dim[0]}: {r['key']}", _usd(r["total_usd"]))
    return t
