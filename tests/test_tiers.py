"""Usage tiers: qualification from paid amount and days, progress, the usage classifier on synthetic
profiles of every tier, config overrides, and the `oaim tier` command."""

from __future__ import annotations

import json
import random
from datetime import date
from importlib import resources

import pytest

from openai_monitor.errors import ConfigError
from openai_monitor.ml.tiers import classify_usage, current_tier, monthly_limit, parse_tiers


@pytest.fixture(scope="module")
def table():
    raw = json.loads(resources.files("openai_monitor").joinpath("data/tiers.json").read_text("utf-8"))
    return parse_tiers(raw)


def test_table_matches_the_reference(table):
    limits = {t.id: t.monthly_limit_usd for t in table.tiers}
    assert limits == {"free": 100, "tier1": 100, "tier2": 500, "tier3": 1000, "tier4": 5000, "tier5": 200000}
    t5 = table.get("tier5")
    assert [h["monthly_limit_usd"] for h in t5.history] == [10000, 50000, 200000]
    assert table.get("tier2").rate_limits["gpt-4o"] == {"rpm": 5000, "tpm": 450000}
    assert "formats.md" in table.source and table.as_of == "2026-11-22"


@pytest.mark.parametrize(
    "paid, days, expected, paid_needed, days_needed",
    [
        (0, None, "free", 5, 0),
        (5, 0, "tier1", 45, 7),
        (60, 3, "tier1", 0, 4),  # paid enough for tier 2, but only 3 of 7 days
        (60, 7, "tier2", 40, 0),
        (300, 10, "tier3", 0, 4),  # tier 4 needs 14 days
        (300, 14, "tier4", 700, 16),
        (5000, 30, "tier5", 0, 0),
    ],
)
def test_current_tier_and_progress(table, paid, days, expected, paid_needed, days_needed):
    today = date(2026, 6, 30)
    first = date.fromordinal(today.toordinal() - days) if days is not None else None
    s = current_tier(table, paid, first, today)
    assert s.tier.id == expected
    assert s.paid_needed_usd == pytest.approx(paid_needed)
    assert s.days_needed == days_needed
    if s.next_tier is None:
        assert expected == "tier5"


def test_without_first_payment_date_waiting_tiers_are_not_proven(table):
    s = current_tier(table, 2000, None, date(2026, 6, 30))
    assert s.tier.id == "tier1"
    assert s.days_needed == 7 and s.next_eligible_date is None


def test_monthly_limit_plan_and_custom(table):
    assert monthly_limit(table, "tier3") == 1000
    assert monthly_limit(table, "tier3", 42.0) == 42.0
    assert monthly_limit(table, "custom") is None
    with pytest.raises(ConfigError, match="unknown plan"):
        monthly_limit(table, "tier9")


def test_overrides_from_config():
    raw = json.loads(resources.files("openai_monitor").joinpath("data/tiers.json").read_text("utf-8"))
    t = parse_tiers(
        raw, {"tier5": {"monthly_limit_usd": 50000}, "tier2": {"rate_limits": {"gpt-4o": {"rpm": 6000}}}}
    )
    assert t.get("tier5").monthly_limit_usd == 50000
    assert t.get("tier2").rate_limits["gpt-4o"] == {"rpm": 6000, "tpm": 450000}
    with pytest.raises(ConfigError, match="unknown tier"):
        parse_tiers(raw, {"tier7": {"monthly_limit_usd": 1}})


def _samples(mean: float, sd: float, n: int = 400, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [max(0.0, rng.gauss(mean, sd)) for _ in range(n)]


# Synthetic usage profiles: (expected tier, month-end mean, sd, peak RPM, peak TPM, model)
PROFILES = [
    ("free", 0.0, 0.0, 0, 0, None),
    ("tier1", 40.0, 8.0, 120, 12_000, "gpt-4o"),
    ("tier2", 300.0, 40.0, 2_000, 200_000, "gpt-4o"),
    ("tier3", 700.0, 60.0, 3_500, 600_000, "gpt-4o-2024-08-06"),
    ("tier4", 3_000.0, 400.0, 7_000, 1_500_000, "gpt-4o"),
    ("tier5", 20_000.0, 3_000.0, 7_500, 9_000_000, "gpt-4o"),
]


@pytest.mark.parametrize("expected, mean, sd, rpm, tpm, model", PROFILES)
def test_classifier_on_synthetic_profiles(table, expected, mean, sd, rpm, tpm, model):
    c = classify_usage(
        table,
        month_end_mean=mean,
        samples=_samples(mean, sd) if mean else None,
        peak_rpm=rpm,
        peak_tpm=tpm,
        model=model,
        history_days=60,
    )
    assert c.tier.id == expected
    assert c.confidence >= 0.85 and c.confidence_label == "high"
    assert c.evidence and "projected month-end spend" in c.evidence[0]


def test_rate_limits_can_require_a_higher_tier_than_spend(table):
    # $50/month fits tier 1's limit, but 3,000 RPM needs tier 2's 5,000 RPM (80% margin: 4,000).
    c = classify_usage(
        table, month_end_mean=50, samples=_samples(50, 5), peak_rpm=3000, peak_tpm=10_000, model="gpt-4o-mini"
    )
    assert c.spend_tier.id in ("free", "tier1") and c.rate_tier.id == "tier2" and c.tier.id == "tier2"
    assert c.rate_model == "gpt-4o-mini"


def test_spend_near_a_boundary_lowers_confidence_and_short_history(table):
    # Mean $480 with wide spread: tier 2 ($500) holds only ~60% of the time -> tier 3 recommended.
    c = classify_usage(
        table,
        month_end_mean=480,
        samples=_samples(480, 80),
        peak_rpm=10,
        peak_tpm=1000,
        model="gpt-4o",
        history_days=5,
    )
    assert c.tier.id == "tier3"
    assert c.confidence < 0.85 * 1.0 and any("5 days" in e for e in c.evidence)


def test_interval_only_and_unknown_model_stand_in(table):
    c = classify_usage(
        table, month_end_mean=400, month_end_upper_80=450, peak_rpm=100, peak_tpm=10_000, model="o3-mini"
    )
    assert c.tier.id == "tier2" and c.rate_model == "gpt-4o"
    assert c.confidence == pytest.approx(0.9 * 0.9)
    assert any("stand-in for o3-mini" in e for e in c.evidence)


def test_tier_command_json(run_cli, oaim_home):
    oaim_home.mkdir(parents=True, exist_ok=True)
    (oaim_home / "config.toml").write_text('total_paid_usd = 120\nfirst_payment_date = "2020-01-01"\n')
    r = run_cli("tier", "--json")
    assert r.exit_code == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["current"]["tier"] == "tier3"
    assert rep["current"]["next_tier"] == "tier4" and rep["current"]["paid_needed_usd"] == pytest.approx(130)
    assert rep["headroom"]["limit_usd"] == 1000 and rep["headroom"]["now_usd"] == 1000
    assert rep["usage_needs"]["tier"] == "free"
    text = run_cli("tier")
    assert text.exit_code == 0 and "Tier 3" in text.stdout and "$130.00 more paid" in text.stdout


def test_tier_command_bad_date(run_cli, oaim_home):
    oaim_home.mkdir(parents=True, exist_ok=True)
    (oaim_home / "config.toml").write_text('total_paid_usd = 120\nfirst_payment_date = "last year"\n')
    r = run_cli("tier")
    assert r.exit_code == 2 and "first_payment_date" in r.stderr and "Traceback" not in r.stderr
