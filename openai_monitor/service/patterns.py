"""Usage patterns for ``oaim patterns`` and the HTML report: reads the hourly rollup, CLI-log sessions and
stored Prophet artefacts, runs ``ml.patterns`` on them. Not a fast read command (pandas, scikit-learn and,
when models exist, Prophet are imported here, lazily)."""

from __future__ import annotations

from typing import Any

from ..errors import InputError

BY_DIMS = ("user", "model", "project")
METRICS = {"cost": "cost_usd", "requests": "requests", "tokens": "input_tokens + output_tokens"}
TRAIN_HINT = "no trained forecasts: run `oaim train` to learn the weekly and daily seasonality"


def bounds_sql(column: str, since: int | None, until: int | None) -> tuple[str, list[Any]]:
    """`` AND column >= ? AND column < ?`` for the bounds given (``[since, until)``) and its parameters."""
    sql, params = "", []
    if since is not None:
        sql += f" AND {column} >= ?"
        params.append(int(since))
    if until is not None:
        sql += f" AND {column} < ?"
        params.append(int(until))
    return sql, params


def hourly_rows(
    reader: Any, by: str, metric: str, since: int | None, until: int | None
) -> tuple[list[int], list[str], list[float]]:
    """(hour starts, keys, values) of the hourly rollup for one dimension."""
    if not (reader.exists and reader.table_exists("rollup")):
        return [], [], []
    where, params = bounds_sql("bucket_ts", since, until)
    rows = reader.query(
        f"SELECT bucket_ts, key, SUM({METRICS[metric]}) FROM rollup WHERE grain = 'h' AND dim = ?{where} "
        "GROUP BY bucket_ts, key ORDER BY bucket_ts",
        [by, *params],
    )
    return [int(r[0]) for r in rows], [str(r[1]) for r in rows], [float(r[2] or 0.0) for r in rows]


def session_rows(reader: Any, since: int | None, until: int | None) -> list[tuple]:
    if not (reader.exists and reader.table_exists("usage_records")):
        return []
    where, params = bounds_sql("ts", since, until)
    return reader.query(
        "SELECT session_id, model, MIN(ts), MAX(ts), SUM(COALESCE(cost_usd, 0)), SUM(requests), "
        "SUM(input_tokens + output_tokens), MAX(source), MAX(project) FROM usage_records "
        f"WHERE session_id != ''{where} GROUP BY session_id, model",
        params,
    )


def _components_for(ms: Any, dim: str, key: str) -> dict[str, Any] | None:
    """Weekly effect from the daily model (falls back to the hourly one), daily effect from the hourly one."""
    from ..errors import ModelError
    from ..ml.patterns import seasonal_components

    found: dict[str, Any] = {}
    k = key if dim != "all" else ""
    for freq in ("d", "h"):
        sid = f"cost|{freq}|{dim}|{k}"
        if ms.forecast_manifest(sid) is None:
            continue
        try:
            comps = seasonal_components(ms.load_forecast(sid))
        except ModelError as exc:
            found.setdefault("errors", []).append(str(exc))
            continue
        if comps is None:
            found.setdefault("fallback", []).append(sid)
            continue
        for part in ("weekly", "daily"):
            if part in comps and part not in found:
                found[part] = dict(comps[part], series_id=sid, transform=comps["transform"])
    return found or None


def seasonal_summary(ms: Any, by: str, keys: list[str]) -> dict[str, Any]:
    """Learned seasonal components of the account and of ``keys`` (None entries: no usable model)."""
    out: dict[str, Any] = {"account": _components_for(ms, "all", "")}
    out[by] = {k: _components_for(ms, by, k) for k in keys}
    trained = out["account"] is not None or any(v is not None for v in out[by].values())
    out["trained"] = trained
    out["hint"] = None if trained else TRAIN_HINT
    return out


def build_patterns(
    reader: Any,
    *,
    by: str = "user",
    metric: str = "cost",
    since: int | None = None,
    until: int | None = None,
    tz: str = "UTC",
    model_store: Any = None,
    top_keys: int = 8,
    session_limit: int = 30,
) -> dict[str, Any]:
    """Everything ``oaim patterns`` shows, as plain JSON-ready data."""
    from ..ml import patterns as pat
    from ..timeutil import zone

    if by not in BY_DIMS:
        raise InputError(f"--by {by!r}: use one of {', '.join(BY_DIMS)}")
    if metric not in METRICS:
        raise InputError(f"--metric {metric!r}: use one of {', '.join(METRICS)}")
    zone(tz)
    if since is not None and until is not None and until <= since:
        raise InputError("--until must be after --since; check the two dates")
    ts, keys, values = hourly_rows(reader, by, metric, since, until)
    matrix = pat.hour_of_week(ts, values, tz)
    per_key = pat.peaks_by_key(ts, keys, values, tz)
    index, mat = pat.daily_profiles(ts, keys, values, tz)
    clusters = pat.cluster_days(index, mat)
    sess = pat.sessions(session_rows(reader, since, until))
    if model_store is None:
        from .modelstore import ModelStore

        model_store = ModelStore()
    shown = list(per_key)[:top_keys]
    return {
        "by": by,
        "metric": metric,
        "timezone": tz,
        "since": since,
        "until": until,
        "hours_with_usage": len(set(ts)),
        "heatmap": {"days": list(pat.WEEKDAYS), "hours": list(range(24)), "values": matrix.tolist()},
        "peaks": pat.peaks(matrix).as_dict(),
        "peaks_by_key": {k: p.as_dict() for k, p in per_key.items()},
        "clusters": [c.as_dict() for c in clusters],
        "sessions": {
            "count": len(sess),
            "total_cost_usd": round(sum(s.cost_usd for s in sess), 6),
            "timeline": [s.as_dict() for s in sess[-session_limit:]],
        },
        "seasonality": seasonal_summary(model_store, by, shown),
    }
