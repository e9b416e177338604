"""Budgets: calendar periods in the user's zone (boundaries, month ends, leap day, DST), spend per
period from a real SQLite store, threshold crossings recorded once, warnings, and the CLI."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from openai_monitor.domain import UsageRecord
from openai_monitor.errors import InputError
from openai_monitor.service.budgets import (
    add_budget,
    budget_status,
    check_budgets,
    list_budgets,
    remove_budget,
)
from openai_monitor.service.spend import Db, period_bounds, spend_between
from tests.helpers_common import cost_record

UTC = timezone.utc


def _utc(*a) -> datetime:
    return datetime(*a, tzinfo=UTC)


def _settings(tz="UTC", week_start="monday", thresholds=None):
    return SimpleNamespace(
        timezone=tz, week_start=week_start, budgets={"thresholds": thresholds} if thresholds else {}
    )


@pytest.mark.parametrize(
    "period, now, tz, week_start, start, end",
    [
        ("daily", _utc(2026, 3, 10, 23, 59, 59), "UTC", "monday", _utc(2026, 3, 10), _utc(2026, 3, 11)),
        ("daily", _utc(2026, 3, 11, 0, 0, 0), "UTC", "monday", _utc(2026, 3, 11), _utc(2026, 3, 12)),
        # 03:30 UTC is still the previous evening in New York (EST, UTC-5).
        (
            "daily",
            _utc(2026, 1, 15, 3, 30),
            "America/New_York",
            "monday",
            _utc(2026, 1, 14, 5),
            _utc(2026, 1, 15, 5),
        ),
        ("weekly", _utc(2026, 3, 11, 12), "UTC", "monday", _utc(2026, 3, 9), _utc(2026, 3, 16)),
        ("weekly", _utc(2026, 3, 11, 12), "UTC", "sunday", _utc(2026, 3, 8), _utc(2026, 3, 15)),
        ("weekly", _utc(2026, 3, 8, 0, 0), "UTC", "sunday", _utc(2026, 3, 8), _utc(2026, 3, 15)),
        # month ends: Jan 31 -> Feb, Dec -> next year
        ("monthly", _utc(2026, 1, 31, 23, 59), "UTC", "monday", _utc(2026, 1, 1), _utc(2026, 2, 1)),
        ("monthly", _utc(2026, 12, 31, 12), "UTC", "monday", _utc(2026, 12, 1), _utc(2027, 1, 1)),
        # leap day 2028-02-29
        ("monthly", _utc(2028, 2, 29, 12), "UTC", "monday", _utc(2028, 2, 1), _utc(2028, 3, 1)),
        ("daily", _utc(2028, 2, 29, 12), "UTC", "monday", _utc(2028, 2, 29), _utc(2028, 3, 1)),
        ("weekly", _utc(2028, 2, 29, 12), "UTC", "monday", _utc(2028, 2, 28), _utc(2028, 3, 6)),
        ("monthly", _utc(2027, 2, 28, 12), "UTC", "monday", _utc(2027, 2, 1), _utc(2027, 3, 1)),
        # a month whose local start is the previous UTC day (Berlin, CET = UTC+1; CEST = UTC+2 at the end)
        (
            "monthly",
            _utc(2026, 3, 15),
            "Europe/Berlin",
            "monday",
            _utc(2026, 2, 28, 23),
            _utc(2026, 3, 31, 22),
        ),
    ],
)
def test_period_bounds(period, now, tz, week_start, start, end):
    s, e = period_bounds(period, now, tz, week_start)
    assert (s, e) == (start, end)
    assert s.tzinfo is not None and s.astimezone(ZoneInfo(tz)).hour == 0


def test_dst_days_are_23_and_25_hours():
    s, e = period_bounds("daily", _utc(2026, 3, 29, 12), "Europe/Berlin")
    assert e.timestamp() - s.timestamp() == 23 * 3600 and s == _utc(2026, 3, 28, 23)
    s, e = period_bounds("daily", _utc(2026, 10, 25, 12), "Europe/Berlin")
    assert e.timestamp() - s.timestamp() == 25 * 3600 and e == _utc(2026, 10, 25, 23)
    # the week containing the spring change is 167 hours long
    s, e = period_bounds("weekly", _utc(2026, 3, 29, 12), "Europe/Berlin", "monday")
    assert e.timestamp() - s.timestamp() == 167 * 3600


def test_pace_on_a_dst_day_uses_real_hours(db_url):
    from openai_monitor.store import Store

    store = Store(db_url)
    db = Db(store)
    add_budget(db, 30.0, "daily")
    # 2026-03-29 in Berlin has 23 hours; $12 in the first 11.5 real hours -> $24 at this pace, not $25.04.
    store.ingest([_rec(_utc(2026, 3, 29, 1), 12.0, "dst")])
    (st,) = budget_status(db, _settings("Europe/Berlin"), _utc(2026, 3, 29, 10, 30))
    assert st.pace_end_usd == pytest.approx(24.0)
    assert st.warning is None


def test_bad_period_and_week_start():
    with pytest.raises(InputError, match="daily, weekly or monthly"):
        period_bounds("yearly", _utc(2026, 1, 1), "UTC")
    with pytest.raises(InputError, match="week start"):
        period_bounds("weekly", _utc(2026, 1, 1), "UTC", "funday")


def _rec(ts: datetime, cost: float, key: str, **kw: Any) -> UsageRecord:
    return cost_record(int(ts.timestamp()), cost, key, **kw)


@pytest.fixture
def store(db_url):
    from openai_monitor.store import Store

    return Store(db_url)


def test_spend_rolls_over_at_local_midnight(store):
    ny = ZoneInfo("America/New_York")
    store.ingest(
        [
            _rec(datetime(2026, 1, 14, 23, 30, tzinfo=ny), 2.0, "a"),  # 04:30 UTC on the 15th
            _rec(datetime(2026, 1, 15, 0, 30, tzinfo=ny), 3.0, "b", reported=True),
        ]
    )
    db = Db(store)
    s, e = period_bounds("daily", datetime(2026, 1, 14, 12, tzinfo=ny), "America/New_York")
    assert spend_between(db, int(s.timestamp()), int(e.timestamp())).total_usd == pytest.approx(2.0)
    s, e = period_bounds("daily", datetime(2026, 1, 15, 12, tzinfo=ny), "America/New_York")
    sp = spend_between(db, int(s.timestamp()), int(e.timestamp()))
    assert (sp.total_usd, sp.billed_usd, sp.estimated_usd) == pytest.approx((3.0, 3.0, 0.0))


def test_half_hour_zone_splits_the_boundary_hour_exactly(store):
    # Kolkata is UTC+5:30: local midnight is 18:30 UTC, inside a UTC rollup hour.
    store.ingest(
        [_rec(_utc(2026, 5, 1, 18, 10), 1.0, "before"), _rec(_utc(2026, 5, 1, 18, 50), 4.0, "after")]
    )
    s, e = period_bounds("daily", _utc(2026, 5, 2, 6), "Asia/Kolkata")
    assert s == _utc(2026, 5, 1, 18, 30)
    assert spend_between(Db(store), int(s.timestamp()), int(e.timestamp())).total_usd == pytest.approx(4.0)


def test_scoped_budgets_and_thresholds_reported_once(store):
    db = Db(store)
    b_all = add_budget(db, 10.0, "daily")
    b_bob = add_budget(db, 4.0, "daily", "user", "bob")
    add_budget(db, 100.0, "monthly", "model", "gpt-4o")
    now = _utc(2026, 6, 10, 12)
    store.ingest(
        [
            _rec(_utc(2026, 6, 10, 9), 6.0, "x1", user="ann"),
            _rec(_utc(2026, 6, 10, 10), 3.0, "x2", user="bob"),
        ]
    )
    st = {s.budget.id: s for s in budget_status(db, _settings(), now)}
    assert st[b_all].spend.total_usd == pytest.approx(9.0) and st[b_all].thresholds_crossed == (50, 80)
    assert st[b_bob].pct == pytest.approx(75.0) and st[b_bob].thresholds_crossed == (50,)

    first = check_budgets(store, _settings(), now)
    assert sorted((e.budget.id, e.threshold_pct) for e in first) == [(b_all, 50), (b_all, 80), (b_bob, 50)]
    assert check_budgets(store, _settings(), now) == []  # recorded: not reported twice
    store.ingest([_rec(_utc(2026, 6, 10, 11), 1.5, "x3", user="bob")])
    again = check_budgets(store, _settings(), int(now.timestamp()))  # the daemon passes Unix seconds
    assert sorted((e.budget.id, e.threshold_pct) for e in again) == [(b_all, 100), (b_bob, 80), (b_bob, 100)]
    assert again[0].as_dict()["dedup_key"].count(":") == 2
    # next day: a new period, nothing spent yet, then the first threshold fires again
    next_day = _utc(2026, 6, 11, 12)
    assert check_budgets(store, _settings(), next_day) == []
    store.ingest([_rec(_utc(2026, 6, 11, 9), 5.0, "y1")])
    assert [(e.budget.id, e.threshold_pct) for e in check_budgets(store, _settings(), next_day)] == [
        (b_all, 50)
    ]


def test_custom_thresholds_and_pace_warning(store):
    db = Db(store)
    bid = add_budget(db, 70.0, "monthly")
    # $30 in the first 10 days of a 30-day month: at this pace $90, passing $70 on day 1 + 70/3 = the 24th.
    store.ingest([_rec(_utc(2026, 6, d, 12), 3.0, f"p{d}") for d in range(1, 11)])
    (st,) = budget_status(db, _settings(thresholds=[25, 40]), _utc(2026, 6, 11))
    assert st.budget.id == bid and st.thresholds_crossed == (25, 40)
    assert st.pace_end_usd == pytest.approx(90.0)
    assert st.warning["basis"] == "pace" and st.warning["date"] == "2026-06-24"
    assert "pass the monthly budget on the 24th" in st.warning["message"]


def test_storage_errors(store):
    db = Db(store)
    with pytest.raises(InputError, match="positive"):
        add_budget(db, -5, "daily")
    with pytest.raises(InputError, match="period"):
        add_budget(db, 5, "hourly")
    bid = add_budget(db, 5, "weekly", "project", "webapp")
    assert [b.scope for b in list_budgets(db)] == ["project webapp"]
    remove_budget(db, bid)
    with pytest.raises(InputError, match="no budget with id"):
        remove_budget(db, bid)


def test_budget_cli(run_cli, db_url):
    from openai_monitor.store import Store

    now = datetime.now(UTC)
    Store(db_url).ingest([_rec(now, 8.0, "now1")])
    r = run_cli("budget", "set", "10", "--period", "daily")
    assert r.exit_code == 0 and "budget #1" in r.stdout
    assert run_cli("budget", "set", "5", "--period", "weekly", "--user", "ann").exit_code == 0
    bad = run_cli("budget", "set", "5", "--user", "a", "--model", "m")
    assert bad.exit_code == 2 and "at most one" in bad.stderr
    lst = run_cli("budget", "list")
    assert "#1" in lst.stdout and "user ann" in lst.stdout
    st = json.loads(run_cli("budget", "status", "--json").stdout)
    assert st[0]["spent_usd"] == pytest.approx(8.0) and st[0]["estimated_usd"] == pytest.approx(8.0)
    assert st[0]["thresholds_crossed"] == [50, 80]
    text = run_cli("budget", "status")
    assert text.exit_code == 0 and "$8.00 / $10.00 (80%)" in text.stdout
    assert run_cli("budget", "rm", "1").exit_code == 0
    missing = run_cli("budget", "rm", "1")
    assert missing.exit_code == 2 and "no budget with id 1" in missing.stderr
