"""Fast read API over stored forecasts, anomalies and training runs. Standard library only.

Reading commands (``forecast``, ``anomalies``, the monitor, budgets, the daemon) call these with a
``store.db.FastReader`` (``AppState.reader()``); nothing here imports pandas, Prophet, scikit-learn or
SQLAlchemy, so answers take milliseconds. Timestamps are Unix seconds (UTC); ``now`` is passed in.

Public functions (stable signatures):

``latest_forecast(reader, *, scope_dim="all", scope_key="", metric="cost", freq="d") -> dict | None``
    One stored series: ``series_id, scope_dim, scope_key, metric, freq, kind, fallback_reason,
    trained_at, data_start, data_end, rows, metrics, summary`` and ``points`` (list of ``{ds, yhat,
    yhat_lower, yhat_upper, yhat_lower_80, yhat_upper_80, yhat_lower_95, yhat_upper_95}``, ``ds`` = UTC
    seconds of the period start; ``yhat_lower/upper`` are the 80% band). None when not trained.
``list_forecasts(reader, by=None, metric="cost", freq="d", points=False) -> list[dict]``
    Every stored series of one dimension (``by`` in all/user/model/project/provider; None = all dims),
    same dicts as above (points only when asked).
``projection(summary, month_to_date_now, now=None) -> dict | None``
    Month-end total ``{mean, lower_80, upper_80, lower_95, upper_95, month_to_date}`` re-based on the
    month-to-date spend now.
``prob_exceed(summary, month_to_date_now, limit, now=None) -> float | None``
    Probability that this month's total exceeds ``limit``, from the stored predictive samples.
``limit_hit(summary, month_to_date_now, limit, now) -> dict | None``
    When cumulative monthly spend is expected to cross ``limit``: ``{expected, lower_80, upper_80,
    probability, already_exceeded}`` (local ISO dates; ``upper_80`` None when over 10% of paths stay
    under the limit this month); None when under half of the paths cross.
``open_anomalies(reader, since=None, scope=None, limit=20, status="open") -> list[dict]``
    Findings, newest first. ``scope`` is ``"all"``, ``"user:alice"``, ``"model:gpt-4o"``...; ``status``
    ``open``, ``acked``, ``expected`` or ``all``.
``get_anomaly(reader, id) -> dict | None``
``last_training(reader) -> dict | None``
    The latest ``training_runs`` row with its failures.
``sum_since(reader, start, end, scope_dim="all", scope_key="", metric="cost") -> float``
    A metric's total over ``[start, end)`` from the hourly rollup (e.g. month-to-date spend).

How samples are re-based: training stores, for daily cost series, 500 draws of the spend still to come
this month (``samples.totals``) and 200 cumulative daily paths (``samples.paths``), taken at
``trained_at``. Given the month-to-date spend now, the part of each path that covers the time elapsed
since training is replaced by what was actually spent: ``total = month_to_date_now + (path total -
path so far)``. Without ``now``, the spend since training is taken off each draw instead. A summary
from another month than ``now`` gives None (retrain).
"""

from __future__ import annotations

import bisect
import json
import math
from typing import Any

_SCOPE_DIMS = ("all", "user", "model", "project", "provider")
_METRIC_SQL = {"cost": "cost_usd", "tokens": "input_tokens + output_tokens", "requests": "requests"}
_FORECAST_COLS = (
    "series_id, scope_dim, scope_key, metric, freq, kind, fallback_reason, trained_at, data_start, "
    "data_end, rows, metrics_json, summary_json"
)
_ANOMALY_COLS = (
    "id, scope_dim, scope_key, start_ts, end_ts, severity, score, impact_usd, kind, explanation, "
    "evidence_json, attribution_json, detected_at, status, acked_at, alerted_at"
)


def _has(reader: Any, table: str) -> bool:
    return reader.exists and reader.table_exists(table)


def _forecast_row(row: tuple) -> dict[str, Any]:
    keys = [k.strip() for k in _FORECAST_COLS.split(",")]
    d = dict(zip(keys, row))
    d["metrics"] = json.loads(d.pop("metrics_json") or "{}")
    d["summary"] = json.loads(d.pop("summary_json") or "{}")
    return d


def _points(reader: Any, series_id: str) -> list[dict[str, Any]]:
    rows = reader.query(
        "SELECT ds, yhat, yhat_lower_80, yhat_upper_80, yhat_lower_95, yhat_upper_95 FROM forecast_points "
        "WHERE series_id = ? ORDER BY ds",
        (series_id,),
    )
    return [
        {
            "ds": int(r[0]),
            "yhat": r[1],
            "yhat_lower": r[2],
            "yhat_upper": r[3],
            "yhat_lower_80": r[2],
            "yhat_upper_80": r[3],
            "yhat_lower_95": r[4],
            "yhat_upper_95": r[5],
        }
        for r in rows
    ]


def latest_forecast(
    reader: Any, *, scope_dim: str = "all", scope_key: str = "", metric: str = "cost", freq: str = "d"
) -> dict[str, Any] | None:
    if not _has(reader, "forecasts"):
        return None
    rows = reader.query(
        f"SELECT {_FORECAST_COLS} FROM forecasts WHERE series_id = ?",
        (f"{metric}|{freq}|{scope_dim}|{scope_key if scope_dim != 'all' else ''}",),
    )
    if not rows:
        return None
    out = _forecast_row(rows[0])
    out["points"] = _points(reader, out["series_id"])
    return out


def list_forecasts(
    reader: Any, by: str | None = None, metric: str = "cost", freq: str = "d", points: bool = False
) -> list[dict[str, Any]]:
    if not _has(reader, "forecasts"):
        return []
    sql = f"SELECT {_FORECAST_COLS} FROM forecasts WHERE metric = ? AND freq = ?"
    params: list[Any] = [metric, freq]
    if by is not None:
        sql += " AND scope_dim = ?"
        params.append(by)
    out = [_forecast_row(r) for r in reader.query(sql + " ORDER BY scope_dim, scope_key", params)]
    if points:
        for d in out:
            d["points"] = _points(reader, d["series_id"])
    return out


# ----------------------------------------------------------------------------- samples, re-based on now


def _quantile(sorted_vals: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of an already sorted list."""
    if not sorted_vals:
        return float("nan")
    pos = (len(sorted_vals) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def _stale(summary: dict[str, Any], now: int | None) -> bool:
    return now is not None and now >= int(summary.get("month_end_ts", 0))


def _consumed(samples: dict[str, Any], now: int) -> tuple[int, list[float]]:
    """Column holding ``now`` and, per path, the forecast spend of the time elapsed since training."""
    starts: list[int] = samples["day_starts"]
    paths: list[list[float]] = samples["paths"]
    if not starts or now < starts[0]:
        return 0, [0.0] * len(paths)
    k = bisect.bisect_right(starts, now) - 1
    day_len = (starts[k + 1] - starts[k]) if k + 1 < len(starts) else 86400
    frac = min(max((now - starts[k]) / day_len, 0.0), 1.0)
    if k == 0:
        f0 = float(samples.get("first_fraction", 0.0))
        share = max(0.0, (frac - f0) / (1.0 - f0)) if f0 < 1 else 1.0
    else:
        share = frac
    out = []
    for p in paths:
        before = p[k - 1] if k > 0 else 0.0
        out.append(before + (p[k] - before) * share)
    return k, out


def _remaining(summary: dict[str, Any], mtd_now: float, now: int | None) -> list[float] | None:
    """Draws of the spend still to come this month, after ``now``."""
    samples = summary.get("samples")
    if not samples or _stale(summary, now):
        return None
    totals = [float(v) for v in samples["totals"]]
    if now is not None and samples.get("paths"):
        _, consumed = _consumed(samples, now)
        ends = [p[-1] if p else 0.0 for p in samples["paths"]]
        mean_end = sum(ends) / len(ends) if ends else 0.0
        left = 1.0 - (sum(consumed) / len(consumed)) / mean_end if mean_end > 0 else 0.0
        return [t * max(left, 0.0) for t in totals]
    spent = max(mtd_now - float(summary.get("month_to_date", 0.0)), 0.0)
    return [max(t - spent, 0.0) for t in totals]


def projection(
    summary: dict[str, Any], month_to_date_now: float, now: int | None = None
) -> dict[str, Any] | None:
    rest = _remaining(summary, month_to_date_now, now)
    if rest is None:
        if _stale(summary, now) or "projection" not in summary:
            return None
        return dict(summary["projection"], month_to_date=summary.get("month_to_date"), rebased=False)
    totals = sorted(month_to_date_now + r for r in rest)
    return {
        "mean": sum(totals) / len(totals),
        "lower_80": _quantile(totals, 0.10),
        "upper_80": _quantile(totals, 0.90),
        "lower_95": _quantile(totals, 0.025),
        "upper_95": _quantile(totals, 0.975),
        "month_to_date": month_to_date_now,
        "rebased": True,
    }


def prob_exceed(
    summary: dict[str, Any], month_to_date_now: float, limit: float, now: int | None = None
) -> float | None:
    if month_to_date_now > limit:
        return 1.0
    rest = _remaining(summary, month_to_date_now, now)
    if rest is None or not rest:
        return None
    return sum(1 for r in rest if month_to_date_now + r > limit) / len(rest)


def limit_hit(
    summary: dict[str, Any], month_to_date_now: float, limit: float, now: int
) -> dict[str, Any] | None:
    samples = summary.get("samples")
    if not samples or _stale(summary, now):
        return None
    days: list[str] = samples["days"]
    if month_to_date_now >= limit:
        from datetime import datetime
        from zoneinfo import ZoneInfo

        today = datetime.fromtimestamp(now, ZoneInfo(summary.get("tz") or "UTC")).date().isoformat()
        return {
            "expected": today,
            "lower_80": today,
            "upper_80": today,
            "probability": 1.0,
            "already_exceeded": True,
        }
    paths = samples["paths"]
    if not paths or not days:
        return None
    k, consumed = _consumed(samples, now)
    n_cols = len(days)
    firsts = []
    for p, c in zip(paths, consumed):
        idx = n_cols
        for j in range(k, n_cols):
            if month_to_date_now + p[j] - c >= limit:
                idx = j
                break
        firsts.append(idx)
    probability = sum(1 for i in firsts if i < n_cols) / len(firsts)
    if probability < 0.5:
        return None
    order = sorted(firsts)

    def at(q: float) -> str | None:
        i = order[min(int(math.floor(q * len(order))), len(order) - 1)]
        return None if i >= n_cols else days[i]

    return {
        "expected": at(0.5),
        "lower_80": at(0.1),
        "upper_80": at(0.9),
        "probability": probability,
        "already_exceeded": False,
    }


# ----------------------------------------------------------------------------- anomalies, runs, sums


def _anomaly_row(row: tuple) -> dict[str, Any]:
    keys = [k.strip() for k in _ANOMALY_COLS.split(",")]
    d = dict(zip(keys, row))
    d["scope"] = "all" if d["scope_dim"] == "all" else f"{d['scope_dim']}:{d['scope_key']}"
    d["evidence"] = json.loads(d.pop("evidence_json") or "{}")
    d["attribution"] = json.loads(d.pop("attribution_json") or "[]")
    return d


def parse_scope(scope: str) -> tuple[str, str]:
    """``"user:alice"`` -> ("user", "alice"); ``"all"`` -> ("all", "")."""
    if scope in ("all", "account", ""):
        return "all", ""
    dim, sep, key = scope.partition(":")
    if not sep or dim not in _SCOPE_DIMS or not key:
        from ..errors import InputError

        raise InputError(
            f"bad scope {scope!r}: use all, user:NAME, model:NAME, project:NAME or provider:NAME"
        )
    return dim, key


def open_anomalies(
    reader: Any, since: int | None = None, scope: str | None = None, limit: int = 20, status: str = "open"
) -> list[dict[str, Any]]:
    if not _has(reader, "anomalies"):
        return []
    sql = f"SELECT {_ANOMALY_COLS} FROM anomalies WHERE 1 = 1"
    params: list[Any] = []
    if status != "all":
        sql += " AND status = ?"
        params.append(status)
    if since is not None:
        sql += " AND end_ts > ?"
        params.append(int(since))
    if scope:
        dim, key = parse_scope(scope)
        sql += " AND scope_dim = ? AND scope_key = ?"
        params += [dim, key]
    sql += " ORDER BY start_ts DESC, id DESC LIMIT ?"
    params.append(int(limit))
    return [_anomaly_row(r) for r in reader.query(sql, params)]


def get_anomaly(reader: Any, id: int) -> dict[str, Any] | None:  # noqa: A002 - the documented name
    if not _has(reader, "anomalies"):
        return None
    rows = reader.query(f"SELECT {_ANOMALY_COLS} FROM anomalies WHERE id = ?", (int(id),))
    return _anomaly_row(rows[0]) if rows else None


def last_training(reader: Any) -> dict[str, Any] | None:
    if not _has(reader, "training_runs"):
        return None
    rows = reader.query(
        "SELECT id, started_at, finished_at, status, series_total, fitted, skipped, failed, failures_json "
        "FROM training_runs ORDER BY id DESC LIMIT 1"
    )
    if not rows:
        return None
    keys = ("id", "started_at", "finished_at", "status", "series_total", "fitted", "skipped", "failed")
    d = dict(zip(keys, rows[0][:8]))
    d["failures"] = json.loads(rows[0][8] or "[]")
    return d


def _scope_filter(scope_dim: str, scope_key: str) -> tuple[str, list[Any]]:
    if scope_dim == "all":
        return "dim = 'model'", []
    if scope_dim == "provider":
        return "dim = 'model' AND provider = ?", [scope_key]
    return "dim = ? AND key = ?", [scope_dim, scope_key]


def hourly_totals(
    reader: Any, start: int, end: int, scope_dim: str = "all", scope_key: str = "", metric: str = "cost"
) -> list[tuple[int, float]]:
    """(hour start, total) from the hourly rollup over ``[start, end)``, hours with usage only."""
    if not _has(reader, "rollup"):
        return []
    where, params = _scope_filter(scope_dim, scope_key)
    rows = reader.query(
        f"SELECT bucket_ts, SUM({_METRIC_SQL[metric]}) FROM rollup WHERE grain = 'h' AND {where} "
        "AND bucket_ts >= ? AND bucket_ts < ? GROUP BY bucket_ts ORDER BY bucket_ts",
        [*params, int(start), int(end)],
    )
    return [(int(r[0]), float(r[1] or 0.0)) for r in rows]


def sum_since(
    reader: Any, start: int, end: int, scope_dim: str = "all", scope_key: str = "", metric: str = "cost"
) -> float:
    if not _has(reader, "rollup"):
        return 0.0
    where, params = _scope_filter(scope_dim, scope_key)
    rows = reader.query(
        f"SELECT SUM({_METRIC_SQL[metric]}) FROM rollup WHERE grain = 'h' AND {where} "
        "AND bucket_ts >= ? AND bucket_ts < ?",
        [*params, int(start), int(end)],
    )
    return float(rows[0][0] or 0.0) if rows else 0.0
