"""Recommendations: every saving checked against arithmetic done by hand, with a real Pricer whose
prices are config overrides (so the rates are known), plus one end-to-end `oaim recommend` run."""

from __future__ import annotations

import json
import time

import pytest

from openai_monitor.domain import UsageRecord
from openai_monitor.ml import recommend as rec
from openai_monitor.pricing.engine import Pricer, utc_ts
from openai_monitor.service.recommend import load_recommend_data

PRICES = {
    "gpt-4o": {"provider": "openai", "input": 2.5, "output": 10.0, "cached_input": 1.25},
    "gpt-4o-mini": {"provider": "openai", "input": 0.15, "output": 0.6, "cached_input": 0.075},
    "claude-sonnet-4-5": {
        "provider": "anthropic",
        "input": 3.0,
        "output": 15.0,
        "cached_input": 0.3,
        "cache_write": 3.75,
    },
    "claude-haiku-4-5": {
        "provider": "anthropic",
        "input": 1.0,
        "output": 5.0,
        "cached_input": 0.1,
        "cache_write": 1.25,
    },
}
DAY = utc_ts(2026, 5, 4)


@pytest.fixture(scope="module")
def pricer() -> Pricer:
    return Pricer(overrides=PRICES)


@pytest.fixture(scope="module")
def families():
    return load_recommend_data()["families"]


def test_family_ladders(families):
    assert rec.family_alternatives(families, "openai", "gpt-4o-2024-08-06") == ["gpt-4o-mini"]
    assert rec.family_alternatives(families, "openai", "gpt-4o-mini") == []
    assert rec.family_alternatives(families, "anthropic", "claude-opus-4-1-20250805") == [
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
    ]
    assert rec.family_alternatives(families, "google", "gemini-2.5-pro") == [
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
    ]
    assert rec.family_alternatives(families, "openai", "claude-opus-4-1") == []  # provider must match


def test_model_whatif_arithmetic(pricer, families):
    b = rec.TokenBucket(
        ts=DAY,
        provider="openai",
        model="gpt-4o",
        requests=100,
        input_tokens=1_000_000,
        output_tokens=100_000,
        cost_usd=3.5,
    )
    out = rec.model_whatif([b], families, pricer, window_days=15)
    assert len(out) == 1
    r = out[0]
    own = (1_000_000 * 2.5 + 100_000 * 10.0) / 1_000_000  # 3.50
    alt = (1_000_000 * 0.15 + 100_000 * 0.6) / 1_000_000  # 0.21
    assert r.details["repriced_usd"] == pytest.approx(own)
    assert r.details["alternative_usd"] == pytest.approx(alt)
    assert r.monthly_saving_usd == pytest.approx((own - alt) * 30 / 15)  # 6.58
    assert r.details["alternative"] == "gpt-4o-mini" and "$3.50 on gpt-4o" in r.evidence[0]


def test_model_whatif_prices_cache_reads_at_each_models_rate(pricer, families):
    b = rec.TokenBucket(
        ts=DAY,
        provider="anthropic",
        model="claude-sonnet-4-5-20250929",
        requests=10,
        input_tokens=2_000_000,
        cached_input_tokens=1_500_000,
        cache_write_tokens=100_000,
        output_tokens=50_000,
        cost_usd=0,
    )
    out = {r.details["alternative"]: r for r in rec.model_whatif([b], families, pricer, window_days=30)}
    own = (400_000 * 3.0 + 1_500_000 * 0.3 + 100_000 * 3.75 + 50_000 * 15.0) / 1e6  # 2.775
    haiku = (400_000 * 1.0 + 1_500_000 * 0.1 + 100_000 * 1.25 + 50_000 * 5.0) / 1e6  # 0.925
    assert set(out) == {"claude-haiku-4-5"}
    assert out["claude-haiku-4-5"].monthly_saving_usd == pytest.approx(own - haiku)


def test_cache_utilization_arithmetic(pricer):
    days = [
        rec.TokenBucket(
            ts=DAY,
            provider="openai",
            model="gpt-4o",
            input_tokens=1_000_000,
            cached_input_tokens=600_000,
            user="ann",
        ),
        rec.TokenBucket(
            ts=DAY + 86400,
            provider="openai",
            model="gpt-4o",
            input_tokens=1_000_000,
            cached_input_tokens=0,
            user="ann",
        ),
    ]
    out = rec.cache_utilization(days, pricer, window_days=30)
    assert len(out) == 1
    r = out[0]
    assert r.details["repeat_rate"] == pytest.approx(0.6)
    assert r.details["cache_hit_share"] == pytest.approx(0.3)
    # Day 1 already at 60%; day 2 would cache 600,000 more tokens at (2.50 - 1.25) per 1M.
    assert r.monthly_saving_usd == pytest.approx(600_000 * (2.5 - 1.25) / 1e6)  # 0.75
    assert "for ann" in r.title


def test_cache_utilization_ignores_small_days_and_small_gaps(pricer):
    small = [
        rec.TokenBucket(
            ts=DAY, provider="openai", model="gpt-4o", input_tokens=50_000, cached_input_tokens=50_000
        ),
        rec.TokenBucket(ts=DAY + 86400, provider="openai", model="gpt-4o", input_tokens=1_000_000),
    ]
    assert rec.cache_utilization(small, pricer, window_days=30) == []  # the 100% day is too small to count
    steady = [
        rec.TokenBucket(
            ts=DAY + i * 86400,
            provider="openai",
            model="gpt-4o",
            input_tokens=1_000_000,
            cached_input_tokens=500_000 + i * 10_000,
        )
        for i in range(3)
    ]
    assert rec.cache_utilization(steady, pricer, window_days=30) == []  # 52% best vs 51% overall


def test_batch_candidates_arithmetic(pricer):
    # 20 days with $1 at 00:00 UTC (02:00 CEST: night in Berlin) and $5 at 10:00 UTC (12:00 CEST).
    hourly = []
    for d in range(20):
        hourly.append(rec.TokenBucket(ts=DAY + d * 86400, provider="openai", model="gpt-4o", cost_usd=1.0))
        hourly.append(
            rec.TokenBucket(ts=DAY + d * 86400 + 10 * 3600, provider="openai", model="gpt-4o", cost_usd=5.0)
        )
    out = rec.batch_candidates(hourly, pricer, 30, "Europe/Berlin", discount_by_provider={"openai": 0.5})
    assert len(out) == 1
    r = out[0]
    assert r.details["night_cost_usd"] == pytest.approx(20.0)
    assert r.details["total_cost_usd"] == pytest.approx(120.0)
    assert r.monthly_saving_usd == pytest.approx(20.0 * 0.5 * 30 / 30)  # 10.00
    # Seen from Phoenix (UTC-7) the $5 hour is 03:00 and the $1 hour 17:00: the night is the other one.
    (ph,) = rec.batch_candidates(hourly, pricer, 30, "America/Phoenix", discount_by_provider={"openai": 0.5})
    assert ph.details["night_cost_usd"] == pytest.approx(100.0)
    assert ph.monthly_saving_usd == pytest.approx(50.0)
    # Active on 10 of 30 days only: not steady.
    assert (
        rec.batch_candidates(hourly[:20], pricer, 30, "Europe/Berlin", discount_by_provider={"openai": 0.5})
        == []
    )


def test_expensive_sessions_arithmetic(pricer, families):
    mk = lambda sid, cost, cached: rec.SessionStats(  # noqa: E731
        session_id=sid,
        provider="anthropic",
        model="claude-sonnet-4-5",
        start_ts=DAY,
        end_ts=DAY + 1800,
        cost_usd=cost,
        requests=10,
        input_tokens=2_000_000,
        cached_input_tokens=cached,
        cache_write_tokens=0,
        output_tokens=10_000,
        source="claude-code",
        project="webapp",
    )
    sessions = [mk("s-expensive", 6.0, 0), mk("s-mid", 3.0, 1_000_000), mk("s-cheap", 1.0, 1_600_000)]
    out = rec.expensive_sessions(sessions, pricer, families, window_days=30, top=2)
    assert [r.details["session_id"] for r in out] == ["s-expensive", "s-mid"]
    first = out[0]
    assert first.details["typical_cache_hit_share"] == pytest.approx(0.5)  # median of 0, 0.5, 0.8
    assert first.monthly_saving_usd == pytest.approx(0.5 * 2_000_000 * (3.0 - 0.3) / 1e6)  # 2.70
    assert any("long context: 200,000" in e for e in first.evidence)
    assert any("cache misses: 0% hits vs 50%" in e for e in first.evidence)
    assert out[1].monthly_saving_usd == 0.0  # at the median: nothing to gain from caching


def test_anomaly_impact_arithmetic():
    anomalies = [
        {"scope": "model:gpt-4o", "impact_usd": 10.0, "severity": "high", "explanation": "x"},
        {"scope": "user:bob", "impact_usd": 5.0, "severity": "low", "explanation": "y"},
    ]
    (r,) = rec.anomaly_impact(anomalies, window_days=15)
    assert r.details["lost_usd"] == pytest.approx(15.0)
    assert r.monthly_saving_usd == pytest.approx(15.0 * 30 / 15)  # 30.00
    assert rec.anomaly_impact([], 30) == []


def test_recommend_command_end_to_end(run_cli, db_url):
    from openai_monitor.config import load_settings
    from openai_monitor.service.pricing import make_pricer
    from openai_monitor.store import Store

    now = int(time.time())
    day = now - now % 86400 - 2 * 86400
    recs = [
        UsageRecord(
            ts=day + i * 60,
            provider="openai",
            model="gpt-4o",
            dedup_key=f"k{i}",
            source="csv",
            input_tokens=100_000,
            output_tokens=10_000,
            cost_usd=None,
        )
        for i in range(10)
    ]
    p = make_pricer(load_settings())
    recs = list(p.apply(recs))
    Store(db_url).ingest(recs)
    r = run_cli("recommend", "--since", "7d", "--json")
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    whatif = [x for x in res["recommendations"] if x["kind"] == "model_whatif"]
    assert whatif and whatif[0]["details"]["alternative"] == "gpt-4o-mini"
    own = p.lookup("openai", "gpt-4o", day)
    mini = p.lookup("openai", "gpt-4o-mini", day)
    by_hand = (1_000_000 * (own.input - mini.input) + 100_000 * (own.output - mini.output)) / 1e6
    assert whatif[0]["details"]["window_saving_usd"] == pytest.approx(by_hand)
    assert whatif[0]["monthly_saving_usd"] == pytest.approx(by_hand * 30 / res["window_days"])
    text = run_cli("recommend")
    assert text.exit_code == 0 and "gpt-4o -> gpt-4o-mini" in text.stdout
    bad = run_cli("recommend", "--since", "yesterday-ish")
    assert bad.exit_code == 2 and "Traceback" not in bad.stderr


def test_model_whatif_window_starts_at_its_hour_not_its_day(run_cli, db_url):
    """A window starting mid-day counts only that day's calls after its start (the day rollup had added
    the whole first day to the model what-if, so it disagreed with the batch figure of the same window)."""
    import datetime as dt

    from openai_monitor.config import load_settings
    from openai_monitor.service.pricing import make_pricer
    from openai_monitor.store import Store

    now = int(time.time())
    day = now - now % 86400 - 3 * 86400
    recs = [
        UsageRecord(
            day + h * 3600, "openai", "gpt-4o", f"k{h}", "csv", input_tokens=100_000, output_tokens=10_000
        )
        for h in (2, 3, 10, 11, 12)
    ]
    p = make_pricer(load_settings())
    recs = list(p.apply(recs))
    Store(db_url).ingest(recs)
    since = dt.datetime.fromtimestamp(day + 6 * 3600, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    res = json.loads(run_cli("recommend", "--since", since, "--json").stdout)
    whatif = [x for x in res["recommendations"] if x["kind"] == "model_whatif"][0]
    assert whatif["details"]["spent_usd"] == pytest.approx(sum(r.cost_usd for r in recs[2:]))
