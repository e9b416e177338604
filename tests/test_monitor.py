"""The monitor's figures on a real SQLite store with a stored forecast, its exit codes, its 80x24
frame, the CLI entry points (`openai-monitor --plan tier2 --once`, `oaim monitor --json`) and the fast
read path (no SQLAlchemy / pandas / Prophet / scikit-learn import)."""

from __future__ import annotations

import functools
import io
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from openai_monitor.service.monitor import (
    EXIT_ANOMALY_OPEN,
    EXIT_OK,
    EXIT_OVER_BUDGET,
    EXIT_PROJECTED_OVER,
    EXIT_STALE,
    gather,
)
from openai_monitor.service.spend import Db
from tests.helpers_common import cost_record

UTC = timezone.utc
NOW = datetime(2026, 6, 11, 0, 0, tzinfo=UTC)
DAY = 86400


def _settings(**kw):
    base = dict(
        plan="tier1",
        limit_usd=None,
        timezone="UTC",
        week_start="monday",
        budgets={},
        daemon=SimpleNamespace(stale_hours=24.0),
        model_extra={},
    )
    base.update(kw)
    return SimpleNamespace(**base)


_rec = functools.partial(cost_record, project="web")


@pytest.fixture
def store(db_url):
    from openai_monitor.store import Store

    s = Store(db_url)
    t0 = int(NOW.timestamp())
    # June 1-10: $5/day (billed on even days); 11 June so far: nothing yet. May: $100 (not this month).
    recs = [_rec(t0 - d * DAY + 3600, 5.0, f"j{d}", reported=d % 2 == 0) for d in range(1, 11)]
    recs.append(_rec(t0 - 20 * DAY, 100.0, "may"))
    recs.append(_rec(t0 - 2 * DAY + 7200, 1.0, "mini", model="gpt-4o-mini", user="bob", project=""))
    s.ingest(recs)
    s.set_meta("last_collection_at", t0 - 3600)
    return s


def _store_forecast(store, mtd: float, per_day: float, now: datetime = NOW, trained_at: int | None = None):
    """A stored daily cost forecast in the format training writes: every path spends ``per_day``."""
    from sqlalchemy import text

    t0 = int(now.timestamp())
    days = [datetime.fromtimestamp(t0 + i * DAY, UTC) for i in range(20)]  # 11..30 June
    paths = [[per_day * (i + 1) for i in range(20)] for _ in range(10)]
    summary = {
        "tz": "UTC",
        "trained_at": trained_at or t0,
        "partial_fraction": 0.0,
        "month": "2026-06",
        "month_end": "2026-06-30",
        "month_end_ts": int(datetime(2026, 7, 1, tzinfo=UTC).timestamp()),
        "month_to_date": mtd,
        "projection": {
            "mean": mtd + 20 * per_day,
            "lower_80": mtd + 20 * per_day,
            "upper_80": mtd + 20 * per_day,
            "lower_95": mtd + 20 * per_day,
            "upper_95": mtd + 20 * per_day,
        },
        "samples": {
            "days": [d.date().isoformat() for d in days],
            "day_starts": [int(d.timestamp()) for d in days],
            "first_fraction": 0.0,
            "totals": [20 * per_day] * 10,
            "paths": paths,
        },
    }
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO forecasts (series_id, scope_dim, scope_key, metric, freq, kind, trained_at, "
                "data_start, data_end, rows, data_hash, summary_json) VALUES ('cost|d|all|', 'all', '', 'cost', "
                "'d', 'prophet', :t, :t, :t, 60, 'h', :s)"
            ),
            {"t": trained_at or t0, "s": json.dumps(summary)},
        )
        for d in days:
            conn.execute(
                text("INSERT INTO forecast_points VALUES ('cost|d|all|', :ds, :y, :lo, :hi, :lo, :hi)"),
                {"ds": int(d.timestamp()), "y": per_day, "lo": per_day * 0.5, "hi": per_day * 1.5},
            )


def test_figures_without_a_forecast(store):
    f = gather(Db(store), _settings(), NOW)
    m = f["month"]["spent"]
    assert m["total_usd"] == pytest.approx(51.0)  # 10 x $5 + $1, May excluded
    assert m["billed_usd"] == pytest.approx(25.0) and m["estimated_usd"] == pytest.approx(26.0)
    assert f["plan"]["limit_usd"] == 100 and f["month"]["pct_of_limit"] == pytest.approx(51.0)
    assert f["today"]["spent"]["total_usd"] == 0 and f["today"]["forecast_usd"] is None
    # pace: $51 over 10 days of a 30-day month -> $153 > $100: projected over the limit
    assert f["projection"]["basis"] == "pace" and f["projection"]["mean_usd"] == pytest.approx(153.0)
    assert f["projection"]["limit_hit"]["expected"] == "2026-06-20"  # 100 / 5.1 per day = day 19.6
    assert f["exit_code"] == EXIT_PROJECTED_OVER
    assert any("oaim train" in h for h in f["hints"])
    assert [r["key"] for r in f["top"]["model"]] == ["gpt-4o", "gpt-4o-mini"]
    assert f["top"]["model"][0]["provider"] == "openai"
    assert f["top"]["user"][0] == {  # users are summed over providers: no provider field
        "key": "ann",
        "total_usd": 50.0,
        "billed_usd": 25.0,
        "estimated_usd": 25.0,
        "requests": 10,
    }
    assert len(f["chart"]["actual"]) == 11 and f["chart"]["actual"][0]["date"] == "2026-06-01"
    assert (
        f["freshness"]["last_collection_age_h"] == pytest.approx(1.0)
        and not f["freshness"]["collection_stale"]
    )
    json.dumps(f)  # JSON-able


def test_figures_with_a_stored_forecast(store):
    _store_forecast(store, mtd=51.0, per_day=2.0)
    f = gather(Db(store), _settings(), NOW, plan="tier2")
    p = f["projection"]
    assert p["basis"] == "forecast" and p["mean_usd"] == pytest.approx(51.0 + 40.0)
    assert p["prob_exceed_limit"] == 0.0 and p["limit_hit"] is None
    assert f["today"]["forecast_usd"] == pytest.approx(2.0)
    assert f["exit_code"] == EXIT_OK and f["plan"]["limit_usd"] == 500
    assert not any("oaim train" in h for h in f["hints"])
    # A $60 custom limit is crossed when 51 + 2k >= 60 -> 5th path day -> 15 June, on every path.
    f2 = gather(Db(store), _settings(), NOW, plan="custom", limit=60)
    assert f2["projection"]["prob_exceed_limit"] == 1.0
    assert f2["projection"]["limit_hit"]["expected"] == "2026-06-15"
    assert f2["exit_code"] == EXIT_PROJECTED_OVER


def test_exit_codes_over_budget_anomaly_stale(store):
    from sqlalchemy import text

    from openai_monitor.service.budgets import add_budget

    t0 = int(NOW.timestamp())
    assert gather(Db(store), _settings(), NOW, limit=50)["exit_code"] == EXIT_OVER_BUDGET  # $51 >= $50
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO anomalies (dedup_key, scope_dim, scope_key, start_ts, end_ts, severity, score, impact_usd, "
                "explanation, detected_at) VALUES ('k', 'model', 'gpt-4o', :s, :e, 'high', 0.9, 12.5, 'spike', :e)"
            ),
            {"s": t0 - 7200, "e": t0 - 3600},
        )
    f = gather(Db(store), _settings(), NOW, plan="tier3")
    assert f["exit_code"] == EXIT_ANOMALY_OPEN and f["anomalies"][0]["impact_usd"] == 12.5
    store.set_meta("last_collection_at", t0 - 30 * 3600)
    f = gather(Db(store), _settings(), NOW, plan="tier3")
    assert {a["code"] for a in f["alerts"]} == {EXIT_ANOMALY_OPEN, EXIT_STALE}
    assert f["exit_code"] == EXIT_ANOMALY_OPEN  # most urgent first
    add_budget(Db(store), 40.0, "monthly")
    assert gather(Db(store), _settings(), NOW, plan="tier3")["exit_code"] == EXIT_OVER_BUDGET


def test_auto_plan_uses_the_classifier(store):
    f = gather(Db(store), _settings(), NOW, plan="auto")
    c = f["plan"]["classification"]
    assert c["tier"] == f["plan"]["tier"] and c["evidence"]
    # $153 at pace exceeds tier 1's $100: the spend needs tier 2 ($500).
    assert c["spend_tier"] == "tier2" and f["plan"]["limit_usd"] == 500


def test_frame_fits_80x24_without_color(store):
    from rich.console import Console

    from openai_monitor.render.dashboard import render_frame

    _store_forecast(store, mtd=51.0, per_day=2.0)
    f = gather(Db(store), _settings(), NOW)
    buf = io.StringIO()
    con = Console(file=buf, width=80, height=24, no_color=True, force_terminal=False)
    con.print(render_frame(f, width=80, height=24, color=False))
    lines = buf.getvalue().rstrip("\n").split("\n")
    assert len(lines) <= 24 and max(len(x) for x in lines) <= 80
    out = buf.getvalue()
    assert "\x1b[" not in out
    assert "$51.00 / $100.00" in out and "billed $25.00 + est. $26.00" in out
    assert "80%: $91.00-$91.00" in out
    big = io.StringIO()
    Console(file=big, width=160, height=50, no_color=True).print(render_frame(f, width=160, height=50))
    assert len(big.getvalue().split("\n")) > len(lines)  # scales up: a bigger chart


def test_cli_default_command_once_and_json(run_cli, db_url):
    from openai_monitor.store import Store

    now = int(time.time())
    Store(db_url).ingest([_rec(now - 60, 600.0, "big")])
    r = run_cli("--plan", "tier2", "--once")
    assert r.exit_code == EXIT_OVER_BUDGET, r.stderr  # $600 >= tier 2's $500
    assert "$600.00 / $500.00" in r.stdout and "\x1b[" not in r.stdout
    j = run_cli("monitor", "--json", "--plan", "tier3", "--timezone", "Asia/Tokyo")
    f = json.loads(j.stdout)
    assert f["plan"]["limit_usd"] == 1000 and f["timezone"] == "Asia/Tokyo" and j.exit_code == f["exit_code"]
    bad = run_cli("--plan", "custom", "--once")
    assert bad.exit_code == 2 and "--limit" in bad.stderr and "Traceback" not in bad.stderr
    tz = run_cli("monitor", "--once", "--timezone", "Mars/Olympus")
    assert tz.exit_code == 2 and "time zone" in tz.stderr


def test_read_path_imports_no_heavy_modules(tmp_path, db_url, oaim_home):
    from openai_monitor.store import Store

    Store(db_url).ingest([_rec(int(time.time()) - 60, 1.0, "a")])
    code = (
        "import sys\n"
        "from openai_monitor.cli import app\n"
        "try:\n    app(['monitor', '--json'], prog_name='oaim')\n"
        "except SystemExit:\n    pass\n"
        "heavy = [m for m in ('sqlalchemy', 'pandas', 'prophet', 'sklearn') if m in sys.modules]\n"
        "sys.stderr.write('HEAVY=' + ','.join(heavy))\n"
    )
    env = {**os.environ, "OAIM_HOME": str(oaim_home)}
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    elapsed = time.perf_counter() - t
    assert "HEAVY=" in p.stderr and p.stderr.strip().endswith("HEAVY="), p.stderr[-500:]
    assert json.loads(p.stdout)["month"]["spent"]["total_usd"] >= 1.0
    print(f"monitor --json wall time: {elapsed:.2f} s")
