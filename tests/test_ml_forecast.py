"""Forecasters: hand-computable fakes for the derived answers, real Prophet on real BurstGPT data."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from openai_monitor.errors import ConfigError, ModelError
from openai_monitor.ml.backtest import backtest
from openai_monitor.ml.forecast import (
    OUTPUT_COLUMNS,
    FittedForecast,
    NotFittedError,
    ProphetForecaster,
    SeasonalNaiveForecaster,
    calibrate_interval_scale,
    contributions,
    fit_forecaster,
    limit_hit_date,
    month_end_projection,
    prob_exceed,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BURSTGPT = SHARED / "data" / "burstgpt" / "burstgpt1_hourly_days00-41.csv"
UTC = "UTC"


class FakeForecaster:
    """Path i is the constant ``base + i`` every period: sums are arithmetic you can do by hand."""

    kind = "fake"

    def __init__(self, history: pd.Series, base: float, n_distinct: int = 10) -> None:
        self.history_ = history
        self.base = base
        self.n_distinct = n_distinct

    def sample_paths(self, h: int, n: int, seed: int = 0) -> np.ndarray:
        levels = self.base + np.arange(n) % self.n_distinct
        return np.repeat(levels[:, None], h, axis=1).astype(float)

    def predict(self, h: int) -> pd.DataFrame:
        raise AssertionError("derived answers must use sample paths")


def _fake(last_day: str, base: float, history_values: list[float] | None = None) -> FittedForecast:
    values = history_values or [1.0] * 5
    index = pd.date_range(end=last_day, periods=len(values), freq="D")
    return FittedForecast(
        forecaster=FakeForecaster(pd.Series(values, index=index), base), kind="fake", freq="D"
    )


NOW = datetime(2025, 4, 21, 12, tzinfo=ZoneInfo(UTC))  # 21 April, 10 days to go including today


def test_month_end_projection_sums_rest_of_month() -> None:
    fc = _fake("2025-04-20", base=10.0)
    out = month_end_projection(fc, 100.0, NOW, UTC, partial_fraction=0.5, n=1000)
    # Path i adds (10 + i % 10) * (0.5 for today + 9 more days) = 9.5 * level.
    totals = 100.0 + 9.5 * (10.0 + np.arange(1000) % 10)
    assert out.periods == 10
    assert out.month_end == date(2025, 4, 30)
    assert out.mean == pytest.approx(totals.mean())
    assert out.mean == pytest.approx(100 + 9.5 * 14.5)
    assert out.lower_80 == pytest.approx(np.quantile(totals, 0.1))
    assert out.upper_95 == pytest.approx(np.quantile(totals, 0.975))
    assert out.lower_95 <= out.lower_80 <= out.mean <= out.upper_80 <= out.upper_95


def test_stale_forecast_skips_periods_already_counted() -> None:
    # Trained through 17 April: the 18th-20th are in month_to_date already and must not be added again.
    fc = _fake("2025-04-17", base=10.0)
    out = month_end_projection(fc, 100.0, NOW, UTC, partial_fraction=0.0, n=10)
    assert out.periods == 10
    assert out.mean == pytest.approx(100 + 10 * 14.5)


def test_prob_exceed_counts_paths() -> None:
    fc = _fake("2025-04-20", base=10.0)
    # Totals are 100 + 10 * level, level 10..19: totals 200..290. Above 245: levels 15..19 -> half.
    assert prob_exceed(fc, 100.0, 245.0, NOW, UTC, n=1000) == pytest.approx(0.5)
    assert prob_exceed(fc, 100.0, 1000.0, NOW, UTC, n=1000) == 0.0
    assert prob_exceed(fc, 300.0, 250.0, NOW, UTC, n=1000) == 1.0


def test_limit_hit_date_from_paths() -> None:
    fc = _fake("2025-04-20", base=10.0)
    # Cumulative after k days (k = 1 is today) = 100 + k * level, so level L crosses 200 on day
    # ceil(100 / L): levels 17-19 -> day 6, 15-16 -> 7, 13-14 -> 8, 12 -> 9, 10-11 -> 10 (100 paths each).
    # Sorted crossing days: 300 x 6, 200 x 7, 200 x 8, 100 x 9, 200 x 10; item 500 is day 8 (28 April).
    hit = limit_hit_date(fc, 100.0, 200.0, NOW, UTC, n=1000)
    assert hit is not None and not hit.already_exceeded
    assert hit.probability == 1.0
    assert hit.expected == date(2025, 4, 28)
    assert hit.lower_80 == date(2025, 4, 26)  # item 100: day 6
    assert hit.upper_80 == date(2025, 4, 30)
    assert limit_hit_date(fc, 100.0, 10_000.0, NOW, UTC, n=1000) is None
    already = limit_hit_date(fc, 250.0, 200.0, NOW, UTC)
    assert already is not None and already.already_exceeded and already.expected == date(2025, 4, 21)


def test_contributions_shares_of_forecast_and_growth() -> None:
    # Over h = 2 days: a forecasts 2 * 14.5 = 29 (last 2 days: 10), b forecasts 2 * 4.5 = 9 (last: 20).
    fc_a = _fake("2025-04-20", base=10.0, history_values=[5.0, 5.0, 5.0])
    fc_b = _fake("2025-04-20", base=0.0, history_values=[10.0, 10.0, 10.0])
    out = contributions({"gpt-4o": fc_a, "o3": fc_b}, h=2, n=1000)
    assert [c.key for c in out] == ["gpt-4o", "o3"]
    a, b = out
    assert a.forecast_total == pytest.approx(29.0) and b.forecast_total == pytest.approx(9.0)
    assert a.share_of_forecast == pytest.approx(29 / 38)
    assert a.growth == pytest.approx(19.0) and b.growth == pytest.approx(-11.0)
    assert a.share_of_growth == pytest.approx(19 / 8) and b.share_of_growth == pytest.approx(-11 / 8)


def _burstgpt_daily(column: str = "conversation") -> pd.Series:
    frame = pd.read_csv(BURSTGPT)
    daily = frame.groupby("day")[column].sum().astype(float)
    daily.index = pd.date_range("2024-01-01", periods=len(daily), freq="D")
    return daily


def _check_frame(out: pd.DataFrame, h: int) -> None:
    assert list(out.columns[: len(OUTPUT_COLUMNS)]) == list(OUTPUT_COLUMNS)
    assert len(out) == h
    assert (out["yhat_lower_95"] >= 0).all()
    assert (out["yhat_lower_95"] <= out["yhat_lower_80"]).all()
    assert (out["yhat_lower_80"] <= out["yhat"]).all() and (out["yhat"] <= out["yhat_upper_80"]).all()
    assert (out["yhat_upper_80"] <= out["yhat_upper_95"]).all()
    assert (
        (out["yhat_upper_95"] - out["yhat_lower_95"]) > (out["yhat_upper_80"] - out["yhat_lower_80"])
    ).all()


def test_prophet_on_real_burstgpt_daily() -> None:
    y = _burstgpt_daily()
    model = ProphetForecaster(freq="D", seed=3).fit(y)
    out = model.predict(14)
    _check_frame(out, 14)
    assert out["ds"].iloc[0] == pd.Timestamp("2024-02-12")
    # Weekly pattern: BurstGPT conversation traffic has two quiet days per week (about 1,500 vs 3,000+).
    assert out["yhat"].min() < 0.7 * out["yhat"].max()
    assert 1000 < out["yhat"].mean() < 4500
    again = ProphetForecaster(freq="D", seed=3).fit(y).predict(14)
    assert again["yhat_upper_95"].to_numpy() == pytest.approx(out["yhat_upper_95"].to_numpy())
    paths = model.sample_paths(14, 200, seed=1)
    assert paths.shape == (200, 14) and (paths >= 0).all()


def test_prophet_never_negative_on_series_with_zeros() -> None:
    y = _burstgpt_daily("api").iloc[:21]  # starts near zero, then bursts
    out = ProphetForecaster(freq="D", transform="none").fit(y).predict(10)
    assert (out[["yhat", "yhat_lower_95"]] >= 0).all().all()


def test_prophet_with_country_holidays_offline() -> None:
    out = ProphetForecaster(freq="D", holidays_country="US").fit(_burstgpt_daily()).predict(7)
    _check_frame(out, 7)
    assert "US" in ProphetForecaster(holidays_country="US").get_params()["holidays_country"]


def test_fallback_on_ten_days_is_labelled() -> None:
    y = _burstgpt_daily().iloc[:10]
    fc = fit_forecaster(y, "D", now=datetime(2024, 1, 11, tzinfo=ZoneInfo(UTC)))
    assert fc.kind == "seasonal_naive"
    assert fc.fallback_reason is not None and "too short" in fc.fallback_reason
    out = fc.predict(7)
    assert (out["kind"] == "seasonal_naive").all()
    # Seasonal naive with season 7 repeats days 3..9.
    assert out["yhat"].tolist() == y.iloc[3:10].tolist()
    _check_frame(out.assign(yhat_upper_95=out["yhat_upper_95"] + 1e-9), 7)


def test_long_history_uses_prophet_or_says_why() -> None:
    fc = fit_forecaster(_burstgpt_daily(), "D", now=datetime(2024, 2, 12, tzinfo=ZoneInfo(UTC)))
    assert fc.kind == "prophet" and fc.fallback_reason is None
    assert fc.rows == 42 and fc.data_end == datetime(2024, 2, 11)


def test_prophet_failure_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_fit(self, y):  # a Stan failure, as cmdstanpy raises it
        raise RuntimeError("Error during optimization")

    monkeypatch.setattr(ProphetForecaster, "fit", broken_fit)
    fc = fit_forecaster(_burstgpt_daily(), "D", now=datetime(2024, 2, 12, tzinfo=ZoneInfo(UTC)))
    assert fc.kind == "seasonal_naive"
    assert "prophet failed to fit: RuntimeError" in fc.fallback_reason


def test_seasonal_naive_intervals_from_residuals() -> None:
    y = pd.Series([10.0, 20.0, 10.0, 22.0, 10.0, 18.0], index=pd.date_range("2024-01-01", periods=6))
    model = SeasonalNaiveForecaster(season=2, n_samples=4000).fit(y)
    assert sorted(model.residuals_.tolist()) == [-4.0, 0.0, 0.0, 2.0]
    paths = model.sample_paths(3, 4000, seed=0)
    # One season ahead: last value plus one residual; two seasons ahead: plus two residuals.
    assert set(np.unique(paths[:, 0])) <= {6.0, 10.0, 12.0}
    assert set(np.unique(paths[:, 1])) <= {14.0, 18.0, 20.0}
    assert paths[:, 2].min() == pytest.approx(2.0)  # 10 - 4 - 4


def test_predict_before_fit_and_bad_params() -> None:
    with pytest.raises(NotFittedError, match="call fit"):
        ProphetForecaster().predict(3)
    with pytest.raises(NotFittedError, match="call fit"):
        SeasonalNaiveForecaster().sample_paths(3, 10)
    with pytest.raises(ConfigError, match="transform"):
        ProphetForecaster(transform="boxcox")
    with pytest.raises(ConfigError, match="holiday"):
        ProphetForecaster(holidays_country="Atlantis")
    with pytest.raises(ModelError, match="negative"):
        SeasonalNaiveForecaster().fit(pd.Series([1.0, -1.0], index=pd.date_range("2024-01-01", periods=2)))


def test_backtest_metrics_by_hand() -> None:
    y = pd.Series([1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 4.0], index=pd.date_range("2024-01-01", periods=8))
    result = backtest(y, lambda: SeasonalNaiveForecaster(season=2), horizon=2, n_origins=1, season=2)
    # Train [1,2,1,2,1,2]: seasonal-naive in-sample MAE 0. Forecast [1, 2] vs [1, 4]: MASE undefined.
    assert np.isnan(result.mase)
    assert result.smape == pytest.approx((0 + 200 * 2 / 6) / 2)
    y2 = pd.Series([1.0, 2.0, 2.0, 2.0, 1.0, 4.0], index=pd.date_range("2024-01-01", periods=6))
    r2 = backtest(y2, lambda: SeasonalNaiveForecaster(season=2), horizon=2, n_origins=1, season=2)
    # Train [1,2,2,2]: |2-1| + |2-2| -> scale 0.5. Forecast [2, 2] vs [1, 4]: MAE 1.5 -> MASE 3.
    assert r2.mase == pytest.approx(3.0)


def test_calibrate_interval_scale_by_hand() -> None:
    ratios = {80: np.arange(1, 11) / 10.0, 95: np.arange(1, 11) / 10.0}
    # ceil(0.8 * 10) = 8th smallest needed ratio, 0.8, times the scale the ratios were measured at.
    got = calibrate_interval_scale(ratios, 2.0, prior_points=0.0)
    assert got["scale"] == pytest.approx(1.6) and got["points"] == 10
    assert got["calibration_coverage_80"] == pytest.approx(0.8)
    # Bounded: needed scales far above 3 are clipped.
    assert (
        calibrate_interval_scale({80: ratios[80] * 10, 95: ratios[95]}, 1.0, prior_points=0)["scale"] == 3.0
    )
    # Few points are pulled toward the prior on the log scale: equal weights give the geometric mean.
    seven = {80: np.full(7, 2.0), 95: np.full(7, 2.0)}
    got = calibrate_interval_scale(seven, 1.0, prior_scale=1.0, prior_points=7.0)
    assert got["scale"] == pytest.approx(2.0**0.5, rel=1e-3) and got["raw_scale"] == 2.0
    assert calibrate_interval_scale({80: np.array([]), 95: np.array([])}, 1.0)["method"] == "default"


def test_interval_ratios_measure_the_bands_predict_gives() -> None:
    y = _burstgpt_daily()
    model = ProphetForecaster(freq="D").fit(y.iloc[:-7])
    out = model.predict(7)
    ratios = model.interval_ratios(out["yhat_upper_80"].to_numpy())
    assert ratios[80] == pytest.approx(np.ones(7), rel=1e-6)  # exactly on the 80% band
    assert model.interval_ratios(out["yhat"].to_numpy())[80] == pytest.approx(np.zeros(7), abs=1e-9)
    below = model.interval_ratios(out["yhat_lower_95"].to_numpy())
    assert below[95] == pytest.approx(np.ones(7), rel=1e-6) and (below[80] > 1).all()
    # A point needing ratio r is inside the band once the scale is at least r times the current one.
    actual = y.to_numpy()[-7:]
    r = model.interval_ratios(actual)[80]
    # (1e-6 above: the point that sets r.max() lies exactly on the new band, up to rounding.)
    needed = model.interval_scale * r.max() * (1 + 1e-6)
    wider = ProphetForecaster(freq="D").fit(y.iloc[:-7]).with_interval_scale(needed)
    band = wider.predict(7)
    assert ((actual >= band["yhat_lower_80"] - 1e-9) & (actual <= band["yhat_upper_80"] + 1e-9)).all()


def test_fit_forecaster_calibrates_prophet_intervals_on_held_out_days() -> None:
    y = _burstgpt_daily()
    now = datetime(2024, 2, 12, tzinfo=ZoneInfo(UTC))
    fc = fit_forecaster(y, "D", now=now)
    assert fc.kind == "prophet" and fc.calibration is not None
    cal = fc.calibration
    assert cal["method"] == "split_conformal" and cal["points"] == 7
    assert 0.8 <= cal["scale"] <= 3.0 and fc.forecaster.interval_scale == cal["scale"]
    # Honest: the calibration model never saw the held-out week, and its ratios give the recorded raw scale.
    ho = fc.holdout["models"]["prophet"]
    assert len(ho.history_) == len(y) - 7
    expected = calibrate_interval_scale(ho.interval_ratios(y.to_numpy()[-7:]), ho.interval_scale)
    assert expected == cal
    # Calibration changes only the interval width, not the median.
    plain = fit_forecaster(y, "D", now=now, calibration_days=0)
    assert plain.calibration is None and plain.forecaster.interval_scale == 1.1
    a, b = fc.predict(7), plain.predict(7)
    assert a["yhat"].to_numpy() == pytest.approx(b["yhat"].to_numpy())
    width = (a["yhat_upper_80"] - a["yhat_lower_80"]) / (b["yhat_upper_80"] - b["yhat_lower_80"])
    assert (width > 1).all() if cal["scale"] > 1.1 else (width <= 1 + 1e-9).all()


def test_hourly_series_calibrate_on_their_own_holdout() -> None:
    frame = pd.read_csv(BURSTGPT)
    y = pd.Series(
        frame["conversation"].to_numpy(dtype="float64")[: 21 * 24],
        index=pd.date_range("2024-01-01", periods=21 * 24, freq="h"),
    )
    fc = fit_forecaster(y, "h", now=datetime(2024, 1, 22, tzinfo=ZoneInfo(UTC)))
    assert fc.kind == "prophet" and fc.calibration is not None and fc.calibration["points"] == 72
    assert fc.forecaster.interval_scale == fc.calibration["scale"]
    assert len(fc.holdout["models"]["prophet"].history_) == len(y) - 72
