"""Reads the aggregates the recommendations need and runs ``ml.recommend`` on them (portable SQL)."""

from __future__ import annotations

import json
from datetime import datetime
from importlib import resources
from typing import Any

from ..ml import recommend as rec
from .spend import Db

_TOKENS = "input_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, output_tokens, reasoning_tokens"
_SUM_TOKENS = ", ".join(f"SUM({c})" for c in _TOKENS.split(", "))


def load_recommend_data() -> dict[str, Any]:
    return json.loads(resources.files("openai_monitor").joinpath("data/recommend.json").read_text("utf-8"))


def _bucket(r: tuple, user: str = "") -> rec.TokenBucket:
    ts, prov, model, req, i, c, w, w1, o, rs, cost = r[:11]
    return rec.TokenBucket(
        ts=int(ts),
        provider=prov,
        model=model,
        requests=int(req or 0),
        input_tokens=int(i or 0),
        cached_input_tokens=int(c or 0),
        cache_write_tokens=int(w or 0),
        cache_write_1h_tokens=int(w1 or 0),
        output_tokens=int(o or 0),
        reasoning_tokens=int(rs or 0),
        cost_usd=float(cost or 0),
        user=user,
    )


def recommendations(db: Db, settings: Any, pricer: Any, since_ts: int, now: datetime) -> dict[str, Any]:
    """All recommendations for usage in [since_ts, now], largest monthly saving first."""
    data = load_recommend_data()
    now_ts = int(now.timestamp())
    window_days = max((now_ts - since_ts) / 86400, 1 / 24)
    if not db.table_exists("usage_records"):
        return {"window_days": window_days, "recommendations": [], "total_monthly_saving_usd": 0.0}

    # Per UTC day (prices are dated), from the hourly rollup: the window starts at its own hour, as the
    # other figures' windows do (the day rollup would add the whole first day: 0.6% more in a 30-day window).
    daily_model = [
        _bucket(r)
        for r in db.query(
            f"SELECT bucket_ts - bucket_ts % 86400, provider, key, SUM(requests), {_SUM_TOKENS}, SUM(cost_usd) "
            "FROM rollup WHERE grain = 'h' AND dim = 'model' AND bucket_ts >= ? AND bucket_ts <= ? "
            "GROUP BY bucket_ts - bucket_ts % 86400, provider, key",
            (since_ts - since_ts % 3600, now_ts),
        )
    ]
    # Cache shares per (model, user) per UTC day need both keys: read from the raw records.
    cache_rows = db.query(
        f"SELECT ts - ts % 86400, provider, model, SUM(requests), {_SUM_TOKENS}, SUM(COALESCE(cost_usd, 0)), "
        "user_name FROM usage_records WHERE ts >= ? AND ts <= ? AND shadowed = 0 "
        "GROUP BY ts - ts % 86400, provider, model, user_name",
        (since_ts, now_ts),
    )
    cache_buckets = [_bucket(r, r[11]) for r in cache_rows]
    b = data["batch"]
    interactive = list(b["interactive_sources"])
    marks = ", ".join("?" * len(interactive))
    hourly = [
        _bucket(r)
        for r in db.query(
            f"SELECT ts - ts % 3600, provider, model, SUM(requests), {_SUM_TOKENS}, SUM(COALESCE(cost_usd, 0)) "
            f"FROM usage_records WHERE ts >= ? AND ts <= ? AND source NOT IN ({marks}) "
            "AND service_tier != 'batch' AND shadowed = 0 GROUP BY ts - ts % 3600, provider, model",
            (since_ts, now_ts, *interactive),
        )
    ]
    sessions = []
    for r in db.query(
        "SELECT session_id, provider, model, MIN(ts), MAX(ts), SUM(COALESCE(cost_usd, 0)), SUM(requests), "
        "SUM(input_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(output_tokens), "
        "MAX(source), MAX(project) FROM usage_records WHERE ts >= ? AND ts <= ? AND session_id != '' "
        "GROUP BY session_id, provider, model",
        (since_ts, now_ts),
    ):
        sessions.append(
            rec.SessionStats(
                session_id=r[0],
                provider=r[1],
                model=r[2],
                start_ts=int(r[3]),
                end_ts=int(r[4]),
                cost_usd=float(r[5] or 0),
                requests=int(r[6] or 0),
                input_tokens=int(r[7] or 0),
                cached_input_tokens=int(r[8] or 0),
                cache_write_tokens=int(r[9] or 0),
                output_tokens=int(r[10] or 0),
                source=r[11] or "",
                project=r[12] or "",
            )
        )
    # A session spanning several models is shown under the model it spent most on.
    best: dict[str, rec.SessionStats] = {}
    for s in sessions:
        if s.session_id not in best or s.cost_usd > best[s.session_id].cost_usd:
            best[s.session_id] = s
    anomalies: list[dict[str, Any]] = []
    from .monitor import ml_read_module

    ml_read = ml_read_module()
    if db.table_exists("anomalies"):
        anomalies = list(ml_read.open_anomalies(db, since=since_ts, limit=1000))

    cache = data["cache"]
    out = [
        *rec.model_whatif(daily_model, data["families"], pricer, window_days),
        *rec.cache_utilization(
            cache_buckets,
            pricer,
            window_days,
            min_day_input_tokens=int(cache["min_day_input_tokens"]),
            min_gap=float(cache["min_gap"]),
        ),
        *rec.batch_candidates(
            hourly,
            pricer,
            window_days,
            settings.timezone,
            discount_by_provider=b["discount_by_provider"],
            night_hours=tuple(b["night_hours_local"]),
            min_active_day_share=float(b["min_active_day_share"]),
        ),
        *rec.expensive_sessions(list(best.values()), pricer, data["families"], window_days),
        *rec.anomaly_impact(anomalies, window_days),
    ]
    ranked = rec.with_rank(out)
    # Alternatives for one model overlap (gpt-4o -> mini, -> nano): count only the best per model in the total.
    seen: set[tuple[str, str]] = set()
    total = 0.0
    for r in ranked:
        if r.kind == "model_whatif":
            key = (r.details["provider"], r.details["model"])
            if key in seen:
                continue
            seen.add(key)
        total += r.monthly_saving_usd
    return {
        "window_days": window_days,
        "since": since_ts,
        "recommendations": [r.as_dict() for r in ranked],
        "total_monthly_saving_usd": round(total, 6),
        "note": "model what-if alternatives of one model overlap; the total counts only the best of them",
    }
