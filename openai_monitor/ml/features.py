"""Feature vectors for anomaly detection. Pure: numpy and pandas only, no I/O, no clock.

Two builders:

* :func:`hourly_features` for one scope's hourly usage rollup (the product's detector);
* :func:`stream_features` for a univariate series read strictly left to right (the NAB benchmark).

Usage features are scale-robust (``log1p``) and each volume metric also appears as a robust z-score
against its usual level for the same hour of the week, so that a Monday 10:00 peak that happens every
week scores as normal while the same volume at 03:00 does not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

HOUR = 3600
HOURS_PER_WEEK = 168
# Robust scale of a log1p residual never goes below this: with a few weeks of history the MAD of one
# hour-of-week can be 0, and a z-score divided by ~0 would make every tiny wiggle look extreme.
MIN_LOG_SCALE = 0.1
MAD_TO_SIGMA = 1.4826

USAGE_COLUMNS = ("requests", "input_tokens", "cached_input_tokens", "output_tokens", "cost_usd")

FEATURE_COLUMNS = (
    "log_cost",
    "log_tokens",
    "log_requests",
    "log_tokens_per_request",
    "output_input_ratio",
    "cache_hit_share",
    "dominant_model_share",
    "log_cost_per_mtok",
    "scope_cost_share",
    "how_sin",
    "how_cos",
    "z_cost",
    "z_tokens",
    "z_requests",
    "z_tokens_per_request",
    "z_cost_per_mtok",
    "z_max",
)


def hourly_frame(
    rows: pd.DataFrame, tz: str = "UTC", *, start: int | None = None, end: int | None = None
) -> pd.DataFrame:
    """Aggregate one scope's rollup rows to a regular hourly frame (missing hours are zeros).

    Index: ``bucket_ts`` (UTC Unix seconds of the hour start). Columns: the usage sums, ``tokens``,
    ``tokens_per_request``, ``output_input_ratio``, ``cache_hit_share``, ``cost_per_mtok`` (USD per
    million tokens), ``dominant_model_share`` (share of tokens from the scope's most used model over the
    whole frame; 1.0 without a ``model`` column or in an empty hour) and ``hour_of_week`` (0 = Monday
    00:00 in ``tz``).
    """
    missing = [c for c in ("bucket_ts", *USAGE_COLUMNS) if c not in rows.columns]
    if missing:
        raise ValueError(
            f"usage rows lack columns {missing}; pass hourly rollup rows with {list(USAGE_COLUMNS)}"
        )
    df = rows.copy()
    df["bucket_ts"] = (df["bucket_ts"].astype("int64") // HOUR) * HOUR
    lo = int(df["bucket_ts"].min()) if start is None else (int(start) // HOUR) * HOUR
    hi = int(df["bucket_ts"].max()) if end is None else (int(end) // HOUR) * HOUR
    index = pd.Index(np.arange(lo, hi + 1, HOUR, dtype="int64"), name="bucket_ts")
    sums = df.groupby("bucket_ts")[list(USAGE_COLUMNS)].sum().reindex(index, fill_value=0).astype(float)
    sums["tokens"] = sums["input_tokens"] + sums["output_tokens"]
    sums["dominant_model_share"] = 1.0
    if "model" in df.columns and len(df):
        df["tokens"] = df["input_tokens"] + df["output_tokens"]
        dominant = df.groupby("model")["tokens"].sum().idxmax()
        dom = df[df["model"] == dominant].groupby("bucket_ts")["tokens"].sum().reindex(index, fill_value=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = dom.to_numpy(float) / sums["tokens"].to_numpy()
        sums["dominant_model_share"] = np.where(sums["tokens"] > 0, share, 1.0)
    req = sums["requests"].to_numpy()
    tok = sums["tokens"].to_numpy()
    inp = sums["input_tokens"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        sums["tokens_per_request"] = np.where(req > 0, tok / req, 0.0)
        sums["output_input_ratio"] = np.where(inp > 0, sums["output_tokens"].to_numpy() / inp, 0.0)
        sums["cache_hit_share"] = np.where(inp > 0, sums["cached_input_tokens"].to_numpy() / inp, 0.0)
        sums["cost_per_mtok"] = np.where(tok > 0, sums["cost_usd"].to_numpy() / tok * 1e6, 0.0)
    sums["hour_of_week"] = hour_of_week(index.to_numpy(), tz)
    return sums


def hour_of_week(ts: np.ndarray, tz: str) -> np.ndarray:
    """Hour of the week (0 = Monday 00:00 local time) of UTC Unix seconds."""
    local = pd.to_datetime(np.asarray(ts, dtype="int64"), unit="s", utc=True).tz_convert(tz)
    return (local.dayofweek * 24 + local.hour).to_numpy(dtype="int64")


def how_baseline(
    values: pd.Series, how: np.ndarray, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Usual value and robust scale per row from the median / MAD of the same hour of the week.

    ``mask`` (True = use) excludes hours from the baseline, e.g. acknowledged incidents. Hours of the week
    never seen fall back to the overall median.
    """
    v = np.asarray(values, dtype=float)
    use = np.ones(len(v), bool) if mask is None else np.asarray(mask, bool)
    vu, hu = v[use], np.asarray(how)[use]
    grouped = pd.Series(vu).groupby(hu)
    med = grouped.median()
    # MAD per hour of week in two vectorised group medians (a per-group apply is ~100x slower).
    dev = np.abs(vu - med.reindex(hu).to_numpy())
    mad = pd.Series(dev).groupby(hu).median() * MAD_TO_SIGMA
    overall = float(np.median(v[use])) if use.any() else 0.0
    usual = pd.Series(how).map(med).fillna(overall).to_numpy()
    pooled = float(np.median(np.abs(v[use] - usual[use]))) * MAD_TO_SIGMA if use.any() else 0.0
    scale = pd.Series(how).map(mad).fillna(pooled).to_numpy()
    # Shrink each hour's scale towards the pooled one: a handful of weeks gives noisy per-hour MADs.
    scale = np.maximum(np.sqrt(0.5 * scale**2 + 0.5 * pooled**2), MIN_LOG_SCALE)
    return usual, scale


def hourly_features(
    rows: pd.DataFrame,
    *,
    scope_rows_total: pd.DataFrame | None = None,
    expected: pd.Series | None = None,
    tz: str = "UTC",
    exclude: np.ndarray | pd.Series | None = None,
) -> pd.DataFrame:
    """Hourly feature vectors of one scope, indexed by ``bucket_ts``, columns :data:`FEATURE_COLUMNS`.

    ``rows``: hourly rollup rows of one scope (``bucket_ts`` UTC hour start, usage sums, optional
    ``model``). ``scope_rows_total``: the account's rows for the scope's share of total cost (1.0 when not
    given). ``expected``: the forecast's in-sample ``yhat`` of cost in USD indexed by ``bucket_ts``; when
    given, ``z_cost`` is the residual against it, else against the hour-of-week median. ``exclude``: a
    boolean per hour (aligned to the output index) of hours left out of the baselines.
    """
    frame = hourly_frame(rows, tz)
    index = frame.index
    how = frame["hour_of_week"].to_numpy()
    use = None if exclude is None else ~np.asarray(exclude, bool)
    out = pd.DataFrame(index=index)
    log_cost = np.log1p(frame["cost_usd"].to_numpy() * 100.0)  # cents, so small spend is not flattened
    log_tokens = np.log1p(frame["tokens"].to_numpy())
    log_requests = np.log1p(frame["requests"].to_numpy())
    log_tpr = np.log1p(frame["tokens_per_request"].to_numpy())
    log_cpt = np.log1p(frame["cost_per_mtok"].to_numpy())
    out["log_cost"] = log_cost
    out["log_tokens"] = log_tokens
    out["log_requests"] = log_requests
    out["log_tokens_per_request"] = log_tpr
    out["output_input_ratio"] = np.log1p(frame["output_input_ratio"].to_numpy())
    out["cache_hit_share"] = frame["cache_hit_share"].to_numpy()
    out["dominant_model_share"] = frame["dominant_model_share"].to_numpy()
    out["log_cost_per_mtok"] = log_cpt
    share = np.ones(len(index))
    if scope_rows_total is not None and len(scope_rows_total):
        total = scope_rows_total.assign(
            bucket_ts=(scope_rows_total["bucket_ts"].astype("int64") // HOUR) * HOUR
        )
        total_cost = total.groupby("bucket_ts")["cost_usd"].sum().reindex(index, fill_value=0).to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(total_cost > 0, frame["cost_usd"].to_numpy() / total_cost, 0.0)
    out["scope_cost_share"] = np.clip(share, 0.0, 1.0)
    angle = 2 * np.pi * how / HOURS_PER_WEEK
    out["how_sin"] = np.sin(angle)
    out["how_cos"] = np.cos(angle)
    if expected is not None:
        exp_cost = pd.Series(expected).reindex(index).astype(float)
        fallback, _ = how_baseline(log_cost, how, use)
        exp_log = np.where(
            exp_cost.notna(), np.log1p(np.clip(exp_cost.fillna(0).to_numpy(), 0, None) * 100.0), fallback
        )
        resid = log_cost - exp_log
        ref = resid if use is None else resid[use]
        scale = max(float(np.median(np.abs(ref - np.median(ref)))) * MAD_TO_SIGMA, MIN_LOG_SCALE)
        out["z_cost"] = np.maximum(resid / scale, Z_FLOOR)
    else:
        out["z_cost"] = _robust_z(log_cost, how, use)
    out["z_tokens"] = _robust_z(log_tokens, how, use)
    out["z_requests"] = _robust_z(log_requests, how, use)
    out["z_tokens_per_request"] = _robust_z(log_tpr, how, use)
    out["z_cost_per_mtok"] = _robust_z(log_cpt, how, use)
    # The largest rise of any metric: one axis on which a single-metric incident (a model switch shows
    # only in cost per token) stands out, however many other features look ordinary.
    out["z_max"] = out[["z_cost", "z_tokens", "z_requests", "z_tokens_per_request", "z_cost_per_mtok"]].max(
        axis=1
    )
    return out[list(FEATURE_COLUMNS)]


# Spend risk is one-sided: an hour far below its usual level (often an empty night hour) is clipped here
# so the forest does not spend its isolation on quiet hours instead of spikes.
Z_FLOOR = -4.0


def _robust_z(v: np.ndarray, how: np.ndarray, use: np.ndarray | None) -> np.ndarray:
    usual, scale = how_baseline(pd.Series(v), how, use)
    return np.maximum((v - usual) / scale, Z_FLOOR)


STREAM_COLUMNS = ("z_value", "z_diff", "z_mean_short", "log_std_ratio", "z_seasonal")


def stream_features(
    timestamps: np.ndarray, values: np.ndarray, *, short: int = 6, long: int = 400
) -> pd.DataFrame:
    """Causal features of a univariate stream: the value at row ``t`` is compared with rows before ``t``.

    * ``z_value``: value vs the median / MAD of the previous ``long`` rows;
    * ``z_diff``: the step from the previous row vs the typical step;
    * ``z_mean_short``: mean of the last ``short`` rows vs the previous ``long`` rows (level shifts);
    * ``log_std_ratio``: log of the last ``4 * short`` rows' spread over the long spread (noise or
      flat-lining);
    * ``z_seasonal``: value vs the median of past values at the same time of day (daily cycles).
    """
    v = pd.Series(np.asarray(values, dtype=float))
    prev = v.shift(1)
    med = prev.rolling(long, min_periods=10).median()
    mad = (prev - med).abs().rolling(long, min_periods=10).median() * MAD_TO_SIGMA
    spread = prev.rolling(long, min_periods=10).std()
    # Floor for flat stretches (MAD 0): a tenth of the typical MAD so far, never the future's.
    floor = np.fmax(mad.expanding(min_periods=1).median().fillna(0.0).to_numpy() * 0.1, 1e-9)
    scale = np.maximum(np.fmax(mad.to_numpy(), 0.2 * spread.to_numpy()), floor)
    diff = v.diff()
    dmad = diff.shift(1).abs().rolling(long, min_periods=10).median() * MAD_TO_SIGMA
    dscale = np.maximum(
        np.fmax(dmad.to_numpy(), 0.2 * diff.shift(1).rolling(long, min_periods=10).std().to_numpy()), floor
    )
    short_mean = v.rolling(short, min_periods=1).mean()
    short_std = v.rolling(4 * short, min_periods=3).std()
    out = pd.DataFrame(
        {
            "z_value": (v - med) / scale,
            "z_diff": diff / dscale,
            "z_mean_short": (short_mean - med) / scale,
            "log_std_ratio": np.log((short_std.to_numpy() + floor) / (spread.to_numpy() + floor)),
            "z_seasonal": _seasonal_z(timestamps, v, scale),
        }
    )
    return out.replace([np.inf, -np.inf], np.nan).fillna(0.0).clip(-50, 50)


def _seasonal_z(timestamps: np.ndarray, v: pd.Series, scale: np.ndarray, days: int = 7) -> np.ndarray:
    """Value minus the median of the same time-of-day slot over up to ``days`` previous days."""
    ts = pd.to_datetime(pd.Series(np.asarray(timestamps)))
    step = ts.diff().median()
    if pd.isna(step) or step <= pd.Timedelta(0) or step > pd.Timedelta(hours=1):
        return np.zeros(len(v))
    slot = ((ts - ts.dt.normalize()) // step).astype("int64")
    frame = pd.DataFrame({"v": v, "slot": slot})
    # Per slot, a shifted rolling median sees only earlier days of that slot.
    past = frame.groupby("slot")["v"].transform(lambda s: s.shift(1).rolling(days, min_periods=2).median())
    resid = (v - past).to_numpy()
    return np.where(np.isnan(resid), 0.0, resid / scale)
