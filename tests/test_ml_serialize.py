"""Forecast artefacts: round trip, and old format versions that must still load and predict the same."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from openai_monitor.errors import ModelError
from openai_monitor.ml.forecast import FittedForecast, fit_forecaster
from openai_monitor.ml.serialize import FORMAT_VERSION, artefact_info, dump_forecaster, load_forecaster

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BURSTGPT = SHARED / "data" / "burstgpt" / "burstgpt1_hourly_days00-41.csv"
MODELS = Path(__file__).resolve().parent / "data" / "models"
NOW = datetime(2024, 2, 12, 6, tzinfo=timezone.utc)
COLUMNS = ["yhat", "yhat_lower_80", "yhat_upper_80", "yhat_lower_95", "yhat_upper_95"]


def _daily(column: str = "conversation", days: int = 42) -> pd.Series:
    frame = pd.read_csv(BURSTGPT)
    daily = frame.groupby("day")[column].sum().astype(float).iloc[:days]
    daily.index = pd.date_range("2024-01-01", periods=len(daily), freq="D")
    return daily


def write_v1(kind: str, y: pd.Series) -> str:
    """The format-1 writer, kept to document (and regenerate) the checked-in v1 artefacts.

    v1 was flat: Prophet fitted on plain log1p(y) (no unit scale), no library versions, no interval scale.
    """
    doc = {"format_version": 1, "kind": kind, "freq": "D", "trained_at": "2024-02-12T06:00:00+00:00"}
    doc |= {"start": y.index[0].isoformat(), "history": [float(v) for v in y]}
    if kind == "prophet":
        from prophet import Prophet
        from prophet.serialize import model_to_json

        model = Prophet(weekly_seasonality=True, yearly_seasonality=False, daily_seasonality=False)
        model.fit(pd.DataFrame({"ds": y.index, "y": np.log1p(y.to_numpy())}))
        doc |= {"model": model_to_json(model), "seed": 0}
    else:
        doc["season"] = 7
    return json.dumps(doc)


def regenerate() -> None:
    """python -c 'from tests.test_ml_serialize import regenerate; regenerate()' (only if v1 changes)."""
    MODELS.mkdir(parents=True, exist_ok=True)
    for kind, y in (("prophet", _daily()), ("seasonal_naive", _daily(days=10))):
        text = write_v1(kind, y)
        (MODELS / f"v1_{kind}_daily.json").write_text(text)
        expected = load_forecaster(text).predict(7)[COLUMNS]
        (MODELS / f"v1_{kind}_daily.expected.json").write_text(
            json.dumps({c: expected[c].tolist() for c in COLUMNS}, indent=1)
        )


@pytest.mark.parametrize("kind", ["prophet", "seasonal_naive"])
def test_v1_artefacts_still_load_and_predict_the_same(kind: str) -> None:
    text = (MODELS / f"v1_{kind}_daily.json").read_text()
    expected = json.loads((MODELS / f"v1_{kind}_daily.expected.json").read_text())
    fc = load_forecaster(text)
    assert fc.kind == kind
    assert fc.trained_at == datetime(2024, 2, 12, 6, tzinfo=timezone.utc)
    out = fc.predict(7)
    for column in COLUMNS:
        assert out[column].to_numpy() == pytest.approx(np.array(expected[column]), rel=1e-6), column
    assert artefact_info(text)["format_version"] == 2  # reported after upgrade


def test_v1_prophet_shim_matches_log1p_model() -> None:
    """The shim's meaning: v1 Prophet predicted expm1 of the model's yhat, which v2 must reproduce."""
    from prophet.serialize import model_from_json

    doc = json.loads((MODELS / "v1_prophet_daily.json").read_text())
    raw = model_from_json(doc["model"])
    future = pd.DataFrame({"ds": pd.date_range("2024-02-12", periods=7, freq="D")})
    raw.uncertainty_samples = 0
    direct = np.expm1(raw.predict(future)["yhat"].to_numpy())
    assert load_forecaster(json.dumps(doc)).predict(7)["yhat"].to_numpy() == pytest.approx(direct)


@pytest.mark.parametrize("days", [42, 10])
def test_round_trip(days: int) -> None:
    fc = fit_forecaster(_daily(days=days), "D", now=NOW, tz="Europe/Paris", metric="requests")
    fc.metrics = {"mase": 0.61, "coverage_80": 0.8}
    text = dump_forecaster(fc)
    doc = json.loads(text)
    assert doc["format_version"] == FORMAT_VERSION
    assert set(doc["libraries"]) >= {"prophet", "numpy", "pandas", "openai_monitor"}
    back = load_forecaster(text)
    assert isinstance(back, FittedForecast)
    assert (back.kind, back.fallback_reason, back.rows, back.tz, back.metric) == (
        fc.kind,
        fc.fallback_reason,
        fc.rows,
        "Europe/Paris",
        "requests",
    )
    assert back.trained_at == NOW and back.data_end == fc.data_end and back.metrics == fc.metrics
    before, after = fc.predict(10), back.predict(10)
    for column in COLUMNS:
        assert after[column].to_numpy() == pytest.approx(before[column].to_numpy(), rel=1e-9)
    assert back.history.equals(fc.history)
    # The per-series interval calibration is recorded, and its scale is the one predictions use.
    assert back.calibration == fc.calibration == doc["metadata"]["interval_calibration"]
    if fc.kind == "prophet":
        assert fc.calibration is not None and fc.calibration["points"] == 7
        assert doc["params"]["interval_scale"] == fc.calibration["scale"]
    else:
        assert fc.calibration is None


def test_v2_artefact_written_before_calibration_loads_the_same() -> None:
    """Artefacts from before per-series calibration have no ``interval_calibration`` key."""
    fc = fit_forecaster(_daily(), "D", now=NOW)
    doc = json.loads(dump_forecaster(fc))
    del doc["metadata"]["interval_calibration"]
    back = load_forecaster(json.dumps(doc))
    assert back.calibration is None
    before, after = fc.predict(7), back.predict(7)
    for column in COLUMNS:
        assert after[column].to_numpy() == pytest.approx(before[column].to_numpy(), rel=1e-9)


def test_bad_artefacts_name_the_fix() -> None:
    with pytest.raises(ModelError, match="retrain"):
        load_forecaster("{}")
    with pytest.raises(ModelError, match="newer"):
        load_forecaster(json.dumps({"format_version": FORMAT_VERSION + 1}))
