"""Usage patterns on synthetic usage with a known weekday 02:00 batch job and office-hours users."""

from __future__ import annotations

import json

import numpy as np
import pytest
from insights_data import DAY, START, H, make_db

from openai_monitor.domain import UsageRecord
from openai_monitor.ml import patterns as pat
from openai_monitor.service.modelstore import ModelStore
from openai_monitor.service.patterns import TRAIN_HINT, build_patterns
from openai_monitor.store.db import FastReader


@pytest.fixture
def db(db_url: str) -> str:
    make_db(db_url).dispose()
    return db_url


def _patterns(url: str, tmp_path, **kw):
    with FastReader(url) as r:
        return build_patterns(r, model_store=ModelStore(tmp_path / "models"), **kw)


def test_clusters_find_the_batch_job_and_office_hours(db: str, tmp_path) -> None:
    res = _patterns(db, tmp_path, by="user")
    labels = {c["label"]: c for c in res["clusters"]}
    batch = labels["weekday batch job at 02:00"]
    assert [k["key"] for k in batch["keys"]] == ["batchbot"]
    assert batch["days"] == 20  # every weekday of four weeks, and nothing else
    assert batch["weekday_share"] == 1.0
    office = labels["weekday interactive office hours (09:00-17:00)"]
    assert {k["key"] for k in office["keys"]} == {"ann", "ben"}
    assert office["days"] == 40
    assert set(office["active_hours"]) <= set(range(9, 17))
    assert len(res["clusters"]) == 2  # no noise group: every day has one of the two shapes


def test_peaks_per_user_and_account(db: str, tmp_path) -> None:
    res = _patterns(db, tmp_path, by="user")
    bot = res["peaks_by_key"]["batchbot"]
    assert bot["peak_hours"] == [{"hour": 2, "share": 1.0}]
    assert {d["day"] for d in bot["peak_days"]} <= {"Mon", "Tue", "Wed", "Thu", "Fri"}
    for user in ("ann", "ben"):
        hours = [h["hour"] for h in res["peaks_by_key"][user]["peak_hours"]]
        assert len(hours) == 3 and all(9 <= h < 17 for h in hours)
    # Account heatmap: the 02:00 weekday cells hold the batch spend ($0.05 x 20 calls per day x 4 weeks).
    m = np.array(res["heatmap"]["values"])
    assert m[:5, 2] == pytest.approx([4.0] * 5)
    assert m[5:].sum() == 0.0  # weekends are empty
    assert res["peaks"]["peak_slot"]["hour"] == 2


def test_time_zone_moves_hours_and_labels(db: str, tmp_path) -> None:
    # Berlin is UTC+1 in January: the 02:00 UTC job runs at 03:00 local.
    res = _patterns(db, tmp_path, by="model", tz="Europe/Berlin")
    labels = {c["label"] for c in res["clusters"]}
    assert "weekday batch job at 03:00" in labels
    assert "weekday interactive office hours (10:00-18:00)" in labels
    assert res["peaks_by_key"]["gpt-4o-mini"]["peak_hours"][0]["hour"] == 3


def test_since_until_bound_the_window(db: str, tmp_path) -> None:
    res = _patterns(db, tmp_path, by="user", since=START + 7 * DAY, until=START + 14 * DAY)
    batch = next(c for c in res["clusters"] if c["label"].startswith("weekday batch"))
    assert batch["days"] == 5


def test_weekdays_and_flat_weekends_are_told_apart(db_url: str, tmp_path) -> None:
    # The ML tests' synthetic usage: office-hours weekdays, a flat low weekend, Poisson noise.
    from ml_helpers import records as ml_records

    make_db(db_url, ml_records()).dispose()
    res = _patterns(db_url, tmp_path, by="user")
    labels = [c["label"] for c in res["clusters"]]
    assert labels[0] == "weekday usage 06:00-20:00"
    assert labels[1] == "weekend round-the-clock usage"
    assert res["clusters"][0]["weekday_share"] == 1.0 and res["clusters"][1]["weekday_share"] == 0.0


def test_labels_of_other_shapes() -> None:
    evening = [0.0] * 24
    for h in range(18, 23):
        evening[h] = 0.2
    assert pat.label_cluster(evening, 0.5) == "daily evening usage (18:00-23:00)"
    night = [0.0] * 24
    for h in (22, 23, 0, 1, 2):
        night[h] = 0.2
    assert pat.label_cluster(night, 0.0) == "weekend night usage (22:00-03:00)"
    assert pat.label_cluster([1 / 24] * 24, 0.7) == "daily round-the-clock usage"
    two_blocks = [0.0] * 24
    for h in (8, 9, 19, 20, 21):
        two_blocks[h] = 0.2
    assert pat.label_cluster(two_blocks, 1.0).startswith("weekday mixed usage")


def test_irregular_days_are_noise() -> None:
    rng = np.random.default_rng(0)
    # 12 days, each with usage in one random hour far from the others': no shape repeats 3 times.
    hours = rng.permutation(24)[:12]
    ts = [START + i * DAY + int(h) * H for i, h in enumerate(hours)]
    index, mat = pat.daily_profiles(ts, ["u"] * len(ts), [1.0] * len(ts), "UTC")
    clusters = pat.cluster_days(index, mat)
    assert all(c.cluster_id == -1 for c in clusters)
    assert clusters[0].label.startswith("irregular")


def test_session_timeline_from_claude_style_records(db_url: str, tmp_path) -> None:
    t0 = START + 9 * H
    recs = [
        UsageRecord(ts=t0, provider="anthropic", model="claude-sonnet-4", dedup_key="a1", source="claude-code",
                    session_id="s-1", project="web", input_tokens=1000, output_tokens=100, cost_usd=0.50),
        UsageRecord(ts=t0 + 600, provider="anthropic", model="claude-3-5-haiku", dedup_key="a2",
                    source="claude-code", session_id="s-1", project="web", input_tokens=500, output_tokens=50,
                    cost_usd=0.10),
        UsageRecord(ts=t0 + 2700, provider="anthropic", model="claude-sonnet-4", dedup_key="a3",
                    source="claude-code", session_id="s-1", project="web", input_tokens=800, output_tokens=80,
                    cost_usd=0.40),
        UsageRecord(ts=t0 + 3 * H, provider="anthropic", model="claude-3-5-haiku", dedup_key="b1",
                    source="claude-code", session_id="s-2", project="cli", input_tokens=100, output_tokens=10,
                    cost_usd=0.01),
        UsageRecord(ts=t0 + 5 * H, provider="openai", model="gpt-4o", dedup_key="c1", source="api",
                    input_tokens=100, output_tokens=10, cost_usd=0.02),
    ]  # fmt: skip
    make_db(db_url, recs).dispose()
    res = _patterns(db_url, tmp_path)
    s = res["sessions"]
    assert s["count"] == 2  # the API call without a session id is not a session
    s1, s2 = s["timeline"]
    assert (s1["session_id"], s1["start_ts"], s1["end_ts"], s1["duration_s"]) == ("s-1", t0, t0 + 2700, 2700)
    assert s1["cost_usd"] == pytest.approx(1.00)
    assert s1["model"] == "claude-sonnet-4" and s1["models"] == ["claude-sonnet-4", "claude-3-5-haiku"]
    assert s1["requests"] == 3 and s1["tokens"] == 1000 + 100 + 500 + 50 + 800 + 80
    assert (s2["session_id"], s2["duration_s"], s2["project"]) == ("s-2", 0, "cli")
    assert s["total_cost_usd"] == pytest.approx(1.01)


def _save_prophet(ms: ModelStore, sid: str, y, freq: str) -> None:
    from datetime import datetime

    from openai_monitor.ml.forecast import FittedForecast, ProphetForecaster
    from openai_monitor.ml.serialize import dump_forecaster

    fc = FittedForecast(
        forecaster=ProphetForecaster(freq=freq, uncertainty_samples=10).fit(y),
        kind="prophet",
        freq=freq,
        trained_at=datetime(2025, 2, 3),
        data_start=y.index[0].to_pydatetime(),
        data_end=y.index[-1].to_pydatetime(),
        rows=len(y),
        tz="UTC",
        metric="cost_usd",
    )
    ms.save_forecast(sid, dump_forecaster(fc), {"trained_at": 0})


def test_seasonal_components_from_stored_prophet_models(db: str, tmp_path) -> None:
    import pandas as pd

    ms = ModelStore(tmp_path / "models")
    res = _patterns(db, tmp_path)
    assert res["seasonality"]["trained"] is False and res["seasonality"]["hint"] == TRAIN_HINT

    # Weekdays spend 10x weekends (daily model); office hours 10x the night (hourly model).
    days = pd.date_range("2024-10-07", periods=84, freq="D")
    y_d = pd.Series([10.0 if d.weekday() < 5 else 1.0 for d in days], index=days)
    hours = pd.date_range("2024-12-02", periods=21 * 24, freq="h")
    y_h = pd.Series([5.0 if 9 <= t.hour < 17 else 0.5 for t in hours], index=hours)
    _save_prophet(ms, "cost|d|all|", y_d, "D")
    _save_prophet(ms, "cost|h|all|", y_h, "h")
    with FastReader(db) as r:
        res = build_patterns(r, model_store=ms)
    acct = res["seasonality"]["account"]
    assert res["seasonality"]["trained"] is True
    weekly = dict(zip(acct["weekly"]["days"], acct["weekly"]["effect_pct"]))
    assert acct["weekly"]["series_id"] == "cost|d|all|"
    assert min(weekly["Mon"], weekly["Wed"], weekly["Fri"]) > 0 > max(weekly["Sat"], weekly["Sun"])
    daily = acct["daily"]["effect_pct"]
    assert acct["daily"]["series_id"] == "cost|h|all|"
    assert min(daily[10:16]) > 0 > max(daily[0:6])


def test_cli_patterns_text_and_json(db: str, run_cli) -> None:
    r = run_cli("--db", db, "patterns", "--by", "user")
    assert r.exit_code == 0, r.stderr
    assert "weekday batch job at 02:00" in r.stdout
    assert "interactive office hours" in r.stdout
    assert "run `oaim train`" in r.stdout
    assert "CLI sessions (80 total" in r.stdout  # 2 users x 20 weekdays x (am, pm)
    assert "Mon" in r.stdout and "█" in r.stdout
    j = run_cli("--db", db, "patterns", "--by", "model", "--metric", "requests", "--json")
    data = json.loads(j.stdout)
    assert data["peaks_by_key"]["gpt-4o-mini"]["total"] == 20 * 20


def test_cli_patterns_bad_input(db: str, run_cli) -> None:
    r = run_cli("--db", db, "patterns", "--by", "provider")
    assert r.exit_code == 2 and "use one of user, model, project" in r.stderr
    r = run_cli("--db", db, "patterns", "--since", "2025-02-01", "--until", "2025-01-01")
    assert r.exit_code == 2 and "--until must be after --since" in r.stderr
    r = run_cli("--db", db, "patterns", "--timezone", "Mars/Base")
    assert r.exit_code == 2 and "unknown time zone" in r.stderr
