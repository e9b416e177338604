"""Forecasters (Prophet with a labelled seasonal-naive fallback) and the answers derived from them.

Model objects follow one convention: hyperparameters validated in the constructor, ``fit(y)`` returns
self, fitted state lives in attributes ending in ``_``, ``predict(h)`` returns the columns ``ds, yhat,
yhat_lower, yhat_upper`` (80%) plus ``yhat_lower_80/_upper_80/_lower_95/_upper_95``, and
``sample_paths(h, n, seed)`` returns an ``(n, h)`` array of joint predictive draws. ``yhat`` is the
predictive median (what MASE rewards); sums such as the month-end projection use the sample paths, so
their mean is a proper mean of the skewed predictive distribution.

Derived answers take ``now`` and the time zone explicitly and never read the clock.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from openai_monitor.errors import ConfigError, ModelError

from .series import check_freq, period_bounds

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

LEVELS = (80, 95)
TRANSFORMS = ("log", "sqrt", "none")
OUTPUT_COLUMNS = (
    "ds",
    "yhat",
    "yhat_lower",
    "yhat_upper",
    "yhat_lower_80",
    "yhat_upper_80",
    "yhat_lower_95",
    "yhat_upper_95",
)
# Defaults below were chosen by rolling-origin backtest on BurstGPT (daily and hourly) and NAB nyc_taxi
# with benchmarks/forecast_accuracy.py; models/README.md records the numbers.
DEFAULT_TRANSFORM = "log"
DEFAULT_CHANGEPOINT_PRIOR = 0.01
DEFAULT_INTERVAL_SCALE = 1.1
# Per-series interval calibration (see calibrate_interval_scale): bounds on the chosen scale, and the
# prior weight, in held-out points, given to DEFAULT_INTERVAL_SCALE when few points are held out.
CALIBRATION_BOUNDS = (0.8, 3.0)
CALIBRATION_PRIOR_POINTS = 7.0


class NotFittedError(ModelError):
    """predict() or sample_paths() was called before fit()."""


class Forecaster(Protocol):
    kind: str

    def fit(self, y: pd.Series) -> Forecaster: ...

    def predict(self, h: int) -> pd.DataFrame: ...

    def sample_paths(self, h: int, n: int, seed: int = 0) -> np.ndarray: ...


def quiet_prophet() -> None:
    """Silence Prophet's plotly warning and cmdstanpy's per-fit INFO lines (see libraries.md)."""
    logging.getLogger("prophet.plot").disabled = True
    logging.getLogger("prophet").setLevel(logging.WARNING)
    import cmdstanpy

    cmdstanpy.utils.get_logger()
    logging.getLogger("cmdstanpy").disabled = True


def _check_y(y: pd.Series, freq: str) -> pd.Series:
    import numpy as np
    import pandas as pd

    if not isinstance(y, pd.Series) or not isinstance(y.index, pd.DatetimeIndex):
        raise ModelError("y must be a pandas Series indexed by timestamps: build it with build_series()")
    if len(y) < 2:
        raise ModelError(f"need at least 2 periods of history to forecast, got {len(y)}")
    values = y.to_numpy(dtype="float64")
    if not np.isfinite(values).all():
        raise ModelError("y contains NaN or infinite values: missing periods must be zeros")
    if (values < 0).any():
        raise ModelError("y contains negative values: usage metrics are never negative")
    expected = pd.date_range(y.index[0], periods=len(y), freq=freq)
    if not y.index.equals(expected):
        raise ModelError(f"y must be regular at freq {freq!r} with no gaps: build it with build_series()")
    return pd.Series(values, index=y.index.tz_localize(None) if y.index.tz else y.index, name=y.name)


def _frame(ds: pd.DatetimeIndex, yhat: np.ndarray, paths: np.ndarray) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    q = np.quantile(paths, [0.10, 0.90, 0.025, 0.975], axis=0)
    # Keep the median inside its own bands even when few samples make quantiles coarse.
    lo80, hi80 = np.minimum(q[0], yhat), np.maximum(q[1], yhat)
    lo95, hi95 = np.minimum(q[2], lo80), np.maximum(q[3], hi80)
    return pd.DataFrame(
        {
            "ds": ds,
            "yhat": yhat,
            "yhat_lower": lo80,
            "yhat_upper": hi80,
            "yhat_lower_80": lo80,
            "yhat_upper_80": hi80,
            "yhat_lower_95": lo95,
            "yhat_upper_95": hi95,
        }
    )


def _check_h(h: int) -> int:
    if not isinstance(h, int) or isinstance(h, bool) or h < 1:
        raise ModelError(f"horizon h must be a positive integer, got {h!r}")
    return h


class ProphetForecaster:
    """Prophet on a variance-stabilised scale, back-transformed to non-negative values.

    ``transform="log"`` fits ``z = log1p(y / s)`` with ``s`` a tenth of the mean positive value, so the
    model is unit-free (USD or cents give the same forecast), zeros are allowed, seasonality acts
    multiplicatively (a Monday peak scales with the level) and every back-transformed draw is >= 0.
    ``"sqrt"`` is milder; ``"none"`` fits raw values and floors draws at zero.
    ``interval_scale`` widens (>1) or narrows predictive draws around the median on the fitted scale.
    """

    kind = "prophet"

    def __init__(
        self,
        *,
        freq: str = "D",
        transform: str = DEFAULT_TRANSFORM,
        changepoint_prior_scale: float = DEFAULT_CHANGEPOINT_PRIOR,
        changepoint_range: float = 0.9,
        n_changepoints: int = 25,
        seasonality_prior_scale: float = 10.0,
        holidays_country: str | None = None,
        interval_scale: float = DEFAULT_INTERVAL_SCALE,
        uncertainty_samples: int = 1000,
        seed: int = 0,
    ) -> None:
        self.freq = check_freq(freq)
        if transform not in TRANSFORMS:
            raise ConfigError(f"unknown transform {transform!r}: use one of {', '.join(TRANSFORMS)}")
        for name, value in (
            ("changepoint_prior_scale", changepoint_prior_scale),
            ("seasonality_prior_scale", seasonality_prior_scale),
            ("interval_scale", interval_scale),
        ):
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if not 0 < changepoint_range <= 1:
            raise ConfigError(f"changepoint_range must be in (0, 1], got {changepoint_range!r}")
        if n_changepoints < 0 or uncertainty_samples < 10:
            raise ConfigError("n_changepoints must be >= 0 and uncertainty_samples >= 10")
        if holidays_country is not None:
            import holidays

            try:
                holidays.country_holidays(holidays_country)
            except NotImplementedError as exc:
                raise ConfigError(
                    f"no holiday calendar for country {holidays_country!r}: use an ISO code such as 'US' or 'FR'"
                ) from exc
        self.transform = transform
        self.changepoint_prior_scale = float(changepoint_prior_scale)
        self.changepoint_range = float(changepoint_range)
        self.n_changepoints = int(n_changepoints)
        self.seasonality_prior_scale = float(seasonality_prior_scale)
        self.holidays_country = holidays_country
        self.interval_scale = float(interval_scale)
        self.uncertainty_samples = int(uncertainty_samples)
        self.seed = int(seed)

    def get_params(self) -> dict[str, Any]:
        return {
            "freq": self.freq,
            "transform": self.transform,
            "changepoint_prior_scale": self.changepoint_prior_scale,
            "changepoint_range": self.changepoint_range,
            "n_changepoints": self.n_changepoints,
            "seasonality_prior_scale": self.seasonality_prior_scale,
            "holidays_country": self.holidays_country,
            "interval_scale": self.interval_scale,
            "uncertainty_samples": self.uncertainty_samples,
            "seed": self.seed,
        }

    def _forward(self, y: np.ndarray) -> np.ndarray:
        import numpy as np

        if self.transform == "log":
            return np.log1p(y / self.scale_)
        if self.transform == "sqrt":
            return np.sqrt(y / self.scale_)
        return y / self.scale_

    def _inverse(self, z: np.ndarray) -> np.ndarray:
        import numpy as np

        if self.transform == "log":
            out = np.expm1(z)
        elif self.transform == "sqrt":
            out = np.square(np.maximum(z, 0.0))
        else:
            out = z
        return np.maximum(out, 0.0) * self.scale_

    def fit(self, y: pd.Series) -> ProphetForecaster:
        import pandas as pd

        y = _check_y(y, self.freq)
        quiet_prophet()
        from .prophet_memo import MemoProphet as Prophet

        values = y.to_numpy()
        positive = values[values > 0]
        mean_pos = float(positive.mean()) if len(positive) else 1.0
        self.scale_ = mean_pos / 10.0 if self.transform == "log" else mean_pos
        hourly = self.freq == "h"
        model = Prophet(
            growth="linear",
            changepoint_prior_scale=self.changepoint_prior_scale,
            changepoint_range=self.changepoint_range,
            n_changepoints=min(self.n_changepoints, max(len(y) // 3, 0)),
            seasonality_prior_scale=self.seasonality_prior_scale,
            yearly_seasonality=False,
            weekly_seasonality=len(y) >= (14 * 24 if hourly else 14),
            daily_seasonality=hourly and len(y) >= 48,
            uncertainty_samples=0,
        )
        if self.holidays_country:
            model.add_country_holidays(country_name=self.holidays_country)
        frame = pd.DataFrame({"ds": y.index, "y": self._forward(values)})
        model.fit(frame)
        self._draw_cache = None
        self.model_ = model
        self.history_ = y
        self.last_ds_ = y.index[-1]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this ProphetForecaster is not fitted yet: call fit(y) before predicting")

    def _future(self, h: int) -> pd.DataFrame:
        import pandas as pd

        ds = pd.date_range(self.last_ds_, periods=h + 1, freq=self.freq)[1:]
        return pd.DataFrame({"ds": ds})

    def _median_z(self, future: pd.DataFrame) -> np.ndarray:
        self.model_.uncertainty_samples = 0
        return self.model_.predict(future)["yhat"].to_numpy()

    def _paths_z(self, future: pd.DataFrame, n: int, seed: int, median_z: np.ndarray) -> np.ndarray:
        import numpy as np

        # Prophet draws from the global NumPy generator; seed it for reproducible draws, then restore it.
        state = np.random.get_state()
        try:
            np.random.seed(seed)
            self.model_.uncertainty_samples = n
            draws = self.model_.predictive_samples(future)["yhat"].T[:n]
        finally:
            self.model_.uncertainty_samples = 0
            np.random.set_state(state)
        return median_z + self.interval_scale * (draws - median_z)

    def _draws(self, h: int, n: int, seed: int) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
        """Forecast dates, median and ``(n, h)`` paths on the original scale, for one (h, n, seed).

        The draws are seeded, so the result depends only on the key: keeping the last one lets
        ``predict(h)`` and ``sample_paths(h, uncertainty_samples, seed)`` share one draw (training asks
        for both on the same horizon) without changing what either returns.
        """
        import pandas as pd

        key = (h, n, seed)
        cached = getattr(self, "_draw_cache", None)
        if cached is not None and cached[0] == key and cached[1] is self.model_:
            return cached[2]
        future = self._future(h)
        median_z = self._median_z(future)
        paths_z = self._paths_z(future, n, seed, median_z)
        out = (pd.DatetimeIndex(future["ds"]), self._inverse(median_z), self._inverse(paths_z))
        self._draw_cache = (key, self.model_, out, (median_z, paths_z))
        return out

    def interval_ratios(self, actual: np.ndarray) -> dict[int, np.ndarray]:
        """For points that followed the fitted history: the interval scale each one needed to be covered.

        Per level, ``r = (z - median) / (upper - median)`` above the median and ``(median - z) /
        (median - lower)`` below it, on the fitted scale, where the band is the one this model's current
        ``interval_scale`` gives; ``r * interval_scale`` is the smallest scale whose band holds the point.
        Uses the same seeded draws as ``predict(len(actual))``.
        """
        import numpy as np

        self._check_fitted()
        actual = np.asarray(actual, dtype="float64")
        self._draws(_check_h(len(actual)), self.uncertainty_samples, self.seed)
        median_z, paths_z = self._draw_cache[3]
        z = self._forward(actual)
        out = {}
        for level in LEVELS:
            tail = (100 - level) / 200
            lo, hi = np.quantile(paths_z, [tail, 1 - tail], axis=0)
            up, down = np.maximum(hi - median_z, 1e-12), np.maximum(median_z - lo, 1e-12)
            dev = z - median_z
            out[level] = np.where(dev >= 0, dev / up, -dev / down)
        return out

    def with_interval_scale(self, scale: float) -> ProphetForecaster:
        """Set a calibrated ``interval_scale`` on a fitted model (drops cached draws); returns self."""
        if not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
            raise ConfigError(f"interval_scale must be a positive number, got {scale!r}")
        self.interval_scale = float(scale)
        self._draw_cache = None
        return self

    def point(self, h: int) -> np.ndarray:
        """The predictive median only (no sampling): what model selection on a holdout compares."""
        self._check_fitted()
        return self._inverse(self._median_z(self._future(_check_h(h))))

    def sample_paths(self, h: int, n: int = 1000, seed: int = 0) -> np.ndarray:
        self._check_fitted()
        return self._draws(_check_h(h), int(n), int(seed))[2].copy()

    def predict(self, h: int) -> pd.DataFrame:
        self._check_fitted()
        ds, median, paths = self._draws(_check_h(h), self.uncertainty_samples, self.seed)
        return _frame(ds, median, paths)

    def predict_with_paths(self, h: int) -> tuple[pd.DataFrame, np.ndarray]:
        """``predict(h)`` and the ``(uncertainty_samples, h)`` draws its intervals came from."""
        frame = self.predict(h)
        return frame, self.sample_paths(h, self.uncertainty_samples, self.seed)


class SeasonalNaiveForecaster:
    """Repeat the last season; intervals from bootstrapped in-sample seasonal differences.

    Sample paths follow a seasonal random walk, ``y[t] = max(0, y[t - m] + e)`` with ``e`` drawn from the
    observed ``y[t] - y[t - m]``: those differences are exactly this model's past one-season-ahead errors,
    so the intervals are calibrated on the series itself and widen with each further season ahead.
    A history shorter than one season falls back to the naive last value (``m = 1``).
    """

    kind = "seasonal_naive"

    def __init__(self, *, season: int = 7, freq: str = "D", n_samples: int = 2000, seed: int = 0) -> None:
        if not isinstance(season, int) or season < 1:
            raise ConfigError(f"season must be a positive integer, got {season!r}")
        if n_samples < 10:
            raise ConfigError(f"n_samples must be >= 10, got {n_samples!r}")
        self.season = season
        self.freq = check_freq(freq)
        self.n_samples = int(n_samples)
        self.seed = int(seed)

    def get_params(self) -> dict[str, Any]:
        return {"season": self.season, "freq": self.freq, "n_samples": self.n_samples, "seed": self.seed}

    def fit(self, y: pd.Series) -> SeasonalNaiveForecaster:
        y = _check_y(y, self.freq)
        values = y.to_numpy()
        m = self.season if len(values) > self.season else 1
        self.season_ = m
        self.last_season_ = values[-m:].copy()
        self.residuals_ = values[m:] - values[:-m]
        self.history_ = y
        self.last_ds_ = y.index[-1]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "residuals_"):
            raise NotFittedError(
                "this SeasonalNaiveForecaster is not fitted yet: call fit(y) before predicting"
            )

    def _point(self, h: int) -> np.ndarray:
        import numpy as np

        return np.resize(self.last_season_, h).astype("float64")

    def sample_paths(self, h: int, n: int = 1000, seed: int = 0) -> np.ndarray:
        import numpy as np

        self._check_fitted()
        h = _check_h(h)
        rng = np.random.default_rng(seed)
        m = self.season_
        draws = rng.choice(self.residuals_, size=(int(n), h), replace=True)
        paths = np.empty((int(n), h))
        for j in range(h):
            prev = paths[:, j - m] if j >= m else self.last_season_[j]
            paths[:, j] = np.maximum(prev + draws[:, j], 0.0)
        return paths

    def point(self, h: int) -> np.ndarray:
        self._check_fitted()
        return self._point(_check_h(h))

    def predict(self, h: int) -> pd.DataFrame:
        return self.predict_with_paths(h)[0]

    def predict_with_paths(self, h: int) -> tuple[pd.DataFrame, np.ndarray]:
        """``predict(h)`` and the ``(n_samples, h)`` draws its intervals came from."""
        import pandas as pd

        self._check_fitted()
        h = _check_h(h)
        ds = pd.date_range(self.last_ds_, periods=h + 1, freq=self.freq)[1:]
        paths = self.sample_paths(h, self.n_samples, self.seed)
        return _frame(ds, self._point(h), paths), paths


@dataclass
class FittedForecast:
    """A fitted forecaster with the label and provenance every output must carry."""

    forecaster: Any
    kind: str
    freq: str
    fallback_reason: str | None = None
    trained_at: datetime | None = None
    data_start: datetime | None = None
    data_end: datetime | None = None  # naive local start of the last fitted period
    rows: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    tz: str | None = None
    metric: str | None = None
    # Model selection's holdout fits (not stored): {"origin": index of the first held-out period,
    # "horizon": periods held out, "models": {kind: model fitted on y[:origin]}}. A backtest whose origin
    # is the same reuses them instead of fitting again.
    holdout: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    # Per-series interval calibration ({"scale", "method", "points", ...}); None when not calibrated.
    calibration: dict[str, Any] | None = None

    def predict(self, h: int) -> pd.DataFrame:
        out = self.forecaster.predict(h)
        out["kind"] = self.kind
        return out

    def predict_with_paths(self, h: int) -> tuple[pd.DataFrame, np.ndarray]:
        """``predict(h)`` plus the predictive draws its intervals came from, drawn once."""
        if hasattr(self.forecaster, "predict_with_paths"):
            out, paths = self.forecaster.predict_with_paths(h)
        else:
            out, paths = self.forecaster.predict(h), self.forecaster.sample_paths(h)
        out["kind"] = self.kind
        return out, paths

    def sample_paths(self, h: int, n: int = 1000, seed: int = 0) -> np.ndarray:
        return self.forecaster.sample_paths(h, n, seed)

    @property
    def history(self) -> pd.Series:
        return self.forecaster.history_


def calibrate_interval_scale(
    ratios: Mapping[int, np.ndarray],
    current_scale: float,
    *,
    prior_scale: float = DEFAULT_INTERVAL_SCALE,
    prior_points: float = CALIBRATION_PRIOR_POINTS,
    bounds: tuple[float, float] = CALIBRATION_BOUNDS,
) -> dict[str, Any]:
    """Split-conformal interval scale from held-out points (``interval_ratios`` of a model fitted before them).

    The raw 80% scale is the ``ceil(0.8 n)``-th smallest needed scale: the smallest scale that covers
    at least 80% of the calibration points. A week of daily points gives only 7 ratios, so on the log
    scale the estimate is pulled toward ``prior_scale`` with weight ``prior_points / (n + prior_points)``
    (the conformal ``ceil((n + 1) 0.8)`` correction would take the maximum of 7 points; backtests found
    it too wide on BurstGPT, 80% coverage 0.863 vs 0.840); the result is clipped to ``bounds``. Returns
    the scale with what it came from (stored in the artefact's metadata).
    """
    import numpy as np

    r80 = np.sort(np.asarray(ratios[80], dtype="float64"))
    n = len(r80)
    if n == 0:
        return {"scale": float(prior_scale), "method": "default", "points": 0}
    k = max(int(math.ceil(n * 0.8)), 1)
    raw = max(float(r80[k - 1]) * current_scale, 1e-6)
    weight = n / (n + prior_points)
    blended = math.exp(weight * math.log(raw) + (1 - weight) * math.log(prior_scale))
    scale = min(max(blended, bounds[0]), bounds[1])
    r95 = np.asarray(ratios[95], dtype="float64") * current_scale / scale
    return {
        "scale": round(scale, 4),
        "method": "split_conformal",
        "points": n,
        "raw_scale": round(raw, 4),
        "calibration_coverage_80": float(np.mean(r80 * current_scale <= scale)),
        "calibration_coverage_95": float(np.mean(r95 <= 1.0)),
    }


def default_season(freq: str) -> int:
    return 7 if check_freq(freq) == "D" else 24


def fit_forecaster(
    y: pd.Series,
    freq: str,
    *,
    now: datetime,
    min_history_days: float = 14,
    holidays_country: str | None = None,
    prophet_params: Mapping[str, Any] | None = None,
    season: int | None = None,
    holdout_days: float | None = None,
    calibration_days: float | None = None,
    tz: str | None = None,
    metric: str | None = None,
) -> FittedForecast:
    """Fit Prophet when the history is long enough, else (or when Prophet fails) the seasonal naive.

    With ``holdout_days`` (default 7 for daily series, 0 for hourly ones) and enough history (``min_history_days`` plus the holdout), both models
    first forecast the held-out last days from the rest; when seasonal naive has the lower absolute
    error, it is chosen and labelled with that reason. On short, bursty usage (a new account's first
    weeks) Prophet's linear trend can extrapolate a ramp-up far beyond what follows; this check catches
    that, and backtests show it lowers MASE on BurstGPT without hurting longer, regular series. On
    hourly series the same check (one week held out) picked the naive rule where Prophet then did better,
    so it is off there by default.

    With ``calibration_days`` (default 7 for daily series, 3 for hourly ones; 0 turns it off) a chosen Prophet model's ``interval_scale``
    is calibrated on the series' own past errors: a Prophet fitted without the last ``calibration_days``
    forecasts them, and the scale that gives 80% coverage there (``calibrate_interval_scale``) is set
    on the final model. Daily series reuse the model-selection holdout fit; hourly ones fit it only for
    this. The outcome is in ``FittedForecast.calibration``. Unless ``prophet_params`` sets
    ``interval_scale`` itself, which turns calibration off.
    """
    import numpy as np

    freq = check_freq(freq)
    y = _check_y(y, freq)
    periods_per_day = 1 if freq == "D" else 24
    min_periods = int(math.ceil(min_history_days * periods_per_day))
    season = season or default_season(freq)
    if holdout_days is None:
        holdout_days = 7 if freq == "D" else 0
    if calibration_days is None:
        calibration_days = 7 if freq == "D" else 3
    params = dict(prophet_params or {})
    params.setdefault("holidays_country", holidays_country)
    reason: str | None = None
    fitted: Any = None
    holdout_info: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    calibrate = calibration_days > 0 and "interval_scale" not in params
    if len(y) < min_periods:
        reason = (
            f"history too short: {len(y)} periods, Prophet needs {min_periods} ({min_history_days:g} days)"
        )
    elif float(y.max()) == float(y.min()):
        reason = "history is constant"
    else:
        try:
            holdout = int(round((holdout_days or 0) * periods_per_day))
            if holdout and len(y) - holdout >= min_periods:
                train, test = y.iloc[:-holdout], y.to_numpy()[-holdout:]
                prophet_ho = ProphetForecaster(freq=freq, **params).fit(train)
                prophet_mae = float(np.abs(prophet_ho.point(holdout) - test).mean())
                naive = SeasonalNaiveForecaster(season=season, freq=freq).fit(train)
                naive_mae = float(np.abs(naive._point(holdout) - test).mean())
                holdout_info = {
                    "origin": len(y) - holdout,
                    "horizon": holdout,
                    "models": {prophet_ho.kind: prophet_ho, naive.kind: naive},
                    "mae": {prophet_ho.kind: prophet_mae, naive.kind: naive_mae},
                }
                if naive_mae < prophet_mae:
                    reason = (
                        f"seasonal naive beat Prophet on the last {holdout_days:g} days held out "
                        f"(MAE {naive_mae:.4g} vs {prophet_mae:.4g})"
                    )
            if reason is None:
                fitted = ProphetForecaster(freq=freq, **params).fit(y)
                calib = int(round(calibration_days * periods_per_day)) if calibrate else 0
                if calib and len(y) - calib >= min_periods:
                    if holdout_info is not None and holdout_info["horizon"] == calib:
                        calib_model = holdout_info["models"][fitted.kind]
                    else:
                        calib_model = ProphetForecaster(freq=freq, **params).fit(y.iloc[:-calib])
                        holdout_info = {
                            "origin": len(y) - calib,
                            "horizon": calib,
                            "models": {calib_model.kind: calib_model},
                        }
                    ratios = calib_model.interval_ratios(y.to_numpy()[-calib:])
                    calibration = calibrate_interval_scale(ratios, calib_model.interval_scale)
                    fitted.with_interval_scale(calibration["scale"])
        except Exception as exc:  # noqa: BLE001 - any Stan/optimizer failure must fall back, with the reason
            reason = f"prophet failed to fit: {type(exc).__name__}: {str(exc)[:200]}"
    if fitted is None:
        fitted = SeasonalNaiveForecaster(season=season, freq=freq).fit(y)
    return FittedForecast(
        forecaster=fitted,
        kind=fitted.kind,
        freq=freq,
        fallback_reason=reason,
        trained_at=now,
        data_start=y.index[0].to_pydatetime(),
        data_end=y.index[-1].to_pydatetime(),
        rows=len(y),
        tz=tz,
        metric=metric,
        holdout=holdout_info,
        calibration=calibration,
    )


class AutoForecaster:
    """What ``fit_forecaster`` would choose, as a fit/predict object (used by backtests)."""

    def __init__(self, *, freq: str = "D", now: datetime | None = None, **opts: Any) -> None:
        self.freq = check_freq(freq)
        self.now = now
        self.opts = opts

    def fit(self, y: pd.Series) -> AutoForecaster:
        self.fitted_ = fit_forecaster(y, self.freq, now=self.now, **self.opts)  # type: ignore[arg-type]
        self.kind = self.fitted_.kind
        return self

    def predict(self, h: int) -> pd.DataFrame:
        if not hasattr(self, "fitted_"):
            raise NotFittedError("this AutoForecaster is not fitted yet: call fit(y) before predicting")
        return self.fitted_.predict(h)

    def sample_paths(self, h: int, n: int = 1000, seed: int = 0) -> np.ndarray:
        if not hasattr(self, "fitted_"):
            raise NotFittedError("this AutoForecaster is not fitted yet: call fit(y) before predicting")
        return self.fitted_.sample_paths(h, n, seed)


# ---------------------------------------------------------------- derived answers


@dataclass(frozen=True)
class MonthEndProjection:
    mean: float
    lower_80: float
    upper_80: float
    lower_95: float
    upper_95: float
    month_to_date: float
    month_end: date  # last day of the month
    periods: int  # forecast periods summed (the current one counted as its remaining fraction)
    kind: str
    fallback_reason: str | None


@dataclass(frozen=True)
class LimitHit:
    """When cumulative monthly spend is expected to cross a limit (dates are local calendar dates)."""

    expected: date  # median crossing date over sample paths
    lower_80: date  # 10th percentile crossing date
    upper_80: date | None  # 90th percentile, None when over 10% of paths stay under the limit this month
    probability: float  # share of paths crossing before the month ends
    already_exceeded: bool


@dataclass(frozen=True)
class Contribution:
    key: str
    forecast_total: float
    last_total: float  # actual total over the last ``h`` periods of history
    share_of_forecast: float
    growth: float  # forecast_total - last_total
    share_of_growth: float | None  # growth / total growth; None when total growth is zero
    kind: str


def _remaining_month_paths(
    fc: FittedForecast, now: datetime, tz: str, partial_fraction: float, n: int, seed: int
) -> tuple[np.ndarray, pd.DatetimeIndex, date]:
    """Sample paths for the current period (remaining share) through the month's last period."""
    import numpy as np
    import pandas as pd

    if not 0 <= partial_fraction <= 1:
        raise ModelError(f"partial_fraction must be in [0, 1], got {partial_fraction!r}")
    current, _, _ = period_bounds(now, fc.freq, tz)
    current = pd.Timestamp(current)
    month_start = current.normalize().replace(day=1)
    next_month = month_start + pd.offsets.MonthBegin(1)
    month_end = (next_month - pd.Timedelta(days=1)).date()
    first = pd.Timestamp(fc.history.index[-1]) + pd.tseries.frequencies.to_offset(fc.freq)
    if first > current:
        raise ModelError("the forecast starts after the current period: build the series with the same now")
    ds = pd.date_range(first, next_month, freq=fc.freq, inclusive="left")
    if len(ds) == 0:
        return np.zeros((n, 0)), ds, month_end
    paths = fc.sample_paths(len(ds), n, seed)
    # Periods before the current one already happened (stale model): their spend is in month_to_date.
    keep = ds >= current
    weights = np.where(ds[keep] == current, 1.0 - partial_fraction, 1.0)
    return paths[:, keep] * weights, ds[keep], month_end


def month_end_projection(
    fc: FittedForecast,
    month_to_date: float,
    now: datetime,
    tz: str,
    *,
    partial_fraction: float = 0.0,
    n: int = 2000,
    seed: int = 0,
) -> MonthEndProjection:
    """Month-to-date spend plus forecast draws summed over the rest of the month.

    ``month_to_date`` includes the current partial period; its remaining ``1 - partial_fraction`` share
    is taken from the forecast of the current period.
    """
    import numpy as np

    paths, ds, month_end = _remaining_month_paths(fc, now, tz, partial_fraction, n, seed)
    totals = month_to_date + paths.sum(axis=1)
    q = np.quantile(totals, [0.10, 0.90, 0.025, 0.975])
    return MonthEndProjection(
        mean=float(totals.mean()),
        lower_80=float(q[0]),
        upper_80=float(q[1]),
        lower_95=float(q[2]),
        upper_95=float(q[3]),
        month_to_date=float(month_to_date),
        month_end=month_end,
        periods=len(ds),
        kind=fc.kind,
        fallback_reason=fc.fallback_reason,
    )


def prob_exceed(
    fc: FittedForecast,
    month_to_date: float,
    limit: float,
    now: datetime,
    tz: str,
    *,
    partial_fraction: float = 0.0,
    n: int = 2000,
    seed: int = 0,
) -> float:
    """Probability that the month's total exceeds ``limit``: the share of predictive paths above it."""
    if month_to_date > limit:
        return 1.0
    paths, _, _ = _remaining_month_paths(fc, now, tz, partial_fraction, n, seed)
    return float((month_to_date + paths.sum(axis=1) > limit).mean())


def limit_hit_date(
    fc: FittedForecast,
    month_to_date: float,
    limit: float,
    now: datetime,
    tz: str,
    *,
    partial_fraction: float = 0.0,
    n: int = 2000,
    seed: int = 0,
) -> LimitHit | None:
    """The local date cumulative monthly spend crosses ``limit``, or None if under half the paths do."""
    import numpy as np

    current, _, _ = period_bounds(now, fc.freq, tz)
    if month_to_date >= limit:
        today = current.date()
        return LimitHit(today, today, today, 1.0, True)
    paths, ds, _ = _remaining_month_paths(fc, now, tz, partial_fraction, n, seed)
    if paths.shape[1] == 0:
        return None
    crossed = month_to_date + np.cumsum(paths, axis=1) >= limit
    hit = crossed.any(axis=1)
    # Period index of the first crossing; paths that never cross sort last (censored at month end).
    first = np.where(hit, crossed.argmax(axis=1), paths.shape[1])
    probability = float(hit.mean())
    if probability < 0.5:
        return None
    order = np.sort(first)

    def at(q: float) -> date | None:
        idx = order[min(int(math.floor(q * len(order))), len(order) - 1)]
        return None if idx >= paths.shape[1] else ds[idx].date()

    expected, lower = at(0.5), at(0.1)
    assert expected is not None and lower is not None  # at least half the paths cross
    return LimitHit(expected, lower, at(0.9), probability, False)


def contributions(
    forecasts_by_key: Mapping[str, FittedForecast],
    *,
    h: int,
    n: int = 1000,
    seed: int = 0,
) -> list[Contribution]:
    """Each series' share of the next ``h`` periods' forecast spend and of growth over the last ``h``.

    Forecast totals are means over sample paths (a sum of medians would understate skewed spend).
    Sorted by forecast total, largest first.
    """
    h = _check_h(h)
    rows = []
    for key, fc in forecasts_by_key.items():
        total = float(fc.sample_paths(h, n, seed).sum(axis=1).mean())
        last = float(fc.history.iloc[-h:].sum())
        rows.append((key, total, last, fc.kind))
    grand = sum(r[1] for r in rows)
    growth_total = sum(r[1] - r[2] for r in rows)
    out = [
        Contribution(
            key=key,
            forecast_total=total,
            last_total=last,
            share_of_forecast=total / grand if grand > 0 else 0.0,
            growth=total - last,
            share_of_growth=(total - last) / growth_total if growth_total != 0 else None,
            kind=kind,
        )
        for key, total, last, kind in rows
    ]
    return sorted(out, key=lambda c: c.forecast_total, reverse=True)
