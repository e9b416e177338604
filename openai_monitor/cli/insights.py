"""Insight commands: ``patterns`` (when usage happens, kinds of days, sessions, learned seasonality),
``export`` (streaming CSV / JSON / JSON Lines / Parquet) and ``report --html`` (a static, offline page)."""

from __future__ import annotations

import time
from typing import Any

import typer

from ..errors import InputError
from .common import console, print_json, state

_SINCE_HELP = "Start: YYYY-MM-DD (local day), ISO time, or 30d / 24h ago."
_UNTIL_HELP = "End: YYYY-MM-DD (inclusive local day), ISO time, or 7d / 24h ago."
_TZ_HELP = "IANA time zone for hours and days (default: config `timezone`)."


def register(app: typer.Typer) -> None:
    app.command("patterns")(patterns_cmd)
    app.command("export")(export_cmd)
    app.command("report")(report_cmd)


def _bounds(since: str | None, until: str | None, tz: str) -> tuple[int | None, int | None]:
    from ..timeutil import parse_date_bound

    lo = parse_date_bound(since, tz) if since else None
    hi = parse_date_bound(until, tz, end=True) if until else None
    if lo is not None and hi is not None and hi <= lo:
        raise InputError("--until must be after --since; check the two dates")
    return lo, hi


def _fmt_dur(seconds: int) -> str:
    h, rem = divmod(int(seconds), 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def _pct(v: float) -> str:
    """A signed whole percentage; a value that rounds to zero is "0%" (not "-0%")."""
    r = round(v)
    return f"{r:+d}%" if r else "0%"


def _fmt_value(v: float, metric: str) -> str:
    return f"${v:,.2f}" if metric == "cost" else f"{v:,.0f}"


# ---------------------------------------------------------------------------------------------- patterns


def patterns_cmd(
    ctx: typer.Context,
    by: str = typer.Option("user", "--by", help="Break down by user | model | project."),
    metric: str = typer.Option("cost", "--metric", help="cost | requests | tokens."),
    since: str | None = typer.Option(None, "--since", help=_SINCE_HELP),
    until: str | None = typer.Option(None, "--until", help=_UNTIL_HELP),
    timezone: str | None = typer.Option(None, "--timezone", help=_TZ_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """When usage happens: hour-of-week heatmap, peaks, kinds of days, sessions, learned seasonality."""
    from ..render.heatmap import heatmap_text
    from ..service.patterns import build_patterns
    from ..timeutil import zone

    st = state(ctx)
    tz = timezone or st.settings.timezone
    zone(tz)
    lo, hi = _bounds(since, until, tz)
    with st.reader() as reader:
        res = build_patterns(reader, by=by, metric=metric, since=lo, until=hi, tz=tz)
    if json_out:
        print_json(res)
        return
    con = console()
    con.soft_wrap = True
    if res["hours_with_usage"] == 0:
        con.print("no usage in this window: import some with `oaim import ...` or widen --since")
        return
    color = con.color_system is not None
    unit = "USD" if metric == "cost" else metric
    con.print(
        heatmap_text(
            res["heatmap"]["values"],
            title=f"When usage happens ({unit} by local weekday and hour, {tz})",
            legend_fmt="{:,.2f}" if metric == "cost" else "{:,.0f}",
            color=color,
        ),
        highlight=False,
    )
    p = res["peaks"]
    hours = ", ".join(f"{h['hour']:02d}:00 ({h['share']:.0%})" for h in p["peak_hours"])
    days = ", ".join(f"{d['day']} ({d['share']:.0%})" for d in p["peak_days"])
    con.print(f"\nPeak hours: {hours}\nPeak days:  {days}")

    con.print(f"\nPeaks by {by}:")
    for key, kp in list(res["peaks_by_key"].items())[:10]:
        kh = ", ".join(f"{h['hour']:02d}:00" for h in kp["peak_hours"])
        kd = ", ".join(d["day"] for d in kp["peak_days"])
        con.print(f"  {key or '(none)'}: {_fmt_value(kp['total'], metric)}; hours {kh}; days {kd}")

    con.print(f"\nKinds of days (DBSCAN over each {by}'s daily shape):")
    for c in res["clusters"]:
        keys = ", ".join(f"{k['key'] or '(none)'} ({k['days']})" for k in c["keys"][:3])
        con.print(
            f"  {c['label']}: {c['days']} days, {_fmt_value(c['mean_value_per_day'], metric)}/day; {keys}"
        )

    seas = res["seasonality"]
    con.print("\nSeasonality the forecasts learned:")
    if not seas["trained"]:
        con.print(f"  {seas['hint']}")
    else:
        for name, comps in [("account", seas["account"]), *seas[by].items()]:
            if not comps:
                continue
            if "weekly" in comps and comps["weekly"].get("effect_pct"):
                w = " ".join(
                    f"{d} {_pct(v)}" for d, v in zip(comps["weekly"]["days"], comps["weekly"]["effect_pct"])
                )
                con.print(f"  {name} weekly: {w}")
            if "daily" in comps and comps["daily"].get("effect_pct"):
                eff = comps["daily"]["effect_pct"]
                top = sorted(range(24), key=lambda h: -eff[h])[:3]
                low = sorted(range(24), key=lambda h: eff[h])[:3]
                con.print(
                    f"  {name} daily: highest "
                    + ", ".join(f"{h:02d}:00 {_pct(eff[h])}" for h in top)
                    + "; lowest "
                    + ", ".join(f"{h:02d}:00 {_pct(eff[h])}" for h in low)
                )

    sess = res["sessions"]
    if sess["count"]:
        _print_sessions(con, sess, tz)


def _print_sessions(con: Any, sess: dict[str, Any], tz: str) -> None:
    from datetime import datetime

    from rich.table import Table

    from ..timeutil import zone

    z = zone(tz)
    t = Table(title=f"CLI sessions ({sess['count']} total, ${sess['total_cost_usd']:,.2f}; latest shown)")
    for col in ("Start", "End", "Duration", "Cost", "Requests", "Model", "Session"):
        t.add_column(
            col,
            justify="right" if col in ("Duration", "Cost", "Requests") else "left",
            no_wrap=col != "Model",
        )
    for s in sess["timeline"]:
        start = datetime.fromtimestamp(s["start_ts"], z)
        end = datetime.fromtimestamp(s["end_ts"], z)
        t.add_row(
            start.strftime("%m-%d %H:%M"),
            end.strftime("%H:%M" if end.date() == start.date() else "%m-%d %H:%M"),
            _fmt_dur(s["duration_s"]),
            f"${s['cost_usd']:,.2f}",
            str(s["requests"]),
            s["model"],
            s["session_id"][:12],
        )
    con.print(t)


# ---------------------------------------------------------------------------------------------- export


def export_cmd(
    ctx: typer.Context,
    fmt: str = typer.Option(..., "--format", "-f", help="csv | json (one streamed array) | jsonl | parquet."),
    what: str = typer.Option("records", "--what", help="records (raw calls) | daily (UTC-day rollups)."),
    by: str = typer.Option("model", "--by", help="daily: model | user | project | api_key."),
    since: str | None = typer.Option(None, "--since", help=_SINCE_HELP),
    until: str | None = typer.Option(None, "--until", help=_UNTIL_HELP),
    output: str | None = typer.Option(None, "--output", "-o", help="File to write (default: stdout)."),
    timezone: str | None = typer.Option(None, "--timezone", help="Zone of YYYY-MM-DD bounds."),
) -> None:
    """Export raw records or daily rollups, streamed in chunks (constant memory on any database size)."""
    from ..service.export import export

    st = state(ctx)
    tz = timezone or st.settings.timezone
    lo, hi = _bounds(since, until, tz)
    st.reader().close()  # migrates an old database before reading it
    try:
        res = export(st.url, fmt=fmt, what=what, output=output, since=lo, until=hi, by=by)
    except BrokenPipeError:
        # The reader (e.g. `| head`) closed the pipe: stop quietly, as Unix tools do.
        import os
        import sys

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    if output is not None:
        console(stderr=True).print(
            f"wrote {res.rows:,} rows ({what}) to {res.output} ({res.bytes:,} bytes, {res.seconds:.1f} s)"
        )


# ---------------------------------------------------------------------------------------------- report


def report_cmd(
    ctx: typer.Context,
    html: str = typer.Option(..., "--html", help="File to write the HTML report to."),
    since: str = typer.Option("90d", "--since", help=_SINCE_HELP),
    until: str | None = typer.Option(None, "--until", help=_UNTIL_HELP),
    timezone: str | None = typer.Option(None, "--timezone", help=_TZ_HELP),
) -> None:
    """Write a static, self-contained HTML report (inline SVG charts, readable offline) for stakeholders."""
    from pathlib import Path

    from ..config import atomic_write_text
    from ..render.html import render_report
    from ..service.report_html import gather_report

    st = state(ctx)
    tz = timezone or st.settings.timezone
    lo, hi = _bounds(since, until, tz)
    target = Path(html)
    if target.is_dir() or not target.parent.exists():
        raise InputError(f"cannot write {target}: give a file in an existing directory to --html")
    now = int(time.time())
    with st.reader() as reader:
        data = gather_report(reader, st.settings, since=lo, until=hi, tz=tz, now=now)
    atomic_write_text(target, render_report(data))
    console(stderr=True).print(f"wrote {target} ({target.stat().st_size:,} bytes)")
