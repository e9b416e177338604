"""`oaim forecast` and `oaim train` through the real CLI on a trained copy of the synthetic store."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from ml_helpers import CONFIG, NOW_TS, trained_copy


@pytest.fixture
def trained(oaim_home, monkeypatch):
    trained_copy(oaim_home)
    (oaim_home / "config.toml").write_text(CONFIG)
    monkeypatch.setenv("OAIM_NOW", str(NOW_TS))
    return oaim_home


def test_forecast_without_training_names_oaim_train(run_cli):
    res = run_cli("forecast")
    assert res.exit_code != 0
    assert "oaim train" in res.stderr and "Traceback" not in res.stderr


def test_forecast_json_shape(trained, run_cli):
    res = run_cli("forecast", "--days", "10", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    (series,) = doc["series"]
    assert series["scope"] == "all" and series["kind"] == "prophet" and series["fallback_reason"] is None
    assert series["trained_at"].startswith("2025-02-17T05:00")
    assert series["data_range"] == {
        "start": "2025-01-06T00:00:00+0000",
        "end": "2025-02-16T00:00:00+0000",
        "rows": 42,
    }
    assert len(series["points"]) == 10
    p = series["points"][0]
    assert p["ds"] == "2025-02-17T00:00:00+0000"
    assert set(p) >= {"ds", "yhat", "yhat_lower", "yhat_upper", "yhat_lower_95", "yhat_upper_95"}
    s = series["summary"]
    assert s["limit_usd"] == 100.0  # tier1 from the dated tiers table
    assert 0.0 <= s["prob_exceed_limit"] <= 1.0
    proj = s["month_end"]
    assert proj["lower_80"] <= proj["mean"] <= proj["upper_80"] and proj["month_to_date"] == pytest.approx(
        s["month_to_date"]
    )
    assert {d["scope"] for d in doc["drivers"]} >= {"user:alice", "model:gpt-4o"}


def test_forecast_limit_from_config_changes_probability(trained, run_cli):
    base = json.loads(run_cli("forecast", "--json").stdout)["series"][0]["summary"]
    (trained / "config.toml").write_text(CONFIG.replace('plan = "tier1"', 'plan = "tier1"\nlimit_usd = 1.0'))
    low = json.loads(run_cli("forecast", "--json").stdout)["series"][0]["summary"]
    assert low["limit_usd"] == 1.0 and low["prob_exceed_limit"] == 1.0
    assert low["limit_hit"]["already_exceeded"] is True
    assert base["prob_exceed_limit"] < 1.0


def test_forecast_by_user_labels_the_fallback(trained, run_cli):
    doc = json.loads(run_cli("forecast", "--by", "user", "--json").stdout)
    by = {s["scope"]: s for s in doc["series"]}
    assert by["user:dave"]["kind"] == "seasonal_naive" and "too short" in by["user:dave"]["fallback_reason"]
    text = run_cli("forecast", "--by", "user", "--days", "7")
    assert text.exit_code == 0, text.stderr
    assert "user:dave" in text.stdout and "seasonal_naive*" in text.stdout and "fallback" in text.stdout


def test_forecast_text_chart_and_summary(trained, run_cli):
    res = run_cli("forecast", "--days", "14")
    assert res.exit_code == 0, res.stderr
    assert "history" in res.stdout and "80% band" in res.stdout
    assert "month-end 2025-02" in res.stdout and "Tier 1 limit $100.00" in res.stdout
    assert "growth driven by" in res.stdout


def test_forecast_hourly_user_and_unknown_names(trained, run_cli):
    doc = json.loads(run_cli("forecast", "--hourly", "--days", "2", "--json").stdout)
    pts = doc["series"][0]["points"]
    assert len(pts) == 48 and pts[0]["ds"] == "2025-02-17T05:00:00+0000"
    bad = run_cli("forecast", "--user", "nobody")
    assert bad.exit_code != 0 and "nobody" in bad.stderr and "oaim train" in bad.stderr
    assert run_cli("forecast", "--metric", "euros").exit_code == 2


def test_forecast_command_imports_no_heavy_library(trained):
    code = (
        "import sys; from openai_monitor.cli import app\n"
        "try:\n    app(['forecast', '--json'])\nexcept SystemExit:\n    pass\n"
        "print([m for m in ('pandas', 'sqlalchemy', 'prophet', 'sklearn') if m in sys.modules], file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["series"]
    assert out.stderr.strip().splitlines()[-1] == "[]"


def test_train_json_on_empty_store_names_the_fix(run_cli):
    res = run_cli("train", "--json")
    assert res.exit_code == 2 and "oaim import" in res.stderr


def test_chart_axis_starts_at_zero_for_non_negative_series():
    """An all-zero month (nothing spent yet) is drawn on 0..1, not centred on 0 with ticks down to -1;
    a spend series starts its axis at 0."""
    import re

    from openai_monitor.render.charts import forecast_chart, window_chart

    zeros = forecast_chart([(f"d{i}", 0.0) for i in range(10)], [(f"f{i}", 0.0, 0.0, 0.0) for i in range(5)])
    spend = forecast_chart(
        [(f"d{i}", 5.0 + i) for i in range(10)], [(f"f{i}", 15.0, 12.0, 19.0) for i in range(5)]
    )
    window = window_chart([f"h{i}" for i in range(6)], [0.0, 0, 3, 9, 1, 0], [0.5] * 6)
    for text in (zeros, spend, window):
        ticks = [float(t) for t in re.findall(r"^\s*(-?\d+\.?\d*)\s*┤", text, re.M)]
        assert ticks and min(ticks) == 0.0, text
    assert max(float(t) for t in re.findall(r"^\s*(-?\d+\.?\d*)\s*┤", zeros, re.M)) == 1.0
    # Without colour the forecast is told from the history by its glyphs (braille against half blocks).
    braille = [ch for ch in spend if "\u2800" < ch <= "\u28ff"]
    assert braille and not any(
        "\u2800" < ch <= "\u28ff" for ch in forecast_chart([("a", 1.0), ("b", 2.0)], [])
    )
