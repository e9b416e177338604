"""The training pipeline: series from the rollups -> forecasters in parallel -> stored forecasts; hourly
features -> IsolationForest detectors -> stored anomaly findings. One ``training_runs`` row per run.

``train(store, settings, now=...)`` does everything; ``detect(store, settings, now=...)`` only scores hours
not scored yet with the stored detectors (what the daemon calls between trainings).

Series (configurable through ``[forecast]`` keys in the config file):

* account (``all``): daily cost, tokens and requests, hourly cost;
* every user, model, project and provider: daily cost;
* the ``hourly_top_n`` (default 3) users and models with the most cost in the last 28 days: hourly cost
  (their in-sample expected cost feeds the anomaly features).

A series whose data hash (its complete periods plus the fit options) is unchanged since the last fit is
skipped unless ``force``. Detectors (``[anomaly]`` keys): one for the account, one per user and one per
model (the ``detector_top_n`` largest, default 20), trained on the last ``lookback_days`` (default 56) of
hourly features with hours of findings marked "expected" left out.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from ..config import Settings
    from ..store import Store
    from .modelstore import ModelStore

SCOPE_DIMS = ("all", "user", "model", "project", "provider")
METRICS = {"cost": "cost_usd", "tokens": "tokens", "requests": "requests"}
HOUR = 3600
Progress = Callable[[int, int, str], None]  # (done, total, label)

_ROLLUP_COLUMNS = ("requests", "input_tokens", "cached_input_tokens", "output_tokens", "cost_usd")


@dataclass
class TrainOptions:
    """Knobs read from the config's ``[forecast]`` and ``[anomaly]`` sections (extra keys allowed)."""

    horizon_days: int = 30
    hourly_horizon_days: int = 7
    hourly_top_n: int = 3
    min_history_days: float = 14
    holidays_country: str | None = None
    backtest_origins: int = 1
    n_jobs: int = 2
    month_samples: int = 500
    path_samples: int = 200
    detector_top_n: int = 20
    lookback_days: int = 56
    backfill_days: int = 14
    contamination: float = 0.01
    score_threshold: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TrainOptions:
        f, a = settings.forecast, settings.anomaly
        opts = cls(
            horizon_days=int(f.horizon_days),
            holidays_country=f.holidays_country,
            contamination=float(a.contamination),
            score_threshold=a.score_threshold,
        )
        for section in (f, a):
            for key, value in (section.model_extra or {}).items():
                if hasattr(opts, key):
                    current = getattr(opts, key)
                    try:
                        cast = value if current is None or value is None else type(current)(value)
                    except (TypeError, ValueError) as exc:
                        raise InputError(
                            f"config key {key} = {value!r} is not a valid {type(current).__name__}: "
                            f"fix it with `oaim config set <section>.{key} VALUE`"
                        ) from exc
                    setattr(opts, key, cast)
        if opts.horizon_days < 1 or opts.hourly_horizon_days < 1:
            raise InputError(
                "forecast.horizon_days must be >= 1: fix it with `oaim config set forecast.horizon_days 30`"
            )
        return opts

    def fingerprint(self) -> dict[str, Any]:
        # Only what changes a fitted forecast: other knobs must not force refits.
        return {
            "horizon_days": self.horizon_days,
            "hourly_horizon_days": self.hourly_horizon_days,
            "min_history_days": self.min_history_days,
            "holidays_country": self.holidays_country,
            "backtest_origins": self.backtest_origins,
        }


@dataclass
class TrainResult:
    run_id: int
    status: str
    series_total: int = 0
    fitted: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    detectors: int = 0
    new_anomalies: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "series_total": self.series_total,
            "fitted": self.fitted,
            "skipped": self.skipped,
            "failed": self.failed,
            "failures": self.failures,
            "detectors": self.detectors,
            "new_anomalies": self.new_anomalies,
            "seconds": round(self.seconds, 3),
        }


def series_id(metric: str, freq: str, scope_dim: str, scope_key: str = "") -> str:
    return f"{metric}|{freq}|{scope_dim}|{scope_key}"


def scope_name(scope_dim: str, scope_key: str) -> str:
    return "all" if scope_dim == "all" else f"{scope_dim}:{scope_key}"


# ----------------------------------------------------------------------------------------- reading data


def load_hourly(store: Store, since: int | None = None) -> pd.DataFrame:
    """Hourly rollup rows (dims model, user, project, api_key) as a DataFrame with ``tokens`` added."""
    import pandas as pd
    from sqlalchemy import text

    cols = ", ".join(_ROLLUP_COLUMNS)
    sql = f"SELECT dim, provider, key, bucket_ts, {cols} FROM rollup WHERE grain = 'h'"
    params: dict[str, Any] = {}
    if since is not None:
        sql += " AND bucket_ts >= :since"
        params["since"] = int(since)
    with store.engine.connect() as conn:
        df = pd.DataFrame(
            conn.execute(text(sql), params).all(),
            columns=["dim", "provider", "key", "bucket_ts", *_ROLLUP_COLUMNS],
        )
    for c in ("bucket_ts", "requests", "input_tokens", "cached_input_tokens", "output_tokens"):
        df[c] = df[c].astype("int64")
    df["cost_usd"] = df["cost_usd"].astype("float64")
    df["tokens"] = df["input_tokens"] + df["output_tokens"]
    return df


def scope_rows(hourly: pd.DataFrame, scope_dim: str, scope_key: str = "") -> pd.DataFrame:
    """One scope's hourly rows, summed over providers (and over models for the account / a provider)."""
    if scope_dim in ("all", "provider"):
        part = hourly[hourly["dim"] == "model"]
        if scope_dim == "provider":
            part = part[part["provider"] == scope_key]
    else:
        part = hourly[(hourly["dim"] == scope_dim) & (hourly["key"] == scope_key)]
    cols = [*_ROLLUP_COLUMNS, "tokens"]
    return part.groupby("bucket_ts", sort=True)[cols].sum().reset_index()


def _scope_keys(hourly: pd.DataFrame, dim: str) -> list[str]:
    if dim == "all":
        return [""]
    if dim == "provider":
        keys = hourly.loc[hourly["dim"] == "model", "provider"]
    else:
        keys = hourly.loc[hourly["dim"] == dim, "key"]
    return sorted(k for k in keys.unique().tolist() if k)


def _top_keys(hourly: pd.DataFrame, dim: str, n: int, since: int) -> list[str]:
    part = hourly[(hourly["dim"] == dim) & (hourly["bucket_ts"] >= since) & (hourly["key"] != "")]
    return part.groupby("key")["cost_usd"].sum().sort_values(ascending=False).head(n).index.tolist()


# ----------------------------------------------------------------------------------------- series specs


def _data_hash(sid: str, y: pd.Series, opts: TrainOptions) -> str:
    import numpy as np

    h = hashlib.sha256()
    h.update(sid.encode())
    h.update(str(y.index[0]).encode() if len(y) else b"-")
    h.update(np.round(y.to_numpy(dtype="float64"), 9).tobytes())
    h.update(json.dumps(opts.fingerprint(), sort_keys=True).encode())
    return h.hexdigest()


def build_specs(
    hourly: pd.DataFrame, tz: str, now: datetime, opts: TrainOptions, scopes: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Every series to fit, with its history, current partial period and month-to-date value."""
    import pandas as pd

    from ..ml.series import build_series

    wanted = set(scopes or SCOPE_DIMS)
    recent = int(now.timestamp()) - 28 * 86400
    plan: list[tuple[str, str, str, str]] = []  # metric, freq, dim, key
    if "all" in wanted:
        plan += [(m, "d", "all", "") for m in METRICS] + [("cost", "h", "all", "")]
    for dim in ("user", "model", "project", "provider"):
        if dim in wanted:
            plan += [("cost", "d", dim, k) for k in _scope_keys(hourly, dim)]
    for dim in ("user", "model"):
        if dim in wanted:
            plan += [("cost", "h", dim, k) for k in _top_keys(hourly, dim, opts.hourly_top_n, recent)]
    specs = []
    frames: dict[tuple[str, str], pd.DataFrame] = {}
    for metric, freq, dim, key in plan:
        if (dim, key) not in frames:
            frames[(dim, key)] = scope_rows(hourly, dim, key)
        rows = frames[(dim, key)]
        sd = build_series(rows, freq="D" if freq == "d" else "h", tz=tz, now=now, metric=METRICS[metric])
        y = sd.history
        month_start = pd.Timestamp(sd.partial_start).normalize().replace(day=1)
        mtd = float(y[y.index >= month_start].sum()) + sd.partial_value
        sid = series_id(metric, freq, dim, key)
        specs.append(
            {
                "series_id": sid,
                "scope_dim": dim,
                "scope_key": key,
                "metric": metric,
                "freq": freq,
                "y": y,
                "partial_value": sd.partial_value,
                "partial_fraction": sd.partial_fraction,
                "partial_start": sd.partial_start,
                "month_to_date": mtd,
                "data_hash": _data_hash(sid, y, opts),
            }
        )
    return specs


# ----------------------------------------------------------------------------------------- fitting (worker)


def _local_epochs(index: Any, tz: str) -> list[int]:
    import numpy as np
    import pandas as pd

    idx = pd.DatetimeIndex(index)
    # A wall-clock hour that does not exist (clocks forward) moves to the next real one; a repeated one
    # is read as standard time.
    aware = idx.tz_localize(tz, ambiguous=np.zeros(len(idx), dtype=bool), nonexistent="shift_forward")
    return [int(v) for v in aware.asi8 // 10**9]


def _sig(v: float) -> float:
    return float(f"{float(v):.6g}")


def fit_one(spec: dict[str, Any], tz: str, now: datetime, opts: TrainOptions) -> dict[str, Any]:
    """Fit one series and compute everything stored about it. Runs in a worker process; never raises."""
    sid = spec["series_id"]
    try:
        return _fit_one(spec, tz, now, opts)
    except Exception as exc:  # noqa: BLE001 - one failing series must not stop the run; its reason is recorded
        return {"ok": False, "series_id": sid, "reason": f"{type(exc).__name__}: {str(exc)[:300]}"}


def _fit_one(spec: dict[str, Any], tz: str, now: datetime, opts: TrainOptions) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from ..ml.backtest import backtest
    from ..ml.forecast import ProphetForecaster, SeasonalNaiveForecaster, default_season, fit_forecaster
    from ..ml.serialize import dump_forecaster

    y: pd.Series = spec["y"]
    freq = "D" if spec["freq"] == "d" else "h"
    fc = fit_forecaster(
        y,
        freq,
        now=now,
        min_history_days=opts.min_history_days,
        holidays_country=opts.holidays_country,
        tz=tz,
        metric=METRICS[spec["metric"]],
    )
    season = default_season(freq)
    if freq == "D" and opts.backtest_origins > 0 and len(y) >= season + 2 + 7 * opts.backtest_origins + 7:
        params = fc.forecaster.get_params()
        make = (
            (lambda: ProphetForecaster(**params))
            if fc.kind == "prophet"
            else (lambda: SeasonalNaiveForecaster(**params))
        )
        # The last origin is the holdout model selection already fitted: reuse it (same data, same
        # settings, seeded draws) rather than fitting Prophet a third time.
        ho = fc.holdout
        reuse = (
            {ho["origin"]: ho["models"][fc.kind]}
            if ho and ho["horizon"] == 7 and fc.kind in ho["models"]
            else None
        )
        try:
            bt = backtest(y, make, horizon=7, n_origins=opts.backtest_origins, season=season, fitted=reuse)
            fc.metrics = {
                k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in bt.as_dict().items()
            }
        except Exception as exc:  # noqa: BLE001 - metrics are informative; a failed backtest keeps the model
            fc.metrics = {"backtest_error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    h = opts.horizon_days if freq == "D" else opts.hourly_horizon_days * 24
    current = pd.Timestamp(spec["partial_start"])
    next_month = current.normalize().replace(day=1) + pd.offsets.MonthBegin(1)
    first = pd.Timestamp(y.index[-1]) + pd.tseries.frequencies.to_offset(freq)
    if freq == "D":
        h = max(h, len(pd.date_range(first, next_month, freq="D", inclusive="left")))
    # One set of predictive draws gives the stored intervals and the month-end samples below.
    pred, draws = fc.predict_with_paths(h)
    ds = _local_epochs(pred["ds"], tz)
    points = [
        (
            ds[i],
            *(
                _sig(pred[c].iat[i])
                for c in ("yhat", "yhat_lower_80", "yhat_upper_80", "yhat_lower_95", "yhat_upper_95")
            ),
        )
        for i in range(len(pred))
    ]
    summary: dict[str, Any] = {
        "tz": tz,
        "trained_at": int(now.timestamp()),
        "partial_fraction": spec["partial_fraction"],
    }
    if freq == "D":
        n = max(opts.month_samples, opts.path_samples)
        paths = draws if len(draws) >= n else fc.sample_paths(h, n, 0)
        fds = pd.date_range(first, periods=h, freq="D")
        keep = (fds >= current) & (fds < next_month)
        weights = np.where(fds[keep] == current, 1.0 - spec["partial_fraction"], 1.0)
        month = paths[:, keep] * weights
        totals = spec["month_to_date"] + month.sum(axis=1)
        q = np.quantile(totals, [0.10, 0.90, 0.025, 0.975])
        hd = min(opts.horizon_days, h)
        summary.update(
            {
                "month": current.strftime("%Y-%m"),
                "month_end": (next_month - pd.Timedelta(days=1)).strftime("%Y-%m-%d"),
                "month_end_ts": _local_epochs([next_month], tz)[0],
                "month_to_date": round(spec["month_to_date"], 6),
                "projection": {
                    "mean": float(totals.mean()),
                    "lower_80": float(q[0]),
                    "upper_80": float(q[1]),
                    "lower_95": float(q[2]),
                    "upper_95": float(q[3]),
                },
                "horizon_days": hd,
                "forecast_total": float(paths[:, :hd].sum(axis=1).mean()),
                "last_total": float(y.iloc[-hd:].sum()),
            }
        )
        if spec["metric"] == "cost":
            mdays = fds[keep]
            cum = np.cumsum(month[: opts.path_samples], axis=1)
            summary["samples"] = {
                "days": [d.strftime("%Y-%m-%d") for d in mdays],
                "day_starts": _local_epochs(mdays, tz),
                "first_fraction": spec["partial_fraction"] if len(mdays) and mdays[0] == current else 0.0,
                "totals": [_sig(v) for v in month[: opts.month_samples].sum(axis=1)],
                "paths": [[_sig(v) for v in row] for row in cum],
            }
    expected = None
    if freq == "h" and spec["metric"] == "cost" and fc.kind == "prophet":
        model = fc.forecaster
        hist = pd.DataFrame({"ds": model.history_.index})
        values = model._inverse(model._median_z(hist))
        expected = {"ts": _local_epochs(model.history_.index, tz), "yhat": [_sig(v) for v in values]}
    data_start, data_end = _local_epochs([y.index[0], y.index[-1]], tz)
    return {
        "ok": True,
        "series_id": spec["series_id"],
        "kind": fc.kind,
        "fallback_reason": fc.fallback_reason,
        "data_start": data_start,
        "data_end": data_end,
        "rows": int(len(y)),
        "metrics": fc.metrics,
        "artefact": dump_forecaster(fc),
        "points": points,
        "summary": summary,
        "expected": expected,
    }


def fit_parallel(
    specs: Sequence[dict[str, Any]],
    tz: str,
    now: datetime,
    opts: TrainOptions,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Fit all specs in ONE joblib (loky) Parallel call: starting the pool costs ~1.5 s."""
    from joblib import Parallel, delayed

    total = len(specs)
    if progress:
        progress(0, total, "fitting forecasters")
    if not specs:
        return []
    n_jobs = opts.n_jobs if total > 1 else 1
    out = []
    gen = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered")(
        delayed(fit_one)(s, tz, now, opts) for s in specs
    )
    for i, res in enumerate(gen, 1):
        out.append(res)
        if progress:
            progress(i, total, res["series_id"])
    return out


# ----------------------------------------------------------------------------------------- persistence


def _known_hashes(store: Store) -> dict[str, str]:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return {r[0]: r[1] for r in conn.execute(text("SELECT series_id, data_hash FROM forecasts"))}


def _save_forecasts(
    store: Store, ms: ModelStore, specs: dict[str, dict], results: list[dict], now: int
) -> None:
    """Artefact files first (each atomic), then every row in ONE transaction."""
    from sqlalchemy import text

    from ..ml.serialize import FORMAT_VERSION, artefact_info

    rows = []
    for r in results:
        spec = specs[r["series_id"]]
        info = artefact_info(r["artefact"])
        manifest = {
            "kind": r["kind"],
            "trained_at": now,
            "data_start": r["data_start"],
            "data_end": r["data_end"],
            "rows": r["rows"],
            "data_hash": spec["data_hash"],
            "metrics": r["metrics"],
            "libraries": info.get("libraries", {}),
            "artefact_format": FORMAT_VERSION,
            "fallback_reason": r["fallback_reason"],
        }
        path = ms.save_forecast(r["series_id"], r["artefact"], manifest, r["expected"])
        rows.append((r, spec, str(path)))
    upsert = text(
        "INSERT INTO forecasts (series_id, scope_dim, scope_key, metric, freq, kind, fallback_reason, trained_at, "
        "data_start, data_end, rows, data_hash, metrics_json, artefact, summary_json) VALUES (:sid, :dim, :key, "
        ":metric, :freq, :kind, :reason, :trained, :start, :end, :rows, :hash, :metrics, :artefact, :summary) "
        "ON CONFLICT (series_id) DO UPDATE SET kind = excluded.kind, fallback_reason = excluded.fallback_reason, "
        "trained_at = excluded.trained_at, data_start = excluded.data_start, data_end = excluded.data_end, "
        "rows = excluded.rows, data_hash = excluded.data_hash, metrics_json = excluded.metrics_json, "
        "artefact = excluded.artefact, summary_json = excluded.summary_json"
    )
    insert_point = text(
        "INSERT INTO forecast_points (series_id, ds, yhat, yhat_lower_80, yhat_upper_80, yhat_lower_95, "
        "yhat_upper_95) VALUES (:sid, :ds, :y, :l80, :u80, :l95, :u95)"
    )
    with store.engine.begin() as conn:
        for r, spec, path in rows:
            conn.execute(
                upsert,
                {
                    "sid": r["series_id"],
                    "dim": spec["scope_dim"],
                    "key": spec["scope_key"],
                    "metric": spec["metric"],
                    "freq": spec["freq"],
                    "kind": r["kind"],
                    "reason": r["fallback_reason"],
                    "trained": now,
                    "start": r["data_start"],
                    "end": r["data_end"],
                    "rows": r["rows"],
                    "hash": spec["data_hash"],
                    "metrics": json.dumps(r["metrics"]),
                    "artefact": path,
                    "summary": json.dumps(r["summary"]),
                },
            )
            conn.execute(text("DELETE FROM forecast_points WHERE series_id = :sid"), {"sid": r["series_id"]})
            if r["points"]:
                conn.execute(
                    insert_point,
                    [
                        {
                            "sid": r["series_id"],
                            "ds": p[0],
                            "y": p[1],
                            "l80": p[2],
                            "u80": p[3],
                            "l95": p[4],
                            "u95": p[5],
                        }
                        for p in r["points"]
                    ],
                )


def _start_run(store: Store, now: int) -> int:
    from sqlalchemy import text

    with store.engine.begin() as conn:
        return conn.execute(
            text("INSERT INTO training_runs (started_at, status) VALUES (:t, 'running') RETURNING id"),
            {"t": now},
        ).scalar_one()


def _finish_run(store: Store, res: TrainResult, now: int) -> None:
    from sqlalchemy import text

    with store.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE training_runs SET finished_at = :t, status = :s, series_total = :n, fitted = :f, "
                "skipped = :k, failed = :x, failures_json = :j WHERE id = :id"
            ),
            {
                "t": now,
                "s": res.status,
                "n": res.series_total,
                "f": res.fitted,
                "k": res.skipped,
                "x": res.failed,
                "j": json.dumps(res.failures),
                "id": res.run_id,
            },
        )


# ----------------------------------------------------------------------------------------- anomalies


def _expected_windows(store: Store) -> list[tuple[str, str, int, int]]:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text("SELECT scope_dim, scope_key, start_ts, end_ts FROM anomalies WHERE status = 'expected'")
            )
        ]


def _exclude_mask(index: Any, dim: str, key: str, windows: list[tuple[str, str, int, int]]) -> Any:
    """Hours of findings marked expected: the scope's own, the account's, and (for the account) any scope's."""
    import numpy as np

    ts = np.asarray(index, dtype="int64")
    mask = np.zeros(len(ts), dtype=bool)
    for wdim, wkey, start, end in windows:
        if dim == "all" or wdim == "all" or (wdim == dim and wkey == key):
            mask |= (ts >= start) & (ts < end)
    return mask


def _hour_index(rows: pd.DataFrame) -> Any:
    import numpy as np

    lo = int(rows["bucket_ts"].min()) // HOUR * HOUR
    hi = int(rows["bucket_ts"].max()) // HOUR * HOUR
    return np.arange(lo, hi + 1, HOUR, dtype="int64")


def _expected_series(store: Store, ms: ModelStore, dim: str, key: str) -> pd.Series | None:
    """Forecast expected hourly cost: in-sample fit plus the stored forecast points after it."""
    import pandas as pd
    from sqlalchemy import text

    sid = series_id("cost", "h", dim, key)
    parts = []
    exp = ms.load_expected(sid)
    if exp:
        parts.append(pd.Series(exp["yhat"], index=exp["ts"], dtype="float64"))
    with store.engine.connect() as conn:
        pts = conn.execute(
            text("SELECT ds, yhat FROM forecast_points WHERE series_id = :s ORDER BY ds"), {"s": sid}
        ).all()
    if pts:
        parts.append(pd.Series([p[1] for p in pts], index=[int(p[0]) for p in pts], dtype="float64"))
    if not parts:
        return None
    s = pd.concat(parts)
    return s[~s.index.duplicated(keep="last")]


def _detector_scopes(
    hourly: pd.DataFrame, opts: TrainOptions, now: int, wanted: set[str]
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if "all" in wanted:
        out.append(("all", ""))
    for dim in ("user", "model"):
        if dim in wanted:
            out += [
                (dim, k)
                for k in _top_keys(hourly, dim, opts.detector_top_n, now - opts.lookback_days * 86400)
            ]
    return out


def _features(
    store: Store, ms: ModelStore, hourly: pd.DataFrame, dim: str, key: str, tz: str, windows: list
) -> tuple[pd.DataFrame, pd.DataFrame, Any, Any] | None:
    from ..ml.features import hourly_features

    rows = scope_rows(hourly, dim, key)
    if len(rows) < 2:
        return None
    if dim == "all":
        # The account's model mix: per-model rows keep the ``model`` column for the dominant-model share.
        by_model = hourly[hourly["dim"] == "model"].groupby(["bucket_ts", "key"])[list(_ROLLUP_COLUMNS)].sum()
        rows = by_model.reset_index().rename(columns={"key": "model"})
    total = scope_rows(hourly, "all")
    exclude = _exclude_mask(_hour_index(rows), dim, key, windows)
    expected = _expected_series(store, ms, dim, key)
    feats = hourly_features(
        rows, scope_rows_total=None if dim == "all" else total, expected=expected, tz=tz, exclude=exclude
    )
    return feats, rows, expected, exclude


def fit_detectors(
    store: Store,
    ms: ModelStore,
    hourly: pd.DataFrame,
    tz: str,
    now: int,
    opts: TrainOptions,
    wanted: set[str],
    force: bool,
    progress: Progress | None = None,
) -> tuple[int, int, list[dict[str, str]]]:
    """Fit and store one detector per scope; returns (fitted, skipped, failures)."""
    from ..ml.anomaly import AnomalyDetector, dump_detector

    windows = _expected_windows(store)
    scopes = _detector_scopes(hourly, opts, now, wanted)
    fitted = skipped = 0
    failures = []
    for i, (dim, key) in enumerate(scopes, 1):
        name = scope_name(dim, key)
        label = f"detector|{name}"
        try:
            built = _features(store, ms, hourly, dim, key, tz, windows)
            if built is None:
                raise ValueError("fewer than 2 hours of usage")
            feats, _, _, exclude = built
            digest = hashlib.sha256()
            digest.update(feats.to_numpy().round(9).tobytes())
            digest.update(exclude.tobytes())
            digest.update(json.dumps([opts.contamination, opts.score_threshold]).encode())
            data_hash = digest.hexdigest()
            old = ms.detector_manifest(name)
            if not force and old and old.get("data_hash") == data_hash:
                skipped += 1
            else:
                det = AnomalyDetector(
                    contamination=opts.contamination, threshold=opts.score_threshold, seed=0
                ).fit(feats, exclude=exclude)
                ms.save_detector(
                    name,
                    dump_detector(det),
                    {
                        "trained_at": now,
                        "data_start": int(feats.index[0]),
                        "data_end": int(feats.index[-1]),
                        "rows": int(len(feats)),
                        "excluded_hours": int(exclude.sum()),
                        "threshold": det.threshold_,
                        "data_hash": data_hash,
                    },
                    detector=det,
                )
                fitted += 1
        except Exception as exc:  # noqa: BLE001 - recorded with its reason in the training run
            failures.append({"series_id": label, "reason": f"{type(exc).__name__}: {str(exc)[:300]}"})
        if progress:
            progress(i, len(scopes), label)
    return fitted, skipped, failures


@dataclass
class DetectResult:
    scored_from: int
    scored_to: int
    scopes: int
    new: list[int] = field(default_factory=list)  # ids of inserted findings
    # ids of stored open findings grown over the hours scored now (an incident still going on)
    extended: list[int] = field(default_factory=list)


def detect(
    store: Store,
    settings: Settings,
    *,
    now: datetime,
    since: int | None = None,
    rescan: bool = False,
    model_store: ModelStore | None = None,
) -> DetectResult:
    """Score the hours not scored yet (or from ``since``) with the stored detectors and store findings.

    Only complete hours before ``now`` are scored. A finding is stored only if no finding of its scope
    covers any of its hours, so re-scoring an hour never re-inserts (or re-opens) a finding. An open
    finding that reaches the first hour scored (an incident still going on at the last detection) is
    scored again with the new hours and, when it grew, updated as one finding (window, impact, severity,
    explanation): a runaway loop of five hours, detected hourly, is one finding, not five. ``rescan``
    starts over from ``backfill_days`` ago.
    """
    from ..ml.anomaly import attribute
    from ..ml.anomaly import detect as detect_scope
    from .modelstore import ModelStore

    opts = TrainOptions.from_settings(settings)
    tz = settings.timezone
    ms = model_store or ModelStore()
    now_ts = int(now.timestamp())
    end = now_ts // HOUR * HOUR
    last = None if rescan else store.get_meta("ml.last_detected_ts")
    start = (
        since
        if since is not None
        else (int(last) if last is not None else now_ts - opts.backfill_days * 86400)
    )
    result = DetectResult(scored_from=start, scored_to=end, scopes=0)
    scopes = ms.detector_scopes()
    if start >= end or not scopes:
        return result
    hourly = load_hourly(store, since=min(start, now_ts - opts.lookback_days * 86400))
    if hourly.empty:
        return result
    windows = _expected_windows(store)
    found = []
    for name in scopes:
        dim, _, key = name.partition(":") if name != "all" else ("all", "", "")
        built = _features(store, ms, hourly, dim, key, tz, windows)
        if built is None:
            continue
        feats, rows, expected, exclude = built
        det = ms.load_detector(name)
        result.scopes += 1
        since_scope = _ongoing_start(store, dim, key, start)
        for f in detect_scope(
            det,
            feats,
            rows,
            scope=name,
            now=now_ts,
            tz=tz,
            expected=expected,
            since=since_scope,
            exclude=exclude,
        ):
            attribution: list[dict] = []
            if dim == "all":
                part = hourly[hourly["dim"].isin(["user", "model", "api_key"]) & (hourly["key"] != "")]
                breakdown = part.groupby(["dim", "key", "bucket_ts"])["cost_usd"].sum().reset_index()
                if len(breakdown):
                    ranked = attribute(f, breakdown, tz=tz)
                    attribution = [
                        {k: (round(v, 6) if isinstance(v, float) else v) for k, v in a.items()}
                        for a in ranked
                        if a["impact_usd"] > 0
                    ][:10]
            found.append((dim, key, f, attribution))
    result.new, result.extended = _insert_findings(store, found, now_ts)
    store.set_meta("ml.last_detected_ts", end)
    return result


def _ongoing_start(store: Store, dim: str, key: str, start: int) -> int:
    """Where scoring of a scope begins: START, or the start of its open finding that reaches START (it
    was still going on when the last detection ran), so that the incident is scored again whole."""
    rows = store._run(
        "SELECT MIN(start_ts) FROM anomalies WHERE scope_dim = ? AND scope_key = ? AND status = 'open' "
        "AND start_ts < ? AND end_ts >= ?",
        (dim, key, start, start),
    )
    first = rows[0][0] if rows else None
    return min(start, int(first)) if first is not None else start


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj


def _insert_findings(store: Store, found: list, now: int) -> tuple[list[int], list[int]]:
    """Store FOUND ``(dim, key, finding, attribution)``: ``(ids inserted, ids of stored findings grown)``."""
    from sqlalchemy import text

    from .alerts import severity_rank

    ids: list[int] = []
    grown: list[int] = []
    sql = text(
        "INSERT INTO anomalies (dedup_key, scope_dim, scope_key, start_ts, end_ts, severity, score, impact_usd, "
        "kind, explanation, evidence_json, attribution_json, detected_at, status) VALUES (:dk, :dim, :key, :s, "
        ":e, :sev, :score, :impact, :kind, :expl, :ev, :attr, :now, 'open') ON CONFLICT (dedup_key) DO NOTHING "
        "RETURNING id"
    )
    # A finding overlapping one already stored for its scope (a rescan with retrained detectors, or a
    # window grown to its whole incident) would report the same hours twice: the stored one stands...
    overlap = text(
        "SELECT id, start_ts, end_ts, status, severity FROM anomalies "
        "WHERE scope_dim = :dim AND scope_key = :key AND start_ts < :e AND end_ts > :s"
    )
    # ... unless it is that open incident scored again with later hours (``_ongoing_start``): then the
    # stored finding becomes the whole incident. Its id, key and status stay, and so does its alert state
    # unless its severity rose (then it is alerted again, once per severity).
    grow = text(
        "UPDATE anomalies SET end_ts = :e, severity = :sev, score = :score, impact_usd = :impact, kind = :kind, "
        "explanation = :expl, evidence_json = :ev, attribution_json = :attr, "
        "alerted_at = CASE WHEN :rose THEN NULL ELSE alerted_at END WHERE id = :id"
    )
    with store.engine.begin() as conn:
        for dim, key, f, attribution in found:
            params = {
                "dk": f"{f.scope}|{f.window_start}",
                "dim": dim,
                "key": key,
                "s": f.window_start,
                "e": f.window_end,
                "sev": f.severity,
                "score": f.score,
                "impact": f.impact_usd,
                "kind": f.kind,
                "expl": f.explanation,
                "ev": json.dumps(_json_safe(f.evidence)),
                "attr": json.dumps(_json_safe(attribution)),
                "now": now,
            }
            hits = conn.execute(overlap, params).all()
            if hits:
                hit = hits[0] if len(hits) == 1 else None
                if (
                    hit is not None
                    and hit.status == "open"
                    and hit.start_ts == f.window_start
                    and hit.end_ts < f.window_end
                ):
                    rose = severity_rank(f.severity) > severity_rank(hit.severity)
                    conn.execute(grow, {**params, "id": hit.id, "rose": rose})
                    grown.append(int(hit.id))
                continue
            row = conn.execute(sql, params).first()
            if row is not None:
                ids.append(int(row[0]))
    return ids, grown


# ----------------------------------------------------------------------------------------- the pipeline


def train(
    store: Store,
    settings: Settings,
    *,
    now: datetime | None = None,
    scopes: Sequence[str] | None = None,
    force: bool = False,
    progress: Progress | None = None,
    model_store: ModelStore | None = None,
) -> TrainResult:
    """Fit every changed series and every detector, store forecasts and findings, record the run."""
    from .modelstore import ModelStore

    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise InputError("now must be timezone-aware")
    if scopes:
        bad = [s for s in scopes if s not in SCOPE_DIMS]
        if bad:
            raise InputError(f"unknown scope {bad[0]!r}: use one of {', '.join(SCOPE_DIMS)}")
    t0 = time.perf_counter()
    now_ts = int(now.timestamp())
    opts = TrainOptions.from_settings(settings)
    tz = settings.timezone
    ms = model_store or ModelStore()
    res = TrainResult(run_id=_start_run(store, now_ts), status="running")
    try:
        hourly = load_hourly(store)
        if hourly.empty:
            raise InputError("no usage to train on: import some first (`oaim import ...`)")
        specs = build_specs(hourly, tz, now, opts, scopes)
        known = {} if force else _known_hashes(store)
        todo = [s for s in specs if known.get(s["series_id"]) != s["data_hash"]]
        res.skipped = len(specs) - len(todo)
        results = fit_parallel(todo, tz, now, opts, progress)
        ok = [r for r in results if r["ok"]]
        res.failures = [{"series_id": r["series_id"], "reason": r["reason"]} for r in results if not r["ok"]]
        _save_forecasts(store, ms, {s["series_id"]: s for s in specs}, ok, now_ts)
        res.fitted = len(ok)
        wanted = set(scopes or SCOPE_DIMS)
        d_fit, d_skip, d_fail = fit_detectors(store, ms, hourly, tz, now_ts, opts, wanted, force, progress)
        res.detectors = d_fit + d_skip
        res.series_total = len(specs) + d_fit + d_skip + len(d_fail)
        res.fitted += d_fit
        res.skipped += d_skip
        res.failures += d_fail
        res.failed = len(res.failures)
        found = detect(store, settings, now=now, rescan=force, model_store=ms)
        res.new_anomalies = len(found.new)
        res.status = "ok" if not res.failed else ("failed" if res.failed == res.series_total else "partial")
    except BaseException as exc:
        res.status = "failed"
        res.failures.append({"series_id": "*", "reason": f"{type(exc).__name__}: {str(exc)[:300]}"})
        res.failed = len(res.failures)
        res.seconds = time.perf_counter() - t0
        _finish_run(store, res, int(time.time()))
        raise
    res.seconds = time.perf_counter() - t0
    _finish_run(store, res, now_ts + int(res.seconds))
    return res
