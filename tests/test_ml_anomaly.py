"""Anomaly detection on synthetic hourly usage with injected incidents (fixed seeds)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from openai_monitor.errors import ModelError
from openai_monitor.ml.anomaly import (
    AnomalyDetector,
    Finding,
    attribute,
    detect,
    dump_detector,
    load_detector,
)
from openai_monitor.ml.features import FEATURE_COLUMNS, hourly_features

H = 3600
START = int(pd.Timestamp("2025-01-06 00:00", tz="UTC").timestamp())  # a Monday
WEEKS = 6
# Illustrative USD per 1M tokens (input, output) for the synthetic data only; not product prices.
PRICES = {"gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00), "gpt-4.1": (2.00, 8.00)}
HOME = {"alice": ("gpt-4o-mini", 40.0), "bob": ("gpt-4o-mini", 30.0), "carol": ("gpt-4.1", 20.0)}


def _at(week: int, day: int, hour: int) -> int:
    return START + ((week * 7 + day) * 24 + hour) * H


LOOP = ("alice", _at(4, 2, 12), _at(4, 2, 15))  # Wednesday 12:00-15:00, requests x15
LEAK = ("carol", _at(4, 3, 3), _at(4, 3, 5))  # Thursday 03:00-05:00, a burst at night
SWITCH = ("bob", _at(4, 1, 9), _at(4, 1, 13))  # Tuesday 09:00-13:00 on gpt-4o instead of mini


def _shape(ts: int) -> float:
    t = pd.Timestamp(ts, unit="s", tz="UTC")
    if t.dayofweek >= 5:
        level = 0.15
    elif 8 <= t.hour < 18:
        level = 1.0
    elif 6 <= t.hour < 20:
        level = 0.4
    else:
        level = 0.03
    if t.dayofweek == 0 and t.hour == 10:
        level = 3.0  # the weekly Monday stand-up peak: normal, every week
    return level


def _usage() -> pd.DataFrame:
    rng = np.random.default_rng(42)
    rows = []
    for h in range(WEEKS * 7 * 24):
        ts = START + h * H
        for user, (model, base) in HOME.items():
            lam = base * _shape(ts)
            if user == LOOP[0] and LOOP[1] <= ts < LOOP[2]:
                lam *= 15
            if user == LEAK[0] and LEAK[1] <= ts < LEAK[2]:
                lam = 300.0
            m = "gpt-4o" if user == SWITCH[0] and SWITCH[1] <= ts < SWITCH[2] else model
            req = int(rng.poisson(lam))
            if req == 0:
                continue
            inp = int(req * 1500 * rng.lognormal(0, 0.1))
            out = int(req * 300 * rng.lognormal(0, 0.1))
            cached = int(inp * 0.3)
            pin, pout = PRICES[m]
            cost = (inp * pin + out * pout) / 1_000_000
            rows.append((ts, user, m, req, inp, cached, out, cost))
    return pd.DataFrame(
        rows,
        columns=[
            "bucket_ts",
            "user",
            "model",
            "requests",
            "input_tokens",
            "cached_input_tokens",
            "output_tokens",
            "cost_usd",
        ],
    )


@pytest.fixture(scope="module")
def usage() -> pd.DataFrame:
    return _usage()


NOW = START + WEEKS * 7 * 24 * H


def _findings_for(usage: pd.DataFrame, user: str | None) -> list[Finding]:
    rows = usage if user is None else usage[usage["user"] == user]
    feats = hourly_features(rows, scope_rows_total=usage if user else None, tz="UTC")
    det = AnomalyDetector(seed=0).fit(feats)
    return detect(det, feats, rows, scope=f"user:{user}" if user else "account", now=NOW)


def _mondays_10() -> list[int]:
    return [_at(w, 0, 10) for w in range(WEEKS)]


def _covers(f: Finding, ts: int) -> bool:
    return f.window_start <= ts < f.window_end


@pytest.fixture(scope="module")
def per_user(usage):
    return {u: _findings_for(usage, u) for u in HOME}


@pytest.fixture(scope="module")
def account(usage):
    return _findings_for(usage, None)


def _breakdown(usage: pd.DataFrame) -> pd.DataFrame:
    by_user = (
        usage.groupby(["bucket_ts", "user"], as_index=False)["cost_usd"].sum().rename(columns={"user": "key"})
    )
    by_model = (
        usage.groupby(["bucket_ts", "model"], as_index=False)["cost_usd"]
        .sum()
        .rename(columns={"model": "key"})
    )
    return pd.concat([by_user.assign(dim="user"), by_model.assign(dim="model")], ignore_index=True)


def _one(findings: list[Finding], start: int, end: int) -> Finding:
    hits = [f for f in findings if f.window_start < end and start < f.window_end]
    assert len(hits) == 1, f"expected one finding in [{start}, {end}), got {hits}"
    return hits[0]


def test_runaway_loop_found_with_window_explanation_and_attribution(usage, per_user, account):
    user, start, end = LOOP
    f = _one(per_user[user], start, end)
    assert (f.window_start, f.window_end) == (start, end)
    assert f.kind == "loop"
    assert f.explanation.startswith("requests ")
    assert "x the usual for Wednesday 12:00" in f.explanation
    assert "tokens per request normal" in f.explanation
    assert f.evidence["requests"]["ratio"] > 8
    assert f.impact_usd > 0
    acc = _one(account, start, end)
    assert (acc.window_start, acc.window_end) == (start, end)
    ranked = [r for r in attribute(acc, _breakdown(usage)) if r["dim"] == "user"]
    assert ranked[0]["key"] == "alice"
    assert ranked[0]["impact_usd"] > 5 * max(abs(r["impact_usd"]) for r in ranked[1:])


def test_leaked_key_at_night_found_and_attributed(usage, per_user, account):
    user, start, end = LEAK
    f = _one(per_user[user], start, end)
    assert (f.window_start, f.window_end) == (start, end)
    assert f.kind == "leaked_key"
    assert "requests" in f.explanation and "Thursday 03:00" in f.explanation
    assert "leaked key" in f.explanation
    acc = _one(account, start, end)
    ranked = [r for r in attribute(acc, _breakdown(usage)) if r["dim"] == "user"]
    assert ranked[0]["key"] == "carol"


def test_model_switch_found_and_attributed_to_model_and_user(usage, per_user, account):
    user, start, end = SWITCH
    f = _one(per_user[user], start, end)
    assert (f.window_start, f.window_end) == (start, end)
    assert f.kind == "model_switch"
    assert "cost per token" in f.explanation
    assert f.evidence["cost per token"]["ratio"] > 5
    assert f.evidence["share of the usual model"]["observed"] == 0.0
    # At account level the switch is diluted by the other users (cost per token ~2.5x): it may be reported
    # as more than one window, all inside the switch.
    hits = [a for a in account if a.window_start < end and start < a.window_end]
    assert hits and all(start <= a.window_start and a.window_end <= end for a in hits)
    acc = max(hits, key=lambda a: a.impact_usd)
    ranked = attribute(acc, _breakdown(usage))
    assert [r["key"] for r in ranked if r["dim"] == "model"][0] == "gpt-4o"
    assert [r["key"] for r in ranked if r["dim"] == "user"][0] == "bob"


def test_normal_monday_peak_is_not_flagged(per_user, account):
    for findings in [*per_user.values(), account]:
        for f in findings:
            assert not any(_covers(f, ts) for ts in _mondays_10()), f


def test_few_false_alarms(per_user, account):
    injected = [LOOP, LEAK, SWITCH]
    for findings in [*per_user.values(), account]:
        extra = [
            f for f in findings if not any(f.window_start < e and s < f.window_end for _, s, e in injected)
        ]
        assert len(extra) <= 2, extra


def test_partial_current_hour_is_never_flagged(usage):
    rows = usage[usage["user"] == "alice"]
    feats = hourly_features(rows, tz="UTC")
    det = AnomalyDetector(seed=0).fit(feats)
    # "now" in the middle of the loop's second hour: only the first, complete hour may be reported.
    findings = detect(det, feats, rows, scope="user:alice", now=LOOP[1] + H + 1800)
    f = _one(findings, LOOP[1], LOOP[2])
    assert (f.window_start, f.window_end) == (LOOP[1], LOOP[1] + H)


def test_exclusion_mask_leaves_acknowledged_hours_out(usage):
    rows = usage[usage["user"] == "alice"]
    feats = hourly_features(rows, tz="UTC")
    ack = (feats.index >= LOOP[1]) & (feats.index < LOOP[2])
    det = AnomalyDetector(seed=0).fit(feats, exclude=ack)
    assert det.n_train_ == len(feats) - 3
    findings = detect(det, feats, rows, scope="user:alice", now=NOW, exclude=ack)
    assert not any(f.window_start < LOOP[2] and LOOP[1] < f.window_end for f in findings)
    with pytest.raises(ValueError, match="exclude has"):
        AnomalyDetector().fit(feats, exclude=ack[:-1])


def test_residual_against_forecast_expected_value(usage):
    rows = usage[usage["user"] == "alice"]
    plain = hourly_features(rows, tz="UTC")
    # A forecast that expected the loop's spend makes its cost residual ordinary.
    actual = rows.groupby("bucket_ts")["cost_usd"].sum().reindex(plain.index, fill_value=0.0)
    with_exp = hourly_features(rows, tz="UTC", expected=actual)
    loop = (plain.index >= LOOP[1]) & (plain.index < LOOP[2])
    assert plain.loc[loop, "z_cost"].min() > 5
    assert with_exp.loc[loop, "z_cost"].abs().max() < 0.5


def test_features_fill_missing_hours_and_have_fixed_columns():
    rows = pd.DataFrame(
        {
            "bucket_ts": [START, START + 3 * H],
            "requests": [2, 4],
            "input_tokens": [100, 400],
            "cached_input_tokens": [50, 0],
            "output_tokens": [20, 40],
            "cost_usd": [0.01, 0.02],
        }
    )
    feats = hourly_features(rows, scope_rows_total=None, expected=None, tz="Europe/Paris")
    assert list(feats.columns) == list(FEATURE_COLUMNS)
    assert list(feats.index) == [START + i * H for i in range(4)]
    assert feats["log_requests"].tolist()[1:3] == [0.0, 0.0]
    assert feats["log_tokens_per_request"].iloc[0] == pytest.approx(np.log1p(60.0))
    assert feats["cache_hit_share"].iloc[0] == pytest.approx(0.5)
    assert np.isfinite(feats.to_numpy()).all()


def test_score_before_fit_and_bad_params_raise():
    with pytest.raises(ModelError, match="call fit"):
        AnomalyDetector().score(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="contamination"):
        AnomalyDetector(contamination=0.9)
    with pytest.raises(ValueError, match="threshold"):
        AnomalyDetector(threshold=1.5)


def test_dump_load_round_trip_scores_identically(usage):
    feats = hourly_features(usage[usage["user"] == "bob"], tz="UTC")
    det = AnomalyDetector(seed=3, n_estimators=50).fit(feats)
    blob = dump_detector(det)
    again = load_detector(blob)
    np.testing.assert_array_equal(again.score(feats), det.score(feats))
    assert again.threshold_ == det.threshold_
    assert again.feature_names_ == det.feature_names_
    meta = json.loads(zipfile.ZipFile(io.BytesIO(blob)).read("detector.json"))
    assert meta["format_version"] == 2
    assert {"numpy", "pandas", "scikit-learn", "skops"} <= set(meta["libraries"])


def _v1_artefact(det: AnomalyDetector) -> bytes:
    """Format 1 as documented in models/ANOMALY_FORMAT.md, written independently of dump_detector."""
    import sklearn
    import skops.io as sio

    meta = {
        "format_version": 1,
        "features": list(det.feature_names_),
        "threshold": det.threshold_,
        "contamination": det.contamination,
        "seed": det.seed,
        "sklearn_version": sklearn.__version__,
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("meta.json", json.dumps(meta))
        zf.writestr("model.skops", sio.dumps(det.forest_))
    return buf.getvalue()


def test_old_format_version_1_still_loads_and_scores_the_same(usage):
    feats = hourly_features(usage[usage["user"] == "carol"], tz="UTC")
    det = AnomalyDetector(seed=1, n_estimators=40).fit(feats)
    old = load_detector(_v1_artefact(det))
    np.testing.assert_array_equal(old.score(feats), det.score(feats))
    assert old.threshold_ == det.threshold_
    assert old.feature_names_ == tuple(FEATURE_COLUMNS)


def test_unknown_or_corrupt_artefacts_raise_model_error():
    with pytest.raises(ModelError, match="retrain"):
        load_detector(b"not a zip")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("detector.json", json.dumps({"format_version": 99}))
        zf.writestr("forest.skops", b"")
    with pytest.raises(ModelError, match="format 99"):
        load_detector(buf.getvalue())


def test_a_long_burst_is_one_finding_over_all_its_hours(usage):
    """A ten-hour night burst inside the training history (the demo's BurstGPT day 9 is one): the
    contamination quantile admits only its strongest hours, yet the finding spans the whole burst and
    carries its whole impact; the hours either side of it stay out."""
    start, end = _at(3, 2, 20), _at(3, 3, 6)  # Wednesday 20:00 to Thursday 06:00
    rows = usage[usage["user"] == "bob"].copy()
    rng = np.random.default_rng(5)
    burst = []
    for ts in range(start, end, H):
        req = int(rng.poisson(400))
        inp, out = req * 1500, req * 300
        burst.append((ts, "bob", "gpt-4o-mini", req, inp, 0, out, (inp * 0.15 + out * 0.6) / 1e6))
    rows = rows[(rows["bucket_ts"] < start) | (rows["bucket_ts"] >= end)]
    rows = pd.concat([rows, pd.DataFrame(burst, columns=rows.columns)]).sort_values("bucket_ts")
    feats = hourly_features(rows, tz="UTC")
    det = AnomalyDetector(seed=0, contamination=0.003).fit(feats)
    strongest = det.is_anomalous(feats) & (feats.index >= start) & (feats.index < end)
    assert 0 < strongest.sum() < (end - start) // H  # the threshold alone cuts the burst short
    f = _one(detect(det, feats, rows, scope="user:bob", now=NOW), start, end)
    assert (f.window_start, f.window_end) == (start, end)
    in_burst = rows[(rows["bucket_ts"] >= start) & (rows["bucket_ts"] < end)]["cost_usd"].sum()
    assert f.impact_usd == pytest.approx(in_burst, rel=0.05)
