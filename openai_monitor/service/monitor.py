"""The live monitor's figures, tier status and classification: stdlib + FastReader only (fast to start).

Every money figure carries ``billed`` (reported by the provider, ``cost_reported_usd`` in the rollups) and
``estimated`` (computed here from tokens and prices) next to its ``total``. Forecast figures come from the
rows training stored (``service.ml_read``); without them the monitor shows what is known, a pace
projection labelled as such, and the hint to run ``oaim train``.

Exit codes (for cron and scripts), most urgent first when several apply:
    0  normal
    10 over budget: a budget reached its top threshold, or month-to-date spend reached the plan limit
    11 projected to exceed the plan's monthly limit (forecast probability >= 50%, or pace without one)
    12 an anomaly is open
    13 data stale: no collection for ``daemon.stale_hours``
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any

from ..errors import ConfigError
from ..timeutil import zone
from .spend import Db, Spend, period_bounds, spend_between

EXIT_OK = 0
EXIT_OVER_BUDGET = 10
EXIT_PROJECTED_OVER = 11
EXIT_ANOMALY_OPEN = 12
EXIT_STALE = 13
EXIT_CODES = {
    EXIT_OK: "normal",
    EXIT_OVER_BUDGET: "over a budget threshold or the plan's monthly limit",
    EXIT_PROJECTED_OVER: "projected to exceed the plan's monthly limit",
    EXIT_ANOMALY_OPEN: "an anomaly is open",
    EXIT_STALE: "data stale (no recent collection)",
}
TRAINING_STALE_HOURS = 48.0
PEAK_WINDOW_DAYS = 30


# ---------------------------------------------------------------------------------------- tier data


def load_tier_table(settings: Any):
    """The bundled tier data with the config's ``[tiers]`` overrides applied."""
    from ..ml.tiers import parse_tiers

    raw = json.loads(resources.files("openai_monitor").joinpath("data/tiers.json").read_text("utf-8"))
    extra = getattr(settings, "model_extra", None) or {}
    return parse_tiers(raw, extra.get("tiers"))


def _spend_dict(s: Spend) -> dict[str, Any]:
    return {
        "total_usd": round(s.total_usd, 6),
        "billed_usd": round(s.billed_usd, 6),
        "estimated_usd": round(s.estimated_usd, 6),
        "unpriced_records": s.unpriced_records,
    }


def _meta(db: Db, key: str) -> Any:
    if not db.table_exists("meta_kv"):
        return None
    rows = db.query("SELECT value FROM meta_kv WHERE key = ?", (key,))
    if not rows:
        return None
    try:
        return json.loads(rows[0][0])
    except (TypeError, ValueError):
        return rows[0][0]


def peak_rates(db: Db, now_ts: int, days: int = PEAK_WINDOW_DAYS) -> dict[str, Any]:
    """Peak requests and tokens (input + output) per minute over the last ``days``, and the busiest model.

    Per-call records are grouped by minute; provider aggregate buckets longer than a minute contribute
    their average rate (the peak inside them is unknowable)."""
    since = now_ts - days * 86400
    fine = db.query(
        "SELECT MAX(r), MAX(t) FROM (SELECT SUM(requests) AS r, SUM(input_tokens + output_tokens) AS t "
        "FROM usage_records WHERE ts >= ? AND bucket_seconds <= 60 GROUP BY ts - ts % 60) x",
        (since,),
    )
    coarse = db.query(
        "SELECT MAX(r), MAX(t) FROM (SELECT SUM(requests) * 60.0 / bucket_seconds AS r, "
        "SUM(input_tokens + output_tokens) * 60.0 / bucket_seconds AS t FROM usage_records "
        "WHERE ts >= ? AND bucket_seconds > 60 GROUP BY ts, bucket_seconds) x",
        (since,),
    )
    rpm = max(float((fine[0][0] if fine else 0) or 0), float((coarse[0][0] if coarse else 0) or 0))
    tpm = max(float((fine[0][1] if fine else 0) or 0), float((coarse[0][1] if coarse else 0) or 0))
    top = db.query(
        "SELECT model, SUM(requests) FROM usage_records WHERE ts >= ? AND provider = 'openai' AND shadowed = 0 "
        "GROUP BY model ORDER BY 2 DESC LIMIT 1",
        (since,),
    )
    span = db.query("SELECT MIN(ts), MAX(ts) FROM usage_records")
    history_days = None
    if span and span[0][0] is not None:
        history_days = int((int(span[0][1]) - int(span[0][0])) // 86400) + 1
    return {
        "peak_rpm": rpm,
        "peak_tpm": tpm,
        "model": top[0][0] if top else None,
        "window_days": days,
        "history_days": history_days,
    }


# ---------------------------------------------------------------------------------------- forecasts


def ml_read_module():
    """``service.ml_read``: the training pipeline's stdlib read API over stored forecasts and anomalies."""
    from . import ml_read

    return ml_read


def _forecast(db: Db) -> dict[str, Any] | None:
    return ml_read_module().latest_forecast(db, scope_dim="all", scope_key="", metric="cost", freq="d")


def _point_rows(fc: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Forecast points as dicts with ``ds`` (UTC seconds), ``yhat`` and the 80% band when present."""
    if not fc:
        return []
    out = []
    for p in fc.get("points") or []:
        if isinstance(p, dict):
            ds = p.get("ds")
            if isinstance(ds, str):
                ds = int(datetime.fromisoformat(ds).replace(tzinfo=timezone.utc).timestamp())
            out.append({**p, "ds": int(ds)})
    return out


# -------------------------------------------------------------------------------------------- frame


def _top(db: Db, dim: str, start: int, end: int, n: int = 5) -> list[dict[str, Any]]:
    rows = db.query(
        "SELECT key, provider, SUM(cost_usd), SUM(cost_reported_usd), SUM(requests) FROM rollup "
        "WHERE grain = 'h' AND dim = ? AND bucket_ts >= ? AND bucket_ts < ? "
        "GROUP BY key, provider ORDER BY 3 DESC LIMIT ?",
        (dim, start, end, n),
    )
    # Provider only where the rollup keeps it (model rows); users and projects are summed over providers.
    return [
        {
            "key": r[0] or "(none)",
            **({"provider": r[1]} if r[1] else {}),
            "total_usd": round(float(r[2] or 0), 6),
            "billed_usd": round(float(r[3] or 0), 6),
            "estimated_usd": round(float(r[2] or 0) - float(r[3] or 0), 6),
            "requests": int(r[4] or 0),
        }
        for r in rows
    ]


def _daily(db: Db, start: datetime, end_ts: int, tz: str) -> list[tuple[str, float]]:
    """Local-day totals from the hourly rollup, from ``start`` (local midnight) to ``end_ts``."""
    z = zone(tz)
    rows = db.query(
        "SELECT bucket_ts, SUM(cost_usd) FROM rollup WHERE grain = 'h' AND dim = 'model' "
        "AND bucket_ts >= ? AND bucket_ts < ? GROUP BY bucket_ts",
        (int(start.timestamp()), end_ts),
    )
    by_day: dict[str, float] = {}
    d = start.date()
    last = datetime.fromtimestamp(end_ts - 1, z).date() if end_ts > start.timestamp() else d
    while d <= last:
        by_day[d.isoformat()] = 0.0
        d += timedelta(days=1)
    for ts, cost in rows:
        key = datetime.fromtimestamp(int(ts), z).date().isoformat()
        if key in by_day:
            by_day[key] += float(cost or 0)
    return list(by_day.items())


def resolve_plan(settings: Any, plan: str | None, limit: float | None) -> tuple[str, float | None, str]:
    """(plan id, explicit limit or None, where the plan came from)."""
    from ..config import PLANS

    chosen = plan or settings.plan
    if chosen not in PLANS:
        raise ConfigError(f"unknown plan {chosen!r}; use one of {', '.join(PLANS)}")
    lim = limit if limit is not None else settings.limit_usd
    if lim is not None and lim <= 0:
        raise ConfigError(f"--limit must be a positive amount of USD, got {lim}")
    if chosen == "custom" and lim is None:
        raise ConfigError("plan custom needs a limit: pass --limit USD or `oaim config set limit_usd 250`")
    return chosen, lim, "option" if plan else "config"


def classify(db: Db, settings: Any, now: datetime, projection: dict[str, Any] | None) -> dict[str, Any]:
    """Usage-based tier classification from the month-end projection and the peak per-minute rates."""
    from ..ml.tiers import classify_usage

    table = load_tier_table(settings)
    peaks = peak_rates(db, int(now.timestamp()))
    proj = projection or {}
    c = classify_usage(
        table,
        month_end_mean=float(proj.get("mean_usd") or 0.0),
        month_end_upper_80=proj.get("upper_80_usd"),
        peak_rpm=peaks["peak_rpm"],
        peak_tpm=peaks["peak_tpm"],
        model=peaks["model"],
        history_days=peaks["history_days"],
    )
    return {
        "tier": c.tier.id,
        "name": c.tier.name,
        "monthly_limit_usd": c.tier.monthly_limit_usd,
        "confidence": c.confidence,
        "confidence_label": c.confidence_label,
        "evidence": list(c.evidence),
        "spend_tier": c.spend_tier.id,
        "rate_tier": c.rate_tier.id if c.rate_tier else None,
        "rate_model": c.rate_model,
        "peaks": peaks,
        "projection_basis": proj.get("basis"),
    }


def _projection(
    db: Db,
    fc: dict[str, Any] | None,
    mtd: float,
    limit: float | None,
    now: datetime,
    start: datetime,
    end: datetime,
) -> dict[str, Any] | None:
    summary = (fc or {}).get("summary") or {}
    now_ts = int(now.timestamp())
    ml = ml_read_module()
    # Re-based on the spend so far; None when the stored summary is from another month (retrain).
    me = ml.projection(summary, mtd, now_ts) if summary else None
    if me:
        out: dict[str, Any] = {
            "basis": "forecast",
            "kind": fc.get("kind") if fc else None,
            "trained_at": fc.get("trained_at") if fc else None,
            "mean_usd": me.get("mean"),
            "lower_80_usd": me.get("lower_80"),
            "upper_80_usd": me.get("upper_80"),
            "lower_95_usd": me.get("lower_95"),
            "upper_95_usd": me.get("upper_95"),
            "prob_exceed_limit": None,
            "limit_hit": None,
        }
        if limit is not None:
            out["prob_exceed_limit"] = ml.prob_exceed(summary, mtd, limit, now_ts)
            out["limit_hit"] = ml.limit_hit(summary, mtd, limit, now_ts)
        return out
    elapsed = now.timestamp() - start.timestamp()  # epoch seconds: DST-safe
    if elapsed <= 0 or mtd <= 0:
        return None
    pace = mtd / elapsed * (end.timestamp() - start.timestamp())
    out = {
        "basis": "pace",
        "kind": "linear pace (no trained forecast)",
        "trained_at": None,
        "mean_usd": pace,
        "lower_80_usd": None,
        "upper_80_usd": None,
        "prob_exceed_limit": None,
        "limit_hit": None,
    }
    if limit is not None and pace > limit:
        cross = datetime.fromtimestamp(start.timestamp() + limit / (mtd / elapsed), start.tzinfo)
        out["limit_hit"] = {"expected": cross.date().isoformat(), "probability": None, "basis": "pace"}
    return out


def gather(
    db: Db,
    settings: Any,
    now: datetime,
    *,
    plan: str | None = None,
    limit: float | None = None,
    tz: str | None = None,
) -> dict[str, Any]:
    """Every figure of one monitor frame, JSON-able, with ``exit_code`` and the reasons for it."""
    from .budgets import budget_status

    tz = tz or settings.timezone
    zone(tz)  # validates the name before any query
    table = load_tier_table(settings)
    plan_id, explicit_limit, plan_source = resolve_plan(settings, plan, limit)
    now_ts = int(now.timestamp())
    m_start, m_end = period_bounds("monthly", now, tz)
    d_start, d_end = period_bounds("daily", now, tz)
    have_data = db.table_exists("rollup")
    hints: list[str] = []
    if not have_data or not db.query("SELECT 1 FROM rollup LIMIT 1"):
        hints.append("no usage yet: run `oaim import claude-code` (or another source) or `oaim demo`")

    mtd = spend_between(db, int(m_start.timestamp()), now_ts + 1) if have_data else Spend(0, 0)
    today = spend_between(db, int(d_start.timestamp()), now_ts + 1) if have_data else Spend(0, 0)
    last_hour = spend_between(db, now_ts - 3600, now_ts + 1) if have_data else Spend(0, 0)
    last_day = spend_between(db, now_ts - 86400, now_ts + 1) if have_data else Spend(0, 0)
    hours_today = max((now - d_start).total_seconds() / 3600, 1e-9)

    fc = _forecast(db)
    if fc is None:
        hints.append("no forecast trained yet: run `oaim train`")
    points = _point_rows(fc)

    proj_for_auto = _projection(db, fc, mtd.total_usd, None, now, m_start, m_end)
    classification = None
    if plan_id == "auto":
        classification = classify(db, settings, now, proj_for_auto)
        plan_tier = table.get(classification["tier"])
    else:
        plan_tier = table.get(plan_id) if plan_id != "custom" else None
    if explicit_limit is not None:
        limit_usd: float | None = float(explicit_limit)
        limit_source = "option" if limit is not None else "config limit_usd"
    else:
        limit_usd = plan_tier.monthly_limit_usd if plan_tier else None
        limit_source = f"{plan_tier.name} tier data ({table.as_of})" if plan_tier else "none"
    projection = _projection(db, fc, mtd.total_usd, limit_usd, now, m_start, m_end)

    today_fc = next((p for p in points if int(d_start.timestamp()) <= p["ds"] < int(d_end.timestamp())), None)
    daily = _daily(db, m_start, now_ts + 1, tz) if have_data else []
    fc_days = [p for p in points if int(d_start.timestamp()) <= p["ds"] < int(m_end.timestamp())]

    ml = ml_read_module()
    anomalies: list[dict[str, Any]] = []
    if db.table_exists("anomalies"):
        anomalies = list(ml.open_anomalies(db, limit=5))
    rate_limits = None
    if db.table_exists("ratelimit_snapshots"):
        rows = db.query(
            "SELECT r.provider, r.model, r.ts, r.limit_requests, r.remaining_requests, r.limit_tokens, "
            "r.remaining_tokens, r.reset_requests_s, r.reset_tokens_s FROM ratelimit_snapshots r "
            "JOIN (SELECT provider, model, MAX(ts) AS ts FROM ratelimit_snapshots GROUP BY provider, model) l "
            "ON r.provider = l.provider AND r.model = l.model AND r.ts = l.ts ORDER BY r.ts DESC LIMIT 5"
        )
        rate_limits = [
            {
                "provider": r[0],
                "model": r[1],
                "ts": int(r[2]),
                "limit_requests": r[3],
                "remaining_requests": r[4],
                "limit_tokens": r[5],
                "remaining_tokens": r[6],
                "requests_headroom": (r[4] / r[3]) if r[3] and r[4] is not None else None,
                "tokens_headroom": (r[6] / r[5]) if r[5] and r[6] is not None else None,
                "reset_requests_s": r[7],
                "reset_tokens_s": r[8],
            }
            for r in rows
        ]

    # freshness
    last_collection = _meta(db, "last_collection_at")
    if last_collection is None and db.table_exists("import_runs"):
        rows = db.query("SELECT MAX(finished_at) FROM import_runs WHERE finished_at IS NOT NULL")
        last_collection = rows[0][0] if rows and rows[0][0] is not None else None
    newest = db.query("SELECT MAX(ts) FROM usage_records") if db.table_exists("usage_records") else []
    newest_ts = int(newest[0][0]) if newest and newest[0][0] is not None else None
    stale_h = float(settings.daemon.stale_hours)
    coll_age = (now_ts - int(last_collection)) / 3600 if last_collection is not None else None
    collection_stale = coll_age is not None and coll_age > stale_h
    training = ml.last_training(db)
    trained_at = None
    if training:
        trained_at = training.get("finished_at") or training.get("started_at")
    if trained_at is None and fc:
        trained_at = fc.get("trained_at")
    train_age = (now_ts - int(trained_at)) / 3600 if trained_at is not None else None
    training_stale = train_age is not None and train_age > max(TRAINING_STALE_HOURS, 2 * stale_h)
    if training_stale:
        hints.append(f"the forecast is {train_age / 24:.0f} days old: run `oaim train`")
    if collection_stale:
        hints.append(f"last collection {coll_age:.0f} h ago: run `oaim import ...` or start the daemon")

    statuses = budget_status(db, settings, now, tz) if db.table_exists("budgets") else []

    # exit code: most urgent condition first
    alerts: list[dict[str, Any]] = []
    top_levels = {s.budget.id: max((t for t in s.thresholds_crossed), default=0) for s in statuses}
    from .budgets import thresholds

    top_threshold = max(thresholds(settings))
    over = [s for s in statuses if top_levels[s.budget.id] >= top_threshold]
    if over or (limit_usd is not None and mtd.total_usd >= limit_usd):
        why = [f"{s.budget.period} budget #{s.budget.id} at {s.pct:.0f}%" for s in over]
        if limit_usd is not None and mtd.total_usd >= limit_usd:
            why.append(f"month-to-date ${mtd.total_usd:,.2f} >= limit ${limit_usd:,.2f}")
        alerts.append({"code": EXIT_OVER_BUDGET, "reason": "; ".join(why)})
    if projection and limit_usd is not None and mtd.total_usd < limit_usd:
        p = projection.get("prob_exceed_limit")
        projected = (p is not None and p >= 0.5) or (
            projection["basis"] == "pace" and (projection.get("mean_usd") or 0) > limit_usd
        )
        if projected:
            alerts.append(
                {
                    "code": EXIT_PROJECTED_OVER,
                    "reason": f"projected ${projection['mean_usd']:,.2f} vs limit ${limit_usd:,.2f}"
                    + (f" ({p:.0%} likely)" if p is not None else " (pace)"),
                }
            )
    if anomalies:
        alerts.append({"code": EXIT_ANOMALY_OPEN, "reason": f"{len(anomalies)} open anomalies"})
    if collection_stale:
        alerts.append(
            {"code": EXIT_STALE, "reason": f"last collection {coll_age:.1f} h ago (> {stale_h:g} h)"}
        )
    exit_code = min((a["code"] for a in alerts), default=EXIT_OK)

    return {
        "now": now.astimezone(zone(tz)).isoformat(),
        "timezone": tz,
        "plan": {
            "id": plan_id,
            "source": plan_source,
            "tier": plan_tier.id if plan_tier else None,
            "limit_usd": limit_usd,
            "limit_source": limit_source,
            "classification": classification,
        },
        "month": {
            "start": m_start.isoformat(),
            "end": m_end.isoformat(),
            "spent": _spend_dict(mtd),
            "pct_of_limit": (mtd.total_usd / limit_usd * 100) if limit_usd else None,
        },
        "today": {
            "date": d_start.date().isoformat(),
            "spent": _spend_dict(today),
            "forecast_usd": today_fc.get("yhat") if today_fc else None,
            "forecast_lower_80_usd": today_fc.get("yhat_lower_80") if today_fc else None,
            "forecast_upper_80_usd": today_fc.get("yhat_upper_80") if today_fc else None,
        },
        "burn_rate": {
            "last_hour_usd": round(last_hour.total_usd, 6),
            "last_24h_usd": round(last_day.total_usd, 6),
            "today_per_hour_usd": round(today.total_usd / hours_today, 6),
            "billed_share_24h": (last_day.billed_usd / last_day.total_usd) if last_day.total_usd else None,
        },
        "projection": projection,
        "chart": {
            "actual": [{"date": d, "total_usd": round(v, 6)} for d, v in daily],
            "forecast": [
                {
                    "date": datetime.fromtimestamp(p["ds"], zone(tz)).date().isoformat(),
                    "yhat": p.get("yhat"),
                    "lower_80": p.get("yhat_lower_80"),
                    "upper_80": p.get("yhat_upper_80"),
                }
                for p in fc_days
            ],
        },
        "top": {
            dim: _top(db, dim, int(m_start.timestamp()), now_ts + 1) if have_data else []
            for dim in ("model", "user", "project")
        },
        "anomalies": anomalies,
        "rate_limits": rate_limits,
        "freshness": {
            "last_collection_at": last_collection,
            "last_collection_age_h": coll_age,
            "collection_stale": collection_stale,
            "newest_record_ts": newest_ts,
            "last_training_at": trained_at,
            "last_training_age_h": train_age,
            "training_stale": training_stale,
            "stale_hours": stale_h,
        },
        "budgets": [s.as_dict() for s in statuses],
        "hints": hints,
        "alerts": alerts,
        "exit_code": exit_code,
    }


# --------------------------------------------------------------------------------------------- tier


def tier_report(db: Db, settings: Any, now: datetime, tz: str | None = None) -> dict[str, Any]:
    """Current tier from total paid and first payment, progress to the next, headroom, and the tier the
    usage needs."""
    from datetime import date

    from ..ml.tiers import current_tier

    tz = tz or settings.timezone
    table = load_tier_table(settings)
    today = now.astimezone(zone(tz)).date()
    paid = settings.total_paid_usd
    first = settings.first_payment_date
    hints = []
    try:
        first_d = date.fromisoformat(str(first)) if first else None
    except ValueError as e:
        raise ConfigError(
            f"first_payment_date {first!r} is not a date; fix it with `oaim config set first_payment_date 2025-01-31`"
        ) from e
    status = None
    if paid is None:
        hints.append(
            "set what you have paid to know your tier: `oaim config set total_paid_usd 120` and "
            "`oaim config set first_payment_date 2025-01-31`"
        )
    else:
        s = current_tier(table, float(paid), first_d, today)
        status = {
            "tier": s.tier.id,
            "name": s.tier.name,
            "monthly_limit_usd": s.tier.monthly_limit_usd,
            "total_paid_usd": s.total_paid_usd,
            "days_since_first_payment": s.days_since_first_payment,
            "next_tier": s.next_tier.id if s.next_tier else None,
            "next_qualification": s.next_tier.qualification if s.next_tier else None,
            "paid_needed_usd": s.paid_needed_usd,
            "days_needed": s.days_needed,
            "next_eligible_date": s.next_eligible_date.isoformat() if s.next_eligible_date else None,
        }
        if first_d is None and s.next_tier and s.next_tier.min_days_since_first_payment:
            hints.append("set first_payment_date to count the days the next tier needs")
    m_start, m_end = period_bounds("monthly", now, tz)
    have = db.table_exists("rollup")
    mtd = spend_between(db, int(m_start.timestamp()), int(now.timestamp()) + 1) if have else Spend(0, 0)
    fc = _forecast(db)
    proj = _projection(db, fc, mtd.total_usd, None, now, m_start, m_end)
    limit = (status or {}).get("monthly_limit_usd") or table.get(
        settings.plan if settings.plan not in ("auto", "custom") else "tier1"
    ).monthly_limit_usd
    if settings.limit_usd is not None:
        limit = float(settings.limit_usd)
    headroom = {
        "limit_usd": limit,
        "now_usd": limit - mtd.total_usd,
        "month_end_usd": (limit - proj["mean_usd"]) if proj and proj.get("mean_usd") is not None else None,
        "projection_basis": proj.get("basis") if proj else None,
    }
    if fc is None:
        hints.append("no forecast trained yet: run `oaim train` for a month-end projection")
    return {
        "as_of": table.as_of,
        "source": table.source,
        "current": status,
        "month_to_date": _spend_dict(mtd),
        "headroom": headroom,
        "usage_needs": classify(db, settings, now, proj),
        "tiers": [
            {
                "id": t.id,
                "name": t.name,
                "qualification": t.qualification,
                "monthly_limit_usd": t.monthly_limit_usd,
                "rate_limits": dict(t.rate_limits),
                "history": list(t.history),
            }
            for t in table.tiers
        ],
        "hints": hints,
    }
