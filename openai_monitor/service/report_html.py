"""Collects what the static HTML report shows: spend per local day with the stored forecast band, spend by
model / user / project, the hour-of-week heatmap and kinds of days, anomalies and recommendations.

Everything is read from the database and stored forecasts (nothing is fitted here); ``now`` is passed in.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .reports import build_report


def _local_day(ts: int, tz: str) -> str:
    from ..timeutil import zone

    return datetime.fromtimestamp(ts, zone(tz)).strftime("%Y-%m-%d")


def _top(reader: Any, by: str, since: int | None, until: int | None, tz: str, n: int = 10) -> list[dict]:
    rep = build_report(reader, by=by, since=since, until=until, tz=tz)
    rows = sorted(rep.rows, key=lambda r: -r.totals.cost_usd)
    out = []
    for r in rows[:n]:
        out.append({"key": r.group or "(none)", "cost_usd": r.totals.cost_usd, "requests": r.totals.requests})
    rest = rows[n:]
    if rest:
        out.append(
            {
                "key": f"{len(rest)} others",
                "cost_usd": sum(r.totals.cost_usd for r in rest),
                "requests": sum(r.totals.requests for r in rest),
            }
        )
    return out


def _forecast(reader: Any, tz: str, last_day: str | None) -> dict[str, Any] | None:
    from .ml_read import latest_forecast

    fc = latest_forecast(reader)
    if fc is None:
        return None
    pts = [
        {
            "day": _local_day(p["ds"], tz),
            "yhat": p["yhat"],
            "lower": p["yhat_lower_80"],
            "upper": p["yhat_upper_80"],
        }
        for p in fc["points"]
    ]
    if last_day is not None:
        pts = [p for p in pts if p["day"] > last_day]
    return {
        "kind": fc["kind"],
        "trained_at": fc["trained_at"],
        "points": pts,
        "summary": fc.get("summary", {}),
    }


def _recommendations(reader: Any, settings: Any, since: int, now: int) -> dict[str, Any] | None:
    try:
        from .pricing import make_pricer
        from .recommend import recommendations
        from .spend import Db
    except ImportError:
        return None
    return recommendations(
        Db(reader), settings, make_pricer(settings), since, datetime.fromtimestamp(now, timezone.utc)
    )


def gather_report(
    reader: Any, settings: Any, *, since: int | None, until: int | None, tz: str, now: int
) -> dict[str, Any]:
    """All figures of the HTML report as plain data."""
    from .ml_read import open_anomalies
    from .patterns import build_patterns

    summary = build_report(reader, since=since, until=until, tz=tz)
    daily = build_report(reader, period="day", since=since, until=until, tz=tz)
    days = [
        {"day": r.period, "cost_usd": r.totals.cost_usd, "requests": r.totals.requests} for r in daily.rows
    ]
    patterns = build_patterns(reader, by="user", since=since, until=until, tz=tz, session_limit=15)
    rec_since = since if since is not None else (summary.first_ts or now - 30 * 86400)
    return {
        "title": "LLM API spend report",
        "generated_at": now,
        "timezone": tz,
        "since": summary.since,
        "until": summary.until,
        "totals": summary.totals.as_dict(),
        "unpriced_message": summary.unpriced_message(),
        "daily": days,
        "forecast": _forecast(reader, tz, days[-1]["day"] if days else None),
        "by_model": _top(reader, "model", since, until, tz),
        "by_user": _top(reader, "user", since, until, tz),
        "by_project": _top(reader, "project", since, until, tz),
        "patterns": patterns,
        "anomalies": open_anomalies(reader, since=since, status="all", limit=20),
        "recommendations": _recommendations(reader, settings, int(rec_since), now),
    }
