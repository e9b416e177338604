"""Reports through the real CLI on a real SQLite file: local days across DST, groups, bounds, formats."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
import sqlite3
import subprocess
import sys
from collections import defaultdict
from zoneinfo import ZoneInfo

import pytest

from openai_monitor.domain import UsageRecord
from openai_monitor.service.reports import offset_segments
from openai_monitor.store import Store

NY = "America/New_York"


def ts(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


_n = [0]


def rec(iso: str, **kw) -> UsageRecord:
    _n[0] += 1
    kw.setdefault("provider", "openai")
    kw.setdefault("model", "gpt-4o")
    return UsageRecord(ts=ts(iso), dedup_key=f"k{_n[0]}", source="test", **kw)


def ingest(db_url: str, records: list[UsageRecord]) -> None:
    store = Store(db_url)
    inserted, _dups = store.ingest(records)
    assert inserted == len(records)
    store.dispose()


def as_json(result) -> dict:
    assert result.exit_code == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def rows_by(data: dict, *keys: str) -> dict:
    return {tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]: r for r in data["rows"]}


# Calls around the two 2025 DST changes in New York (spring forward 2025-03-09 07:00Z, fall back
# 2025-11-02 06:00Z). Each is placed where a fixed offset or UTC would put it on the wrong day.
DST_CALLS = [
    ("2025-03-08T04:30:00Z", "2025-03-07"),  # 23:30 EST; UTC day would be 03-08
    ("2025-03-10T03:30:00Z", "2025-03-09"),  # 23:30 EDT on the change day; UTC day would be 03-10
    ("2025-03-10T04:30:00Z", "2025-03-10"),  # 00:30 EDT; with the pre-change EST offset: 03-09 23:30
    ("2025-11-03T04:30:00Z", "2025-11-02"),  # 23:30 EST after fall back; with EDT offset: 11-03 00:30
]


def test_daily_local_days_across_dst(db_url, run_cli):
    ingest(
        db_url, [rec(t, input_tokens=100 * (i + 1), output_tokens=1) for i, (t, _d) in enumerate(DST_CALLS)]
    )
    data = as_json(run_cli("daily", "--timezone", NY, "--json"))
    got = {r["period"]: r["input_tokens"] for r in data["rows"]}
    assert got == {day: 100 * (i + 1) for i, (_t, day) in enumerate(DST_CALLS)}
    # The same data in UTC lands on UTC days (served from the day grain).
    utc = as_json(run_cli("daily", "--timezone", "UTC", "--json"))
    assert {r["period"]: r["input_tokens"] for r in utc["rows"]} == {
        "2025-03-08": 100,
        "2025-03-10": 200 + 300,
        "2025-11-03": 400,
    }


def test_offset_segments_split_at_transitions():
    lo, hi = ts("2025-03-01T00:00:00Z"), ts("2025-12-01T00:00:00Z")
    segs = offset_segments(lo, hi, NY)
    assert segs == [
        (lo, ts("2025-03-09T07:00:00Z"), -5 * 3600),
        (ts("2025-03-09T07:00:00Z"), ts("2025-11-02T06:00:00Z"), -4 * 3600),
        (ts("2025-11-02T06:00:00Z"), hi, -5 * 3600),
    ]
    assert offset_segments(lo, hi, "UTC") == [(lo, hi, 0)]
    assert offset_segments(lo, lo, NY) == []


@pytest.mark.parametrize(
    "tz", ["Asia/Kolkata", "Australia/Lord_Howe", "America/New_York", "Europe/Berlin", "UTC"]
)
def test_daily_matches_reference_aggregation(db_url, run_cli, tz):
    """Random calls over two years against a plain-Python reference: each call belongs to the local day
    of the START of its UTC hour (documented rule; it differs from the call's own day only in zones with a
    non-whole-hour offset). Lord Howe shifts by 30 minutes at DST."""
    rnd = random.Random(7)
    start = ts("2024-01-01T00:00:00Z")
    records = []
    for _ in range(600):
        t = start + rnd.randrange(0, 2 * 365 * 86400)
        r = UsageRecord(
            ts=t,
            provider="openai",
            model=rnd.choice(["gpt-4o", "o3"]),
            dedup_key=f"r{t}-{len(records)}",
            input_tokens=rnd.randrange(1, 5000),
            output_tokens=rnd.randrange(1, 500),
            cost_usd=round(rnd.random(), 4),
        )
        records.append(r)
    ingest(db_url, records)
    z = ZoneInfo(tz)
    expect_day: dict[str, int] = defaultdict(int)
    expect_month: dict[str, int] = defaultdict(int)
    for r in records:
        day = dt.datetime.fromtimestamp(r.ts - r.ts % 3600, z).date()
        expect_day[day.isoformat()] += r.input_tokens
        expect_month[day.strftime("%Y-%m")] += r.input_tokens
    daily = as_json(run_cli("daily", "--timezone", tz, "--json"))
    assert {r["period"]: r["input_tokens"] for r in daily["rows"]} == expect_day
    monthly = as_json(run_cli("monthly", "--timezone", tz, "--json"))
    assert {r["period"]: r["input_tokens"] for r in monthly["rows"]} == expect_month
    assert daily["cost_usd"] == pytest.approx(sum(r.cost_usd for r in records))


def _group_data() -> list[UsageRecord]:
    day = "2025-05-06T10:00:00Z"
    return [
        rec(
            day,
            provider="openai",
            model="gpt-4o",
            user="ann",
            project="web",
            input_tokens=1000,
            cached_input_tokens=400,
            output_tokens=200,
            reasoning_tokens=0,
            cost_usd=1.0,
            cost_reported=True,
        ),
        rec(
            day,
            provider="openai",
            model="o3",
            user="bob",
            project="web",
            input_tokens=2000,
            output_tokens=900,
            reasoning_tokens=600,
            cost_usd=2.0,
        ),
        rec(
            day,
            provider="anthropic",
            model="claude-sonnet-4",
            user="ann",
            project="cli",
            input_tokens=3000,
            cached_input_tokens=1000,
            cache_write_tokens=500,
            output_tokens=100,
            cost_usd=4.0,
            requests=3,
        ),
        rec(
            day,
            provider="azure",
            model="gpt-4o",
            user="cy",
            project="cli",
            input_tokens=10,
            output_tokens=5,
            cost_usd=8.0,
            cost_reported=True,
        ),
    ]


def test_by_each_dimension(db_url, run_cli):
    ingest(db_url, _group_data())
    by_model = rows_by(as_json(run_cli("daily", "--by", "model", "--json")), "model", "provider")
    # The same model name from two providers stays two rows.
    assert set(by_model) == {
        ("gpt-4o", "openai"),
        ("o3", "openai"),
        ("claude-sonnet-4", "anthropic"),
        ("gpt-4o", "azure"),
    }
    assert by_model[("claude-sonnet-4", "anthropic")]["requests"] == 3
    assert by_model[("claude-sonnet-4", "anthropic")]["cache_write_tokens"] == 500
    assert by_model[("o3", "openai")]["reasoning_tokens"] == 600

    by_user = rows_by(as_json(run_cli("daily", "--by", "user", "--json")), "user")
    assert {u: r["input_tokens"] for u, r in by_user.items()} == {"ann": 4000, "bob": 2000, "cy": 10}
    assert by_user["ann"]["cost_usd"] == pytest.approx(5.0)
    assert by_user["ann"]["cost_billed_usd"] == pytest.approx(1.0)
    assert by_user["ann"]["cost_estimated_usd"] == pytest.approx(4.0)

    by_project = rows_by(as_json(run_cli("weekly", "--by", "project", "--json")), "project")
    assert {p: r["cost_usd"] for p, r in by_project.items()} == {"web": 3.0, "cli": 12.0}

    by_provider = rows_by(as_json(run_cli("monthly", "--by", "provider", "--json")), "provider")
    assert {p: r["requests"] for p, r in by_provider.items()} == {"openai": 2, "anthropic": 3, "azure": 1}
    assert list(by_provider) == ["azure", "anthropic", "openai"]  # most expensive first

    summary = as_json(run_cli("summary", "--by", "user", "--json"))
    assert {r["user"]: r["requests"] for r in summary["rows"]} == {"ann": 4, "bob": 1, "cy": 1}

    bad = run_cli("daily", "--by", "colour")
    assert bad.exit_code == 2 and "--by 'colour'" in bad.stderr and "model" in bad.stderr


def test_summary_json_fields(db_url, run_cli):
    ingest(
        db_url, _group_data() + [rec("2025-05-07T23:59:59Z", model="acme-1", input_tokens=7, output_tokens=3)]
    )
    data = as_json(run_cli("summary", "--json"))
    assert data["requests"] == 1 + 1 + 3 + 1 + 1
    assert data["records"] == 5
    assert data["input_tokens"] == 1000 + 2000 + 3000 + 10 + 7
    assert data["cached_input_tokens"] == 1400
    assert data["cache_write_tokens"] == 500
    assert data["output_tokens"] == 200 + 900 + 100 + 5 + 3
    assert data["reasoning_tokens"] == 600
    assert data["cost_usd"] == pytest.approx(15.0)
    assert data["cost_billed_usd"] == pytest.approx(9.0)
    assert data["cost_estimated_usd"] == pytest.approx(6.0)
    assert data["unpriced_records"] == 1
    assert data["first_ts"] == "2025-05-06T10:00:00Z"
    assert data["last_ts"] == "2025-05-07T23:59:59Z"
    assert data["unpriced_models"] == [{"provider": "openai", "model": "acme-1", "records": 1}]


def test_since_until_bounds_are_local_and_inclusive(db_url, run_cli):
    ingest(db_url, [rec(t, input_tokens=100 * (i + 1)) for i, (t, _d) in enumerate(DST_CALLS)])
    data = as_json(
        run_cli("daily", "--timezone", NY, "--since", "2025-03-09", "--until", "2025-03-10", "--json")
    )
    assert {r["period"]: r["input_tokens"] for r in data["rows"]} == {"2025-03-09": 200, "2025-03-10": 300}
    assert data["since"] == "2025-03-09T05:00:00Z"  # local midnight EST
    assert data["until"] == "2025-03-11T04:00:00Z"  # end of 03-10 EDT
    assert data["first_ts"] == "2025-03-10T03:30:00Z" and data["last_ts"] == "2025-03-10T04:30:00Z"
    one_day = as_json(
        run_cli("summary", "--timezone", NY, "--since", "2025-03-09", "--until", "2025-03-09", "--json")
    )
    assert one_day["input_tokens"] == 200
    iso = as_json(run_cli("summary", "--since", "2025-03-10T04:00:00Z", "--json"))
    assert iso["input_tokens"] == 300 + 400
    # A range without data is a clear message, not an error.
    none = run_cli("daily", "--since", "2026-01-01")
    assert none.exit_code == 0 and "no usage from 2026-01-01" in none.stdout
    rev = run_cli("daily", "--since", "2025-03-10", "--until", "2025-03-01")
    assert rev.exit_code == 2 and "--until must be after --since" in rev.stderr
    bad = run_cli("daily", "--since", "last tuesday")
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.stderr and "Traceback" not in bad.stderr


def test_csv_output(db_url, run_cli):
    ingest(db_url, _group_data())
    res = run_cli("daily", "--by", "model", "--csv")
    assert res.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert res.stdout.splitlines()[0] == (
        "period,model,provider,records,requests,input_tokens,cached_input_tokens,cache_write_tokens,"
        "output_tokens,reasoning_tokens,cost_usd,cost_billed_usd,cost_estimated_usd,unpriced_records"
    )
    assert len(rows) == 4
    claude = next(r for r in rows if r["model"] == "claude-sonnet-4")
    assert claude["period"] == "2025-05-06"
    assert int(claude["input_tokens"]) == 3000 and float(claude["cost_usd"]) == 4.0
    total = list(csv.DictReader(io.StringIO(run_cli("summary", "--csv").stdout)))
    assert len(total) == 1 and int(total[0]["requests"]) == 6
    both = run_cli("daily", "--csv", "--json")
    assert both.exit_code == 2 and "pick one" in both.stderr


def test_weekly_week_start(db_url, run_cli):
    # 2025-03-09 is a Sunday, 2025-03-10 a Monday.
    ingest(
        db_url,
        [
            rec("2025-03-08T12:00:00Z", input_tokens=1),
            rec("2025-03-09T12:00:00Z", input_tokens=10),
            rec("2025-03-10T12:00:00Z", input_tokens=100),
        ],
    )
    monday = as_json(run_cli("weekly", "--timezone", "UTC", "--json"))
    assert {r["period"]: r["input_tokens"] for r in monday["rows"]} == {"2025-03-03": 11, "2025-03-10": 100}
    assert monday["week_start"] == "monday"
    assert run_cli("config", "set", "week_start", "sunday").exit_code == 0
    sunday = as_json(run_cli("weekly", "--timezone", "UTC", "--json"))
    assert {r["period"]: r["input_tokens"] for r in sunday["rows"]} == {"2025-03-02": 1, "2025-03-09": 110}
    override = as_json(run_cli("weekly", "--timezone", "UTC", "--week-start", "monday", "--json"))
    assert {r["period"]: r["input_tokens"] for r in override["rows"]} == {"2025-03-03": 11, "2025-03-10": 100}
    assert run_cli("weekly", "--week-start", "caturday").exit_code == 2


def test_monthly_local_months(db_url, run_cli):
    ingest(
        db_url,
        [
            rec("2025-04-01T02:00:00Z", input_tokens=5, cost_usd=0.5),  # 03-31 22:00 in New York
            rec("2025-04-01T05:00:00Z", input_tokens=7, cost_usd=0.25),
        ],
    )
    ny = as_json(run_cli("monthly", "--timezone", NY, "--json"))
    assert {r["period"]: (r["input_tokens"], r["cost_usd"]) for r in ny["rows"]} == {
        "2025-03": (5, 0.5),
        "2025-04": (7, 0.25),
    }
    utc = as_json(run_cli("monthly", "--timezone", "UTC", "--json"))
    assert [(r["period"], r["input_tokens"]) for r in utc["rows"]] == [("2025-04", 12)]
    text = run_cli("monthly", "--timezone", NY)
    assert text.exit_code == 0 and "2025-03" in text.stdout and "$0.50" in text.stdout


def test_unpriced_footer_and_retroactive_price(db_url, run_cli):
    ingest(
        db_url,
        [
            rec("2025-05-06T10:00:00Z", model="mystery-a", input_tokens=1000, output_tokens=500),
            rec("2025-05-06T11:00:00Z", model="mystery-a", input_tokens=1000, output_tokens=500),
            rec("2025-05-06T12:00:00Z", model="mystery-b", input_tokens=1, output_tokens=1),
            rec("2025-05-06T13:00:00Z", model="gpt-4o", input_tokens=1, output_tokens=1, cost_usd=0.1),
        ],
    )
    res = run_cli("daily")
    assert res.exit_code == 0
    assert "3 records of 2 unknown models not priced (mystery-a, mystery-b)" in res.stdout
    assert "oaim pricing set" in res.stdout
    assert "3 records of 2 unknown models" in run_cli("summary").stdout
    data = as_json(run_cli("daily", "--by", "model", "--json"))
    assert rows_by(data, "model")["mystery-a"]["unpriced_records"] == 2
    assert data["unpriced_message"].startswith("3 records of 2 unknown models not priced")
    # Pricing the model removes it from the footer and its estimated cost follows the arithmetic.
    assert run_cli("pricing", "set", "mystery-a", "--input", "2", "--output", "8").exit_code == 0
    after = as_json(run_cli("summary", "--json"))
    assert after["unpriced_records"] == 1
    assert after["cost_estimated_usd"] == pytest.approx(0.1 + 2 * (1000 * 2 + 500 * 8) / 1_000_000)
    assert "1 record of 1 unknown model not priced (mystery-b)" in run_cli("daily").stdout


def test_empty_database_is_a_message(run_cli):
    for cmd in ("summary", "daily", "weekly", "monthly"):
        res = run_cli(cmd)
        assert res.exit_code == 0, res.stderr
        assert "no usage recorded yet" in res.stdout and "oaim import" in res.stdout
    data = as_json(run_cli("summary", "--json"))
    assert data["records"] == 0 and data["cost_usd"] == 0 and data["first_ts"] is None
    assert as_json(run_cli("daily", "--json"))["rows"] == []
    assert run_cli("daily", "--csv").stdout.startswith("period,records,requests")


def test_text_table(db_url, run_cli):
    ingest(db_url, _group_data())
    res = run_cli("daily", "--by", "user")
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    ann = next(line for line in lines if " ann " in f" {line} ")
    assert "2025-05-06" in ann and "4,000" in ann and "$5.00" in ann
    assert any(line.strip().startswith("Total") and "$15.00" in line for line in lines)
    summary = run_cli("summary").stdout
    assert "$15.00" in summary and "6,017" not in summary and "6,010" in summary


def test_reports_read_the_rollup_not_raw_rows(db_url, run_cli, oaim_home):
    ingest(db_url, _group_data())
    # Remove the raw rows behind the store's back: totals still come from the rollup; only the first/last
    # timestamps (read from the raw ts index) disappear.
    with sqlite3.connect(oaim_home / "usage.db") as conn:
        conn.execute("DELETE FROM usage_records")
    data = as_json(run_cli("summary", "--json"))
    assert data["records"] == 4 and data["cost_usd"] == pytest.approx(15.0)
    assert data["first_ts"] is None
    daily = as_json(run_cli("daily", "--timezone", NY, "--by", "user", "--json"))
    assert sum(r["input_tokens"] for r in daily["rows"]) == 6010


def test_read_path_imports_no_sqlalchemy_or_pandas(db_url, oaim_home):
    ingest(db_url, _group_data())
    code = (
        "import sys\n"
        "from openai_monitor.cli import app\n"
        "for args in (['summary', '--json'], ['daily', '--by', 'model', '--json', '--timezone', 'Asia/Kolkata'],"
        " ['weekly'], ['monthly', '--csv']):\n"
        "    try:\n"
        "        app(args, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('sqlalchemy', 'pandas', 'numpy', 'prophet', 'sklearn') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "HEAVY="


def test_half_hour_zone_bounds_follow_the_hour_start_rule(db_url, run_cli):
    # India is UTC+05:30: local midnight of 2025-03-09 is 18:30Z on 03-08. Hour buckets count for the local
    # day on which they start, and bounds select buckets by their start, so both agree.
    ingest(
        db_url,
        [
            rec("2025-03-08T18:10:00Z", input_tokens=1),  # 23:40 IST 03-08; hour 18:00Z starts 23:30 03-08
            rec("2025-03-08T19:05:00Z", input_tokens=10),  # 00:35 IST 03-09
            rec("2025-03-09T18:40:00Z", input_tokens=100),  # 00:10 IST 03-10, but its hour starts 23:30 03-09
            rec("2025-03-09T19:00:00Z", input_tokens=1000),  # 00:30 IST 03-10
        ],
    )
    args = ("--timezone", "Asia/Kolkata", "--since", "2025-03-09", "--until", "2025-03-09", "--json")
    data = as_json(run_cli("daily", *args))
    assert [(r["period"], r["input_tokens"]) for r in data["rows"]] == [("2025-03-09", 110)]
    assert as_json(run_cli("summary", *args))["input_tokens"] == 110


def test_root_timezone_option_applies(db_url, run_cli):
    ingest(db_url, [rec("2025-03-10T03:30:00Z", input_tokens=5)])  # 23:30 on 03-09 in New York
    data = as_json(run_cli("--timezone", NY, "daily", "--json"))
    assert [r["period"] for r in data["rows"]] == ["2025-03-09"] and data["timezone"] == NY
    assert run_cli("config", "set", "timezone", "Asia/Tokyo").exit_code == 0
    assert as_json(run_cli("daily", "--json"))["rows"][0]["period"] == "2025-03-10"
