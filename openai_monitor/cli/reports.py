"""Report commands: summary, daily, weekly, monthly. Read-only, fast path (no SQLAlchemy or pandas import)."""

from __future__ import annotations

import datetime as dt
import sys
from typing import TYPE_CHECKING

import typer

from ..errors import InputError
from .common import print_json, state, write_csv

if TYPE_CHECKING:
    from ..service.reports import Report

EMPTY_MESSAGE = (
    "no usage recorded yet: import some with `oaim import claude-code` (or codex, gemini, csv) "
    "or add a call with `oaim log`"
)

_BY_HELP = "Group by model | user | project | provider | api_key."
_SINCE_HELP = "Start: YYYY-MM-DD (local day), ISO time, or 7d / 24h ago."
_UNTIL_HELP = "End: YYYY-MM-DD (inclusive local day), ISO time, or 7d / 24h ago."
_TZ_HELP = "IANA time zone for days, weeks and months (default: config `timezone`)."

# (key, header, kind, drop order on narrow terminals: highest goes first, 0 = always shown)
_METRIC_COLUMNS = (
    ("requests", "Requests", "int", 0),
    ("input_tokens", "Input", "tokens", 0),
    ("cached_input_tokens", "Cached", "tokens", 3),
    ("cache_write_tokens", "Cache wr.", "tokens", 5),
    ("output_tokens", "Output", "tokens", 0),
    ("reasoning_tokens", "Reasoning", "tokens", 6),
    ("cost_usd", "Cost", "usd", 0),
    ("cost_billed_usd", "Billed", "usd", 4),
    ("cost_estimated_usd", "Estimated", "usd", 2),
    ("unpriced_records", "Unpriced", "int", 1),
)
_CSV_METRICS = ["records", *(key for key, _h, _k, _d in _METRIC_COLUMNS)]


def register(app: typer.Typer) -> None:
    app.command("summary")(summary_cmd)
    app.command("daily")(daily_cmd)
    app.command("weekly")(weekly_cmd)
    app.command("monthly")(monthly_cmd)


def _build(
    ctx: typer.Context,
    period: str | None,
    by: str | None,
    since: str | None,
    until: str | None,
    timezone: str | None,
    week_start: str | None,
    json_out: bool,
    csv_out: bool,
) -> Report:
    from ..service.reports import build_report
    from ..timeutil import zone

    if json_out and csv_out:
        raise InputError("--json and --csv exclude each other; pick one")
    st = state(ctx)
    settings = st.settings
    # `oaim --timezone X daily` (the root option) counts too when the command's own option is not given.
    tz = timezone or (st.extra.get("monitor_opts") or {}).get("timezone") or settings.timezone
    zone(tz)
    lo = _bound("--since", since, tz, end=False)
    hi = _bound("--until", until, tz, end=True)
    with st.reader() as reader:
        return build_report(
            reader,
            period=period,
            by=by.strip().lower() if by else None,
            since=lo,
            until=hi,
            tz=tz,
            week_start=week_start or settings.week_start,
        )


def _bound(option: str, value: str | None, tz: str, *, end: bool) -> int | None:
    from ..timeutil import parse_date_bound

    if not value:
        return None
    try:
        return parse_date_bound(value, tz, end=end)
    except InputError as e:
        raise InputError(
            f"{option} {value!r}: use YYYY-MM-DD (a local day), an ISO time such as 2025-06-10T12:00, "
            "or a span back from now such as 7d or 24h"
        ) from e


def _row_columns(report: Report):
    from ..render.tables import Column

    cols = []
    if report.period is not None:
        cols.append(Column("period", {"day": "Day", "week": "Week of", "month": "Month"}[report.period]))
    if report.by is not None:
        cols.append(Column(report.by, report.by.replace("_", " ").capitalize()))
        if report.by == "model":
            cols.append(Column("provider", "Provider", drop=7))
    cols.extend(Column(k, h, kind, drop) for k, h, kind, drop in _METRIC_COLUMNS)
    return cols


def _csv_columns(report: Report) -> list[str]:
    cols = []
    if report.period is not None:
        cols.append("period")
    if report.by is not None:
        cols.append(report.by)
        if report.by == "model":
            cols.append("provider")
    return cols + _CSV_METRICS


def _local(ts: int | None, tz: str) -> str:
    if ts is None:
        return "-"
    from ..timeutil import zone

    return dt.datetime.fromtimestamp(ts, zone(tz)).strftime("%Y-%m-%d %H:%M")


def _span(report: Report) -> str:
    """The range asked for, in the report's zone; with open ends, the data's first and last record."""
    lo, hi = report.requested_since, report.requested_until
    tz = report.timezone
    if lo is None and hi is None:
        if report.first_ts is None:
            return "all time"
        return f"{_local(report.first_ts, tz)} to {_local(report.last_ts, tz)}"
    if hi is None:
        return f"from {_local(lo, tz)}"
    if lo is None:
        return f"before {_local(hi, tz)}"
    return f"{_local(lo, tz)} to {_local(hi, tz)}"


def _no_data_message(report: Report) -> str:
    if not report.has_data:
        return EMPTY_MESSAGE
    return f"no usage {_span(report)} ({report.timezone}); widen --since/--until"


def _table_text(report: Report, title: str) -> str:
    from ..render.tables import render_table

    columns = _row_columns(report)
    total = report.totals.as_dict()
    total[columns[0].key] = "Total"
    return render_table(
        columns,
        [r.as_dict(report.by) for r in report.rows],
        title=title,
        total=total if len(report.rows) > 1 else None,
    )


def _emit(report: Report, json_out: bool, csv_out: bool) -> bool:
    """Print the JSON, CSV or no-data forms; True when done (the caller prints tables otherwise)."""
    if json_out:
        print_json(report.as_dict())
        return True
    if csv_out:
        rows = [r.as_dict(report.by) for r in report.rows]
        if report.period is None and report.by is None and not report.empty:
            rows = [report.totals.as_dict()]
        write_csv(rows, _csv_columns(report))
        msg = report.unpriced_message()
        if msg:
            typer.echo(msg, err=True)
        return True
    if report.empty:
        typer.echo(_no_data_message(report))
        return True
    return False


def _footer(report: Report) -> None:
    msg = report.unpriced_message()
    if msg:
        typer.echo(msg)


def _title(report: Report, what: str) -> str:
    by = f" by {report.by.replace('_', ' ')}" if report.by else ""
    week = f", weeks start {report.week_start}" if report.period == "week" else ""
    return f"{what}{by}, {_span(report)} ({report.timezone}{week})"


def summary_cmd(
    ctx: typer.Context,
    by: str | None = typer.Option(None, "--by", help=_BY_HELP),
    since: str | None = typer.Option(None, "--since", help=_SINCE_HELP),
    until: str | None = typer.Option(None, "--until", help=_UNTIL_HELP),
    timezone: str | None = typer.Option(None, "--timezone", help=_TZ_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    csv_out: bool = typer.Option(False, "--csv", help="Print CSV."),
) -> None:
    """Total usage and cost (all time, or between --since and --until)."""
    report = _build(ctx, None, by, since, until, timezone, None, json_out, csv_out)
    if _emit(report, json_out, csv_out):
        return
    from ..render.tables import fmt_int, fmt_usd, render_pairs

    t = report.totals
    pairs = [
        ("Range", _span(report)),
        ("First record", _local(report.first_ts, report.timezone)),
        ("Last record", _local(report.last_ts, report.timezone)),
        ("Records", fmt_int(t.records)),
        ("Requests", fmt_int(t.requests)),
        ("Input tokens", fmt_int(t.input_tokens)),
        ("  cached", fmt_int(t.cached_input_tokens)),
        ("  cache write", fmt_int(t.cache_write_tokens)),
        ("Output tokens", fmt_int(t.output_tokens)),
        ("  reasoning", fmt_int(t.reasoning_tokens)),
        ("Cost", fmt_usd(t.cost_usd)),
        ("  billed", fmt_usd(t.cost_reported_usd)),
        ("  estimated", fmt_usd(t.cost_estimated_usd)),
        ("Unpriced records", fmt_int(t.unpriced_records)),
    ]
    sys.stdout.write(render_pairs(pairs, title=f"Summary ({report.timezone})"))
    if report.by is not None:
        sys.stdout.write(_table_text(report, f"By {report.by.replace('_', ' ')}"))
    _footer(report)


def _run_period(
    ctx: typer.Context,
    period: str,
    by: str | None,
    since: str | None,
    until: str | None,
    timezone: str | None,
    week_start: str | None,
    json_out: bool,
    csv_out: bool,
) -> None:
    report = _build(ctx, period, by, since, until, timezone, week_start, json_out, csv_out)
    if _emit(report, json_out, csv_out):
        return
    what = {"day": "Daily usage", "week": "Weekly usage", "month": "Monthly usage"}[period]
    sys.stdout.write(_table_text(report, _title(report, what)))
    _footer(report)


def daily_cmd(
    ctx: typer.Context,
    by: str | None = typer.Option(None, "--by", help=_BY_HELP),
    since: str | None = typer.Option(None, "--since", help=_SINCE_HELP),
    until: str | None = typer.Option(None, "--until", help=_UNTIL_HELP),
    timezone: str | None = typer.Option(None, "--timezone", help=_TZ_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    csv_out: bool = typer.Option(False, "--csv", help="Print CSV."),
) -> None:
    """Usage and cost per local day."""
    _run_period(ctx, "day", by, since, until, timezone, None, json_out, csv_out)


def weekly_cmd(
    ctx: typer.Context,
    by: str | None = typer.Option(None, "--by", help=_BY_HELP),
    since: str | None = typer.Option(None, "--since", help=_SINCE_HELP),
    until: str | None = typer.Option(None, "--until", help=_UNTIL_HELP),
    timezone: str | None = typer.Option(None, "--timezone", help=_TZ_HELP),
    week_start: str | None = typer.Option(
        None, "--week-start", help="First day of the week, e.g. sunday (default: config `week_start`)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    csv_out: bool = typer.Option(False, "--csv", help="Print CSV."),
) -> None:
    """Usage and cost per local week."""
    _run_period(ctx, "week", by, since, until, timezone, week_start, json_out, csv_out)


def monthly_cmd(
    ctx: typer.Context,
    by: str | None = typer.Option(None, "--by", help=_BY_HELP),
    since: str | None = typer.Option(None, "--since", help=_SINCE_HELP),
    until: str | None = typer.Option(None, "--until", help=_UNTIL_HELP),
    timezone: str | None = typer.Option(None, "--timezone", help=_TZ_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    csv_out: bool = typer.Option(False, "--csv", help="Print CSV."),
) -> None:
    """Usage and cost per local month."""
    _run_period(ctx, "month", by, since, until, timezone, None, json_out, csv_out)
