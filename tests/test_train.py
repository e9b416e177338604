"""The training pipeline on synthetic usage in a real SQLite store: stored forecasts, anomalies found and
attributed, skipping unchanged series, --force, expected findings, failures, and the model store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ml_helpers import LOOP_END, LOOP_START, LOOP_USER, NOW, NOW_TS, settings, trained_copy

from openai_monitor.service import ml_read
from openai_monitor.service.modelstore import DETECTOR_FORMAT, FORECAST_FORMAT, ModelStore, slug
from openai_monitor.service.train import train
from openai_monitor.store import Store
from openai_monitor.store.db import FastReader

MODELS = Path(__file__).parent / "data" / "models"


@pytest.fixture
def home(oaim_home: Path):
    url, models, first = trained_copy(oaim_home)
    return url, models, first


def _overlaps(a: dict, start: int, end: int) -> bool:
    return a["start_ts"] < end and a["end_ts"] > start


def test_first_run_stores_forecasts_points_and_summaries(home):
    url, _, first = home
    with FastReader(url) as r:
        fc = ml_read.latest_forecast(r)
        assert fc["kind"] == "prophet" and fc["fallback_reason"] is None
        assert fc["rows"] == 42  # six complete weeks; today (partial) is never fitted
        assert len(fc["points"]) >= 30
        assert fc["points"][0]["ds"] == NOW_TS - 5 * 3600  # first forecast day = today, local midnight
        for p in fc["points"]:
            assert (
                0
                <= p["yhat_lower_95"]
                <= p["yhat_lower"]
                <= p["yhat"]
                <= p["yhat_upper"]
                <= p["yhat_upper_95"]
            )
        s = fc["summary"]
        assert s["month"] == "2025-02" and len(s["samples"]["totals"]) == 500
        assert len(s["samples"]["paths"]) == 200 and len(s["samples"]["paths"][0]) == len(
            s["samples"]["days"]
        )
        assert s["samples"]["days"][0] == "2025-02-17" and s["samples"]["days"][-1] == "2025-02-28"
        proj = s["projection"]
        assert proj["lower_95"] <= proj["lower_80"] <= proj["mean"] <= proj["upper_80"] <= proj["upper_95"]
        assert proj["lower_95"] >= s["month_to_date"] > 0
        ids = {f["series_id"] for f in ml_read.list_forecasts(r, by="user")}
        assert {"cost|d|user|alice", "cost|d|user|bob", "cost|d|user|carol", "cost|d|user|dave"} <= ids
        assert ml_read.latest_forecast(r, metric="tokens") is not None
        assert (
            ml_read.latest_forecast(r, freq="h")["points"][1]["ds"]
            - ml_read.latest_forecast(r, freq="h")["points"][0]["ds"]
            == 3600
        )
        run = ml_read.last_training(r)
    assert run["status"] == "partial" and run["fitted"] == first["fitted"] > 0


def test_short_series_fall_back_with_label_and_failures_are_recorded(home):
    url, _, first = home
    with FastReader(url) as r:
        dave = ml_read.latest_forecast(r, scope_dim="user", scope_key="dave")
        run = ml_read.last_training(r)
        assert ml_read.latest_forecast(r, scope_dim="user", scope_key="erin") is None
    assert dave["kind"] == "seasonal_naive"
    assert "history too short" in dave["fallback_reason"]
    failed = {f["series_id"]: f["reason"] for f in run["failures"]}
    assert "cost|d|user|erin" in failed and "at least 2 periods" in failed["cost|d|user|erin"]
    assert run["failed"] == len(run["failures"]) == first["failed"]


def test_runaway_loop_found_and_attributed_to_the_user(home):
    url, _, first = home
    with FastReader(url) as r:
        found = ml_read.open_anomalies(r, limit=100)
    assert first["new_anomalies"] == len(found)
    user_hits = [a for a in found if a["scope"] == f"user:{LOOP_USER}" and _overlaps(a, LOOP_START, LOOP_END)]
    assert user_hits and user_hits[0]["impact_usd"] > 0
    assert "loop" in user_hits[0]["explanation"]
    account = [a for a in found if a["scope"] == "all" and _overlaps(a, LOOP_START, LOOP_END)]
    assert account
    users = [x for x in account[0]["attribution"] if x["dim"] == "user"]
    assert users[0]["key"] == LOOP_USER and users[0]["share"] > 0.5
    # Nothing flagged for the users without an incident.
    assert not [a for a in found if a["scope"] in ("user:bob", "user:carol")]


def test_retraining_unchanged_data_skips_every_series(home):
    url, models, first = home
    store = Store(url)
    res = train(store, settings(), now=NOW, model_store=ModelStore(models))
    # erin's series never fitted, so it has no stored hash and is retried (and fails again).
    assert res.fitted == 0
    assert res.skipped == res.series_total - res.failed
    assert res.failed == first["failed"]
    with FastReader(url) as r:
        assert ml_read.last_training(r)["id"] == res.run_id


def test_force_refits_and_expected_findings_stay_out(home):
    url, models, first = home
    store = Store(url)
    ms = ModelStore(models)
    with FastReader(url) as r:
        hit = next(
            a
            for a in ml_read.open_anomalies(r, limit=100)
            if a["scope"] == f"user:{LOOP_USER}" and _overlaps(a, LOOP_START, LOOP_END)
        )
    with store.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(text("UPDATE anomalies SET status = 'expected' WHERE id = :i"), {"i": hit["id"]})
    res = train(store, settings(), now=NOW, force=True, model_store=ms)
    assert res.fitted == res.series_total - res.failed and res.skipped == 0
    assert (
        ms.detector_manifest(f"user:{LOOP_USER}")["excluded_hours"]
        == (hit["end_ts"] - hit["start_ts"]) // 3600
    )
    with FastReader(url) as r:
        again = ml_read.get_anomaly(r, hit["id"])
        reopened = [
            a
            for a in ml_read.open_anomalies(r, scope=f"user:{LOOP_USER}", limit=100)
            if _overlaps(a, hit["start_ts"], hit["end_ts"])
        ]
    assert again["status"] == "expected"
    assert reopened == []


def test_detect_scores_only_new_hours(home):
    url, models, _ = home
    from openai_monitor.service.train import detect

    store = Store(url)
    res = detect(store, settings(), now=NOW, model_store=ModelStore(models))
    assert res.scored_from == res.scored_to == NOW_TS // 3600 * 3600  # nothing new since training
    assert res.new == []


def test_model_store_layout_and_backward_compatible_load(tmp_path):
    from openai_monitor.ml import anomaly, serialize

    assert FORECAST_FORMAT == serialize.FORMAT_VERSION and DETECTOR_FORMAT == anomaly.FORMAT_VERSION
    ms = ModelStore(tmp_path / "models")
    sid = "cost|d|user|a/b c"
    old = ms.root / "forecasts" / "v1" / slug(sid)
    old.mkdir(parents=True)
    shutil.copy(MODELS / "v1_prophet_daily.json", old / "model.json")
    (old / "manifest.json").write_text(
        json.dumps({"series_id": sid, "format_version": 1, "file": "model.json"})
    )
    assert ms.forecast_manifest(sid)["format_version"] == 1
    fc = ms.load_forecast(sid)
    expected = json.loads((MODELS / "v1_prophet_daily.expected.json").read_text())
    out = fc.predict(7)
    assert out["yhat"].to_numpy() == pytest.approx(np.array(expected["yhat"]), rel=1e-6)
    # Saving puts the current version beside it; loads then prefer the current one.
    from openai_monitor.ml.forecast import fit_forecaster

    y = pd.Series(np.arange(1.0, 9.0), index=pd.date_range("2025-01-01", periods=8, freq="D"))
    new = fit_forecaster(y, "D", now=NOW)
    ms.save_forecast(sid, serialize.dump_forecaster(new), {"kind": new.kind})
    assert ms.forecast_manifest(sid)["format_version"] == FORECAST_FORMAT
    assert ms.load_forecast(sid).kind == "seasonal_naive"
    assert "/" not in slug(sid) and slug(sid) != slug("cost|d|user|a_b c")


def test_prob_exceed_and_limit_hit_from_hand_made_samples():
    # Training at day 0, 00:00 with 10 spent; 4 equally likely draws of the rest of a 3-day month.
    day0 = 1_700_000_000 - 1_700_000_000 % 86400
    summary = {
        "month_to_date": 10.0,
        "month_end_ts": day0 + 3 * 86400,
        "tz": "UTC",
        "samples": {
            "days": ["d0", "d1", "d2"],
            "day_starts": [day0, day0 + 86400, day0 + 2 * 86400],
            "first_fraction": 0.0,
            "totals": [3.0, 6.0, 9.0, 12.0],
            "paths": [[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [3.0, 6.0, 9.0], [4.0, 8.0, 12.0]],
        },
    }
    # At training time: totals 13, 16, 19, 22.
    assert ml_read.prob_exceed(summary, 10.0, 18.0) == 0.5
    assert ml_read.prob_exceed(summary, 10.0, 18.0, now=day0) == 0.5
    assert ml_read.prob_exceed(summary, 30.0, 18.0) == 1.0
    # One day later the paths expected 1..4 spent (mean 2.5 of mean total 7.5: a third consumed); 13 was
    # spent, so the remaining draws are two thirds of each total: 13 + 2, 4, 6, 8.
    assert ml_read.prob_exceed(summary, 13.0, 18.0, now=day0 + 86400) == 0.5
    proj = ml_read.projection(summary, 13.0, now=day0 + 86400)
    assert proj["mean"] == pytest.approx(13.0 + 5.0)
    # Cumulative spend per path: [11,12,13], [12,14,16], [13,16,19], [14,18,22]; the first day at or over
    # 16 is never, d2, d1, d1. Sorted [d1, d1, d2, never]: median (index 2) d2, 10th percentile d1, and
    # the 90th percentile is "not this month".
    hit = ml_read.limit_hit(summary, 10.0, 16.0, now=day0)
    assert hit["probability"] == 0.75
    assert hit["expected"] == "d2" and hit["lower_80"] == "d1" and hit["upper_80"] is None
    assert ml_read.limit_hit(summary, 10.0, 100.0, now=day0) is None
    # A summary from a past month answers nothing.
    assert ml_read.prob_exceed(summary, 10.0, 18.0, now=day0 + 3 * 86400) is None


def test_a_finding_overlapping_a_stored_one_is_not_stored_again(home):
    """A rescan whose window for the same incident starts earlier (retrained detectors, or a window grown
    to the whole incident) does not store the incident twice; another scope or later hours still are."""
    from openai_monitor.ml.anomaly import Finding
    from openai_monitor.service.train import _insert_findings

    url, _, _ = home
    store = Store(url)
    before = store._run("SELECT COUNT(*) FROM anomalies")[0][0]
    h = 3600

    def finding(scope: str, start: int, end: int) -> Finding:
        return Finding(scope, start, end, "medium", 0.7, 5.0, "x", {}, "loop")

    t = NOW_TS - 100 * h

    def insert(key: str, start: int, end: int) -> tuple[list[int], list[int]]:
        return _insert_findings(store, [("user", key, finding(f"user:{key}", start, end), [])], NOW_TS)

    first = insert("zed", t + 4 * h, t + 6 * h)
    earlier = insert("zed", t, t + 7 * h)
    other = insert("amy", t, t + 7 * h)
    later = insert("zed", t + 7 * h, t + 8 * h)
    assert len(first[0]) == 1 and earlier == ([], []) and len(other[0]) == 1 and len(later[0]) == 1
    assert store._run("SELECT COUNT(*) FROM anomalies")[0][0] == before + 3
    # The same incident scored again with later hours (same start, open): the stored one grows.
    assert insert("zed", t + 4 * h, t + 7 * h) == ([], first[0])
    assert store._run("SELECT end_ts FROM anomalies WHERE id = ?", (first[0][0],))[0][0] == t + 7 * h
    # Not once it is closed (expected, dismissed): then it stands as it was.
    store._run("UPDATE anomalies SET status = 'dismissed' WHERE id = ?", (other[0][0],), write=True)
    assert insert("amy", t, t + 9 * h) == ([], [])
    assert store._run("SELECT COUNT(*) FROM anomalies")[0][0] == before + 3


def test_an_incident_detected_hour_by_hour_is_one_finding(home):
    """The daemon detects after every collection: a runaway loop still going on at one detection is
    scored again whole at the next, and its finding grows (same id, alert state kept) instead of a
    second finding (and a second alert) starting where the first ends."""
    from sqlalchemy import text

    from openai_monitor.service.train import detect

    url, models, _ = home
    store = Store(url)
    scope = ("user", LOOP_USER)
    with store.engine.begin() as conn:  # forget what the first training found, so detection starts over
        conn.execute(text("DELETE FROM anomalies"))
    ms = ModelStore(models)
    at = lambda ts: pd.Timestamp(ts, unit="s", tz="UTC").to_pydatetime()  # noqa: E731
    first = detect(store, settings(), now=at(LOOP_START + 2 * 3600), since=LOOP_START, model_store=ms)
    rows = store._run(
        "SELECT id, start_ts, end_ts, impact_usd FROM anomalies WHERE scope_dim = ? AND scope_key = ?", scope
    )
    assert len(rows) == 1 and rows[0][0] in first.new and rows[0][2] == LOOP_START + 2 * 3600
    fid, start, _, impact = rows[0]
    store._run("UPDATE anomalies SET alerted_at = 123 WHERE id = ?", (fid,), write=True)
    later = detect(store, settings(), now=at(LOOP_END + 3600), model_store=ms)  # from the last detection on
    assert later.scored_from == LOOP_START + 2 * 3600
    rows = store._run(
        "SELECT id, start_ts, end_ts, impact_usd, alerted_at FROM anomalies WHERE scope_dim = ? AND scope_key = ?",
        scope,
    )
    assert len(rows) == 1 and fid in later.extended and fid not in later.new
    assert rows[0][:3] == (fid, start, LOOP_END) and rows[0][3] > impact and rows[0][4] == 123
