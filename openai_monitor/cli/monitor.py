"""The live monitor (also the default command), tiers, budgets and recommendations.

Read paths use the FastReader only: no SQLAlchemy, pandas, Prophet or scikit-learn import. Exit codes of
the monitor are listed in ``service.monitor`` (0 normal, 10 over budget, 11 projected over the limit,
12 anomaly open, 13 data stale)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import typer

from ..errors import InputError
from .common import console, print_json, state

budget_app = typer.Typer(help="Spending budgets per day, week or month, with warnings.", no_args_is_help=True)

_PLAN_HELP = "free | tier1..tier5 | auto (classify from usage) | custom (with --limit)."


def register(app: typer.Typer) -> None:
    from . import set_default_command

    app.command("monitor")(monitor_cmd)
    app.command("tier")(tier_cmd)
    app.add_typer(budget_app, name="budget")
    app.command("recommend")(recommend_cmd)
    set_default_command(run_monitor)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _db(ctx: typer.Context):
    from ..service.spend import Db

    return Db(state(ctx).reader())


def run_monitor(
    ctx: typer.Context,
    plan: str | None = None,
    limit: float | None = None,
    timezone: str | None = None,
    refresh: float = 10.0,
    once: bool = False,
    json_out: bool = False,
) -> None:
    """Show the dashboard (live, ``--once`` or ``--json``); exit with the frame's exit code."""
    from ..service.monitor import gather

    st = state(ctx)
    settings = st.settings
    if refresh <= 0:
        raise InputError(f"--refresh must be a positive number of seconds, got {refresh}")
    db = _db(ctx)
    if json_out:
        frame = gather(db, settings, _now(), plan=plan, limit=limit, tz=timezone)
        print_json(frame)
        raise typer.Exit(frame["exit_code"])
    con = console()
    color = not con.no_color and con.is_terminal
    if once or not con.is_terminal:
        frame = gather(db, settings, _now(), plan=plan, limit=limit, tz=timezone)
        con.print(_render(frame, con, color))
        raise typer.Exit(frame["exit_code"])
    from rich.live import Live

    frame = gather(db, settings, _now(), plan=plan, limit=limit, tz=timezone)
    try:
        with Live(_render(frame, con, color), console=con, screen=True, auto_refresh=False) as live:
            while True:
                time.sleep(refresh)
                db.handle.close()
                db = _db(ctx)  # a fresh read connection sees rows the collector committed meanwhile
                frame = gather(db, settings, _now(), plan=plan, limit=limit, tz=timezone)
                live.update(_render(frame, con, color), refresh=True)
    except KeyboardInterrupt:
        pass  # Live's context manager has restored the terminal
    raise typer.Exit(0)


def _render(frame: dict[str, Any], con: Any, color: bool):
    from ..render.dashboard import render_frame

    w, h = con.size
    return render_frame(frame, width=w, height=h, color=color)


def monitor_cmd(
    ctx: typer.Context,
    plan: str | None = typer.Option(None, "--plan", help=_PLAN_HELP),
    limit: float | None = typer.Option(None, "--limit", help="Monthly limit in USD (overrides the plan's)."),
    timezone: str | None = typer.Option(None, "--timezone", help="IANA time zone for days and months."),
    refresh: float = typer.Option(10.0, "--refresh", help="Seconds between refreshes."),
    once: bool = typer.Option(False, "--once", help="Print one frame and exit."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON and exit."),
) -> None:
    """Live dashboard: spend vs limit, forecast, burn rate, anomalies, budgets. Exit codes: 0 normal,
    10 over budget/limit, 11 projected over the limit, 12 anomaly open, 13 data stale."""
    root = state(ctx).extra.get("monitor_opts") or {}
    run_monitor(
        ctx,
        plan=plan or root.get("plan"),
        limit=limit if limit is not None else root.get("limit"),
        timezone=timezone or root.get("timezone"),
        refresh=refresh,
        once=once or bool(root.get("once")),
        json_out=json_out or bool(root.get("json_out")),
    )


# --------------------------------------------------------------------------------------------- tier


def tier_cmd(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Your OpenAI usage tier, progress to the next, headroom, and the tier your usage needs."""
    from ..service.monitor import tier_report

    rep = tier_report(_db(ctx), state(ctx).settings, _now())
    if json_out:
        print_json(rep)
        return
    con = console()
    cur = rep["current"]
    if cur:
        con.print(
            f"Tier: {cur['name']} (monthly limit ${cur['monthly_limit_usd']:,.0f}; paid ${cur['total_paid_usd']:,.2f})"
        )
        if cur["next_tier"]:
            need = []
            if cur["paid_needed_usd"] > 0:
                need.append(f"${cur['paid_needed_usd']:,.2f} more paid")
            if cur["days_needed"] > 0:
                need.append(f"{cur['days_needed']} more days")
            con.print(
                f"Next: {cur['next_tier']} ({cur['next_qualification']}): "
                + (", ".join(need) if need else "qualifies now: it applies after the next payment")
            )
    h = rep["headroom"]
    line = f"Headroom under ${h['limit_usd']:,.0f}: ${h['now_usd']:,.2f} now"
    if h["month_end_usd"] is not None:
        line += f", ${h['month_end_usd']:,.2f} at month end ({h['projection_basis']})"
    con.print(line)
    u = rep["usage_needs"]
    con.print(f"Your usage needs: {u['name']} ({u['confidence_label']} confidence, {u['confidence']:.0%})")
    for e in u["evidence"]:
        con.print(f"  - {e}")
    con.print(f"Tier data as of {rep['as_of']}; source: {rep['source'][:90]}...")
    for hint in rep["hints"]:
        con.print(f"hint: {hint}")


# ------------------------------------------------------------------------------------------ budgets


def _scope(user: str | None, model: str | None, project: str | None) -> tuple[str, str]:
    given = [(d, v) for d, v in (("user", user), ("model", model), ("project", project)) if v is not None]
    if len(given) > 1:
        raise InputError("give at most one of --user, --model, --project")
    return given[0] if given else ("all", "")


@budget_app.command("set")
def budget_set(
    ctx: typer.Context,
    amount: float = typer.Argument(..., help="Amount in USD per period."),
    period: str = typer.Option("monthly", "--period", help="daily | weekly | monthly."),
    user: str | None = typer.Option(None, "--user", help="Only this user's usage."),
    model: str | None = typer.Option(None, "--model", help="Only this model's usage."),
    project: str | None = typer.Option(None, "--project", help="Only this project's usage."),
) -> None:
    """Add a budget."""
    from ..service.budgets import add_budget
    from ..service.spend import Db

    dim, key = _scope(user, model, project)
    bid = add_budget(Db(state(ctx).store), amount, period, dim, key)
    scope = "all usage" if dim == "all" else f"{dim} {key}"
    typer.echo(f"budget #{bid}: ${amount:,.2f} {period} for {scope}")


@budget_app.command("list")
def budget_list(
    ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="Print as JSON.")
) -> None:
    """List budgets."""
    from dataclasses import asdict

    from ..service.budgets import list_budgets

    budgets = list_budgets(_db(ctx))
    if json_out:
        print_json([asdict(b) for b in budgets])
        return
    if not budgets:
        typer.echo("no budgets: add one with `oaim budget set 100 --period monthly`")
        return
    for b in budgets:
        typer.echo(f"#{b.id}  ${b.amount_usd:,.2f} {b.period:<8} {b.scope}")


@budget_app.command("rm")
def budget_rm(
    ctx: typer.Context, budget_id: int = typer.Argument(..., help="Budget id (see `oaim budget list`).")
) -> None:
    """Remove a budget."""
    from ..service.budgets import remove_budget
    from ..service.spend import Db

    remove_budget(Db(state(ctx).store), budget_id)
    typer.echo(f"removed budget #{budget_id}")


@budget_app.command("status")
def budget_status_cmd(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
    timezone: str | None = typer.Option(None, "--timezone", help="IANA time zone for the periods."),
) -> None:
    """Spend against each budget in its current period, with thresholds and a forecast warning."""
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    from ..service.budgets import budget_status

    statuses = budget_status(_db(ctx), state(ctx).settings, _now(), timezone)
    if json_out:
        print_json([s.as_dict() for s in statuses])
        return
    if not statuses:
        typer.echo("no budgets: add one with `oaim budget set 100 --period monthly`")
        return
    con = console()
    t = Table(box=None, padding=(0, 1))
    for col in ("#", "period", "scope", "", "spent / budget", "note"):
        t.add_column(col, no_wrap=col != "note")
    for s in statuses:
        d = s.as_dict()
        b = s.budget
        t.add_row(
            str(b.id),
            f"{b.period} from {s.period_start.strftime('%m-%d')}",
            b.scope,
            ProgressBar(total=b.amount_usd, completed=min(s.spend.total_usd, b.amount_usd), width=20),
            f"${d['spent_usd']:,.2f} / ${b.amount_usd:,.2f} ({d['pct']:.0f}%)",
            (s.warning or {}).get("message", "")
            + (f" [billed ${d['billed_usd']:,.2f}, est. ${d['estimated_usd']:,.2f}]"),
        )
    con.print(t)


# ---------------------------------------------------------------------------------------- recommend


def recommend_cmd(
    ctx: typer.Context,
    since: str = typer.Option("30d", "--since", help="Window start: YYYY-MM-DD, ISO time, or 30d / 24h ago."),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Ways to spend less: cheaper models, caching, batch API, costly sessions, anomalies."""
    from ..service.pricing import make_pricer
    from ..service.recommend import recommendations
    from ..timeutil import parse_date_bound

    st = state(ctx)
    now = _now()
    since_ts = parse_date_bound(since, st.settings.timezone)
    if since_ts >= int(now.timestamp()):
        raise InputError(f"--since {since} is not in the past; use e.g. --since 30d")
    res = recommendations(_db(ctx), st.settings, make_pricer(st.settings), since_ts, now)
    if json_out:
        print_json(res)
        return
    recs = res["recommendations"]
    if not recs:
        typer.echo(f"no recommendations for the last {res['window_days']:.0f} days")
        return
    con = console()
    con.print(
        f"Recommendations from the last {res['window_days']:.0f} days (savings per month, may overlap):"
    )
    for i, r in enumerate(recs, 1):
        con.print(f"{i}. {r['title']}  [{r['confidence_label']} confidence]")
        for e in r["evidence"]:
            con.print(f"     {e}")
    con.print(
        f"total (best alternative per model; kinds may overlap): ${res['total_monthly_saving_usd']:,.2f}/month"
    )
