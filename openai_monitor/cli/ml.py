"""``oaim train``, ``oaim forecast`` and ``oaim anomalies``.

``train`` is the one command here that imports Prophet and scikit-learn. ``forecast`` and ``anomalies``
read stored rows through ``service.ml_read`` and a FastReader: no pandas, Prophet, scikit-learn or
SQLAlchemy import on SQLite (``ack`` writes, through the store)."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from typing import Any

import typer

from ..errors import InputError, ModelError
from .common import console, print_json, state

anomalies_app = typer.Typer(help="List, acknowledge and explain anomaly findings.", no_args_is_help=False)


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("forecast")(forecast_cmd)
    app.add_typer(anomalies_app, name="anomalies")


def _now() -> int:
    # OAIM_NOW pins the clock for demos and reproducible output; the pipeline itself never reads the clock.
    env = os.environ.get("OAIM_NOW")
    if env:
        try:
            return int(float(env))
        except ValueError as exc:
            raise InputError(f"OAIM_NOW={env!r} is not Unix seconds: unset it or give an integer") from exc
    return int(time.time())


def _zone(tz: str):
    from zoneinfo import ZoneInfo

    return ZoneInfo(tz)


def _local(ts: int, tz: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return datetime.fromtimestamp(ts, _zone(tz)).strftime(fmt)


def _money(v: float | None) -> str:
    return "n/a" if v is None else f"${v:,.2f}"


# ------------------------------------------------------------------------------------------------ train


def train_cmd(
    ctx: typer.Context,
    scope: list[str] = typer.Option(
        None, "--scope", help="Only these scopes: all, user, model, project, provider (repeatable)."
    ),
    force: bool = typer.Option(False, "--force", help="Refit every series, even when its data is unchanged."),
    json_out: bool = typer.Option(False, "--json", help="Print the training run as JSON."),
) -> None:
    """Fit forecasters and anomaly detectors on the stored usage, and store their results."""
    from ..service.train import train

    st = state(ctx)
    now = datetime.fromtimestamp(_now(), timezone.utc)
    if json_out:
        res = train(st.store, st.settings, now=now, scopes=scope or None, force=force)
        print_json(res.as_dict())
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    con = console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[item]}"),
        console=con,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(done: int, total: int, label: str) -> None:
            stage = "detectors" if label.startswith("detector|") else "forecasts"
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, item="")
            bar.update(tasks[stage], completed=done, total=total, item=label[-40:])

        res = train(st.store, st.settings, now=now, scopes=scope or None, force=force, progress=progress)
    out = console()
    out.print(
        f"training run {res.run_id}: {res.status}; {res.fitted} fitted, {res.skipped} unchanged (skipped), "
        f"{res.failed} failed of {res.series_total} ({res.detectors} anomaly detectors); "
        f"{res.new_anomalies} new anomalies; {res.seconds:.1f} s"
    )
    for f in res.failures:
        out.print(f"  failed {f['series_id']}: {f['reason']}")


# ------------------------------------------------------------------------------------------------ forecast


def _limit(settings: Any) -> tuple[float | None, str]:
    """The monthly limit: ``limit_usd`` if set, else the plan's tier limit from the dated tiers table."""
    if settings.limit_usd is not None:
        return float(settings.limit_usd), "limit_usd"
    from importlib.resources import files

    try:
        doc = json.loads(files("openai_monitor").joinpath("data/tiers.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, ""
    overrides = (getattr(settings, "model_extra", None) or {}).get("tiers", {}) or {}
    for tier in doc.get("tiers", []):
        if tier.get("id") == settings.plan:
            value = (overrides.get(settings.plan) or {}).get(
                "monthly_limit_usd", tier.get("monthly_limit_usd")
            )
            return (float(value) if value is not None else None), f"{tier.get('name', settings.plan)} limit"
    return None, ""


def _month_start(now: int, tz: str) -> int:
    local = datetime.fromtimestamp(now, _zone(tz))
    return int(local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp())


def _history(reader: Any, fc: dict, now: int, tz: str, periods: int) -> list[tuple[int, float]]:
    from ..service.ml_read import hourly_totals

    if fc["freq"] == "h":
        start = now // 3600 * 3600 - periods * 3600
        got = dict(
            hourly_totals(reader, start, now // 3600 * 3600, fc["scope_dim"], fc["scope_key"], fc["metric"])
        )
        return [(t, got.get(t, 0.0)) for t in range(start, now // 3600 * 3600, 3600)]
    zone = _zone(tz)
    today = datetime.fromtimestamp(now, zone).replace(hour=0, minute=0, second=0, microsecond=0)
    days = []
    for i in range(periods, 0, -1):
        d = today.date().toordinal() - i
        day = datetime.fromordinal(d).replace(tzinfo=zone)
        days.append(int(day.timestamp()))
    totals = dict.fromkeys(days, 0.0)
    if days:
        for ts, v in hourly_totals(
            reader, days[0], int(today.timestamp()), fc["scope_dim"], fc["scope_key"], fc["metric"]
        ):
            local = datetime.fromtimestamp(ts, zone).replace(hour=0, minute=0, second=0, microsecond=0)
            key = int(local.timestamp())
            if key in totals:
                totals[key] += v
    return sorted(totals.items())


def _series_report(
    reader: Any, fc: dict, now: int, tz: str, limit: float | None, days: int
) -> dict[str, Any]:
    from ..service import ml_read

    per_day = 24 if fc["freq"] == "h" else 1
    points = [p for p in fc["points"] if p["ds"] >= now - (3600 if per_day == 24 else 86400)][
        : days * per_day
    ]
    summary = fc["summary"]
    out: dict[str, Any] = {
        "series_id": fc["series_id"],
        "scope": "all" if fc["scope_dim"] == "all" else f"{fc['scope_dim']}:{fc['scope_key']}",
        "metric": fc["metric"],
        "freq": fc["freq"],
        "kind": fc["kind"],
        "fallback_reason": fc["fallback_reason"],
        "trained_at": _local(fc["trained_at"], tz, "%Y-%m-%dT%H:%M:%S%z"),
        "data_range": {
            "start": _local(fc["data_start"], tz, "%Y-%m-%dT%H:%M:%S%z"),
            "end": _local(fc["data_end"], tz, "%Y-%m-%dT%H:%M:%S%z"),
            "rows": fc["rows"],
        },
        "metrics": fc["metrics"],
        "points": [dict(p, ds=_local(p["ds"], tz, "%Y-%m-%dT%H:%M:%S%z")) for p in points],
        "summary": {},
    }
    if fc["freq"] == "d" and summary.get("projection"):
        mtd = ml_read.sum_since(
            reader, _month_start(now, tz), now, fc["scope_dim"], fc["scope_key"], fc["metric"]
        )
        s: dict[str, Any] = {
            "month": summary.get("month"),
            "month_to_date": mtd,
            "month_end": ml_read.projection(summary, mtd, now),
            "forecast_total": summary.get("forecast_total"),
            "last_total": summary.get("last_total"),
            "horizon_days": summary.get("horizon_days"),
        }
        if fc["metric"] == "cost" and limit is not None:
            s["limit_usd"] = limit
            s["prob_exceed_limit"] = ml_read.prob_exceed(summary, mtd, limit, now)
            s["limit_hit"] = ml_read.limit_hit(summary, mtd, limit, now)
        out["summary"] = s
    return out


def _drivers(reader: Any, metric: str) -> list[dict[str, Any]]:
    """Which users / models drive growth: forecast total over the horizon vs the same span of history."""
    from ..service.ml_read import list_forecasts

    rows = []
    for dim in ("model", "user", "project"):
        for f in list_forecasts(reader, by=dim, metric=metric, freq="d"):
            s = f["summary"]
            if "forecast_total" in s:
                rows.append(
                    {
                        "scope": f"{dim}:{f['scope_key']}",
                        "forecast_total": s["forecast_total"],
                        "last_total": s["last_total"],
                        "growth": s["forecast_total"] - s["last_total"],
                        "horizon_days": s.get("horizon_days"),
                        "dim": dim,
                    }
                )
    for dim in ("model", "user", "project"):
        part = [r for r in rows if r["dim"] == dim]
        total = sum(r["forecast_total"] for r in part)
        growth = sum(r["growth"] for r in part)
        for r in part:
            r["share_of_forecast"] = r["forecast_total"] / total if total > 0 else 0.0
            r["share_of_growth"] = r["growth"] / growth if growth else None
    return sorted(rows, key=lambda r: r["growth"], reverse=True)


def forecast_cmd(
    ctx: typer.Context,
    days: int = typer.Option(30, "--days", min=1, help="Days ahead to show."),
    metric: str = typer.Option("cost", "--metric", help="cost, tokens or requests."),
    by: str | None = typer.Option(None, "--by", help="One series per model, user or project."),
    user: str | None = typer.Option(None, "--user", help="Only this user."),
    model: str | None = typer.Option(None, "--model", help="Only this model."),
    hourly: bool = typer.Option(False, "--hourly", help="Hourly series instead of daily."),
    json_out: bool = typer.Option(False, "--json", help="Print series, points and summaries as JSON."),
) -> None:
    """Show the stored forecast: history, forecast and 80% band, month-end projection and limit risk."""
    from ..service import ml_read

    if metric not in ("cost", "tokens", "requests"):
        raise InputError(f"unknown metric {metric!r}: use cost, tokens or requests")
    if by is not None and by not in ("model", "user", "project", "provider"):
        raise InputError(f"cannot break down by {by!r}: use model, user, project or provider")
    st = state(ctx)
    tz = st.settings.timezone
    now = _now()
    freq = "h" if hourly else "d"
    reader = st.reader()
    try:
        if ml_read.last_training(reader) is None and not ml_read.list_forecasts(reader, metric="cost"):
            raise ModelError("no trained forecasts yet: run `oaim train` first")
        if user or model:
            wanted = [("user", user)] if user else []
            wanted += [("model", model)] if model else []
            found = []
            for dim, key in wanted:
                fc = ml_read.latest_forecast(
                    reader, scope_dim=dim, scope_key=key or "", metric=metric, freq=freq
                )
                if fc is None:
                    raise ModelError(
                        f"no {'hourly' if hourly else 'daily'} {metric} forecast for {dim} {key!r}: "
                        "check the name, or run `oaim train` (hourly series exist for the top users and models)"
                    )
                found.append(fc)
        elif by:
            found = ml_read.list_forecasts(reader, by=by, metric=metric, freq=freq, points=True)
            if not found:
                raise ModelError(f"no {metric} forecasts by {by}: run `oaim train`")
        else:
            fc = ml_read.latest_forecast(reader, metric=metric, freq=freq)
            if fc is None:
                raise ModelError(f"no {'hourly' if hourly else 'daily'} {metric} forecast: run `oaim train`")
            found = [fc]
        limit, limit_name = _limit(st.settings) if metric == "cost" else (None, "")
        reports = [_series_report(reader, fc, now, tz, limit, days) for fc in found]
        drivers = _drivers(reader, metric) if not (user or model or by) else []
        if json_out:
            print_json(
                {
                    "metric": metric,
                    "freq": freq,
                    "days": days,
                    "timezone": tz,
                    "series": reports,
                    "drivers": drivers,
                }
            )
            return
        _print_forecasts(reader, found, reports, drivers, now, tz, days, limit, limit_name)
    finally:
        reader.close()


def _print_forecasts(
    reader: Any,
    found: list,
    reports: list,
    drivers: list,
    now: int,
    tz: str,
    days: int,
    limit: float | None,
    limit_name: str,
) -> None:
    from ..render.charts import forecast_chart

    out = console()
    width = min(max(os.get_terminal_size(1).columns if os.isatty(1) else 100, 40), 140)
    color = os.isatty(1) and not os.environ.get("NO_COLOR")
    money = found[0]["metric"] == "cost"
    fmt = _money if money else (lambda v: "n/a" if v is None else f"{v:,.0f}")
    if len(found) > 6:
        # Chart the biggest series only; the table below lists every one.
        order = sorted(range(len(found)), key=lambda i: -(found[i]["summary"].get("forecast_total") or 0))[:6]
    else:
        order = list(range(len(found)))
    for i in order:
        fc, rep = found[i], reports[i]
        hourly = fc["freq"] == "h"
        hist = _history(reader, fc, now, tz, min(days, 7) * 24 if hourly else max(days, 14))
        label_fmt = "%m-%d %H:00" if hourly else "%m-%d"
        pts = [p for p in fc["points"] if p["ds"] >= (hist[-1][0] if hist else 0) + 1][
            : days * (24 if hourly else 1)
        ]
        chart = forecast_chart(
            [(_local(t, tz, label_fmt), v) for t, v in hist],
            [(_local(p["ds"], tz, label_fmt), p["yhat"], p["yhat_lower"], p["yhat_upper"]) for p in pts],
            title=f"{rep['scope']} {fc['metric']} ({'hourly' if hourly else 'daily'}), {fc['kind']}",
            width=width,
            height=18,
            color=color,
        )
        out.print(chart, markup=False, highlight=False)
        label = fc["kind"] + (f" (fallback: {fc['fallback_reason']})" if fc["fallback_reason"] else "")
        out.print(
            f"{rep['scope']}: model {label}; trained {rep['trained_at']} on {rep['data_range']['start'][:10]}"
            f"..{rep['data_range']['end'][:10]} ({rep['data_range']['rows']} periods)",
            markup=False,
        )
        s = rep["summary"]
        proj = s.get("month_end")
        if proj:
            out.print(
                f"  month-end {s['month']}: {fmt(proj['mean'])} expected (80%: {fmt(proj['lower_80'])}-{fmt(proj['upper_80'])}, "
                f"95%: {fmt(proj['lower_95'])}-{fmt(proj['upper_95'])}); month to date {fmt(s['month_to_date'])}",
                markup=False,
            )
        elif s.get("month"):
            out.print("  month-end projection unavailable: the model is from another month; run `oaim train`")
        if "prob_exceed_limit" in s and s["prob_exceed_limit"] is not None:
            hit = s.get("limit_hit")
            when = ""
            if hit:
                when = (
                    " (already exceeded)"
                    if hit["already_exceeded"]
                    else f"; expected on {hit['expected']} (80%: {hit['lower_80']} to {hit['upper_80'] or 'after month end'})"
                )
            out.print(
                f"  probability of crossing the {limit_name} {_money(limit)} this month: {s['prob_exceed_limit']:.0%}{when}",
                markup=False,
            )
    if len(found) > 1:
        from rich.table import Table

        t = Table(box=None, pad_edge=False)
        for c in (
            "series",
            "model",
            f"next {found[0]['summary'].get('horizon_days', days)} d",
            "month-end",
            "80%",
        ):
            t.add_column(c, justify="left" if c in ("series", "model") else "right")
        for fc, rep in zip(found, reports):
            proj = rep["summary"].get("month_end") or {}
            t.add_row(
                rep["scope"],
                fc["kind"] + ("*" if fc["fallback_reason"] else ""),
                fmt(fc["summary"].get("forecast_total")),
                fmt(proj.get("mean")),
                f"{fmt(proj.get('lower_80'))}-{fmt(proj.get('upper_80'))}" if proj else "",
            )
        out.print(t)
        if any(fc["fallback_reason"] for fc in found):
            out.print("* fallback model (seasonal naive): see --json for the reason")
    if drivers:
        top = [d for d in drivers if d["growth"] > 0][:3]
        if top:
            parts = [
                f"{d['scope']} {fmt(d['growth'])} over {d['horizon_days']} d"
                + (f" ({d['share_of_growth']:.0%} of its dimension's growth)" if d["share_of_growth"] else "")
                for d in top
            ]
            out.print("growth driven by: " + "; ".join(parts), markup=False)
        else:
            out.print("no series is forecast to grow over the last period", markup=False)


# ------------------------------------------------------------------------------------------------ anomalies


def _parse_since(value: str | None, tz: str) -> int | None:
    if value is None:
        return None
    from ..timeutil import parse_date_bound

    return int(parse_date_bound(value, tz))


def _list(
    ctx: typer.Context, since: str | None, scope: str | None, status: str, limit: int, json_out: bool
) -> None:
    from ..service import ml_read

    if status not in ("open", "acked", "expected", "all"):
        raise InputError(f"unknown status {status!r}: use open, acked, expected or all")
    st = state(ctx)
    tz = st.settings.timezone
    reader = st.reader()
    try:
        rows = ml_read.open_anomalies(
            reader, since=_parse_since(since, tz), scope=scope, limit=limit, status=status
        )
        trained = ml_read.last_training(reader)
    finally:
        reader.close()
    if json_out:
        print_json({"anomalies": rows, "last_training": trained})
        return
    out = console()
    if not rows:
        hint = "" if trained else " (no training run yet: run `oaim train`)"
        out.print(f"no {'' if status == 'all' else status + ' '}anomalies{hint}", markup=False)
        return
    from rich.table import Table

    t = Table(box=None, pad_edge=False)
    for c in ("id", "scope", "window", "severity", "impact", "status", "explanation"):
        t.add_column(c, justify="right" if c in ("id", "impact") else "left", overflow="fold")
    for a in rows:
        t.add_row(
            str(a["id"]),
            a["scope"],
            f"{_local(a['start_ts'], tz)}-{_local(a['end_ts'], tz, '%H:%M')}",
            a["severity"],
            _money(a["impact_usd"]),
            a["status"],
            a["explanation"],
        )
    out.print(t)


@anomalies_app.callback(invoke_without_command=True)
def anomalies_default(
    ctx: typer.Context,
    since: str | None = typer.Option(None, "--since", help="Only findings ending after this date/time."),
    scope: str | None = typer.Option(None, "--scope", help="all, user:NAME, model:NAME..."),
    status: str = typer.Option("open", "--status", help="open, acked, expected or all."),
    limit: int = typer.Option(20, "--limit", min=1, help="At most this many findings."),
    json_out: bool = typer.Option(False, "--json", help="Print findings as JSON."),
) -> None:
    """List anomaly findings (open ones by default)."""
    if ctx.invoked_subcommand is None:
        _list(ctx, since, scope, status, limit, json_out)


@anomalies_app.command("list")
def anomalies_list(
    ctx: typer.Context,
    since: str | None = typer.Option(None, "--since", help="Only findings ending after this date/time."),
    scope: str | None = typer.Option(None, "--scope", help="all, user:NAME, model:NAME..."),
    status: str = typer.Option("open", "--status", help="open, acked, expected or all."),
    limit: int = typer.Option(20, "--limit", min=1, help="At most this many findings."),
    json_out: bool = typer.Option(False, "--json", help="Print findings as JSON."),
) -> None:
    """List anomaly findings (open ones by default)."""
    _list(ctx, since, scope, status, limit, json_out)


@anomalies_app.command("ack")
def anomalies_ack(
    ctx: typer.Context,
    anomaly_id: int = typer.Argument(..., metavar="ID", help="Finding id from `oaim anomalies`."),
    expected: bool = typer.Option(
        False, "--expected", help="A known, legitimate event: left out of training and never re-alerted."
    ),
) -> None:
    """Acknowledge a finding (or mark it expected)."""
    from sqlalchemy import text

    st = state(ctx)
    status = "expected" if expected else "acked"
    with st.store.engine.begin() as conn:
        found = conn.execute(text("SELECT status FROM anomalies WHERE id = :id"), {"id": anomaly_id}).first()
        if found is None:
            raise InputError(f"no anomaly with id {anomaly_id}: list them with `oaim anomalies --status all`")
        conn.execute(
            text("UPDATE anomalies SET status = :s, acked_at = :t WHERE id = :id"),
            {"s": status, "t": _now(), "id": anomaly_id},
        )
    hint = "; it is left out of the next `oaim train`" if expected else ""
    console().print(f"anomaly {anomaly_id} marked {status}{hint}", markup=False)


@anomalies_app.command("explain")
def anomalies_explain(
    ctx: typer.Context,
    anomaly_id: int = typer.Argument(..., metavar="ID", help="Finding id from `oaim anomalies`."),
    json_out: bool = typer.Option(False, "--json", help="Print the finding and the chart data as JSON."),
) -> None:
    """Show a finding's evidence and a chart of the window against the usual level."""
    from ..service import ml_read

    st = state(ctx)
    tz = st.settings.timezone
    reader = st.reader()
    try:
        a = ml_read.get_anomaly(reader, anomaly_id)
        if a is None:
            raise InputError(f"no anomaly with id {anomaly_id}: list them with `oaim anomalies --status all`")
        pad = 6 * 3600
        lo, hi = a["start_ts"] - pad, a["end_ts"] + pad
        weeks = 4
        past = dict(ml_read.hourly_totals(reader, lo - weeks * 7 * 86400, hi, a["scope_dim"], a["scope_key"]))
    finally:
        reader.close()
    hours = list(range(lo // 3600 * 3600, hi, 3600))
    observed = [past.get(h, 0.0) for h in hours]
    usual = []
    for h in hours:
        # Median of the same hour over the previous weeks: the "usual" the detector compares with.
        vals = sorted(past.get(h - w * 7 * 86400, 0.0) for w in range(1, weeks + 1))
        usual.append(
            (vals[len(vals) // 2 - 1] + vals[len(vals) // 2]) / 2
            if len(vals) % 2 == 0
            else vals[len(vals) // 2]
        )
    if json_out:
        print_json(dict(a, chart={"hours": hours, "observed_cost": observed, "usual_cost": usual}))
        return
    from rich.table import Table

    from ..render.charts import window_chart

    out = console()
    out.print(
        f"anomaly {a['id']} [{a['status']}] {a['scope']} {_local(a['start_ts'], tz)}-{_local(a['end_ts'], tz, '%H:%M')} "
        f"severity {a['severity']}, score {a['score']:.3f}, impact {_money(a['impact_usd'])}",
        markup=False,
    )
    out.print(a["explanation"], markup=False)
    t = Table(box=None, pad_edge=False, title="evidence (per hour in the window)")
    for c in ("metric", "observed", "usual", "ratio"):
        t.add_column(c, justify="left" if c == "metric" else "right")
    for name, ev in a["evidence"].items():
        ratio = ev.get("ratio")
        t.add_row(
            name,
            f"{ev.get('observed', 0):,.4g}",
            f"{ev.get('usual', 0):,.4g}",
            "new" if ratio in ("inf", None) else f"{float(ratio):.2f}x",
        )
    out.print(t)
    if a["attribution"]:
        t2 = Table(box=None, pad_edge=False, title="attribution (by dollar impact)")
        for c in ("dim", "key", "actual", "expected", "impact", "share"):
            t2.add_column(c, justify="left" if c in ("dim", "key") else "right")
        for r in a["attribution"][:8]:
            t2.add_row(
                r["dim"],
                r["key"],
                _money(r["actual_usd"]),
                _money(r["expected_usd"]),
                _money(r["impact_usd"]),
                f"{r['share']:.0%}",
            )
        out.print(t2)
    color = os.isatty(1) and not os.environ.get("NO_COLOR")
    chart = window_chart(
        [_local(h, tz, "%d %H:00") for h in hours],
        observed,
        usual,
        title="cost per hour: window vs usual",
        color=color,
    )
    out.print(chart, markup=False, highlight=False)
