"""Reconciliation: estimated (usage records x prices) against billed (Costs API), numbers worked by hand."""

from __future__ import annotations

import json

import pytest

from openai_monitor.domain import UsageRecord
from openai_monitor.service.reconcile import billed_days, billed_total, billed_until, model_key, reconcile
from openai_monitor.service.sync import sync_openai
from openai_monitor.store import Store
from openai_monitor.store.db import FastReader
from tests.fake_provider_api import OPENAI_KEY, FakeProviderAPI

NOV1 = 1_793_491_200  # 2026-11-01T00:00:00Z
DAY = 86400
NOW = NOV1 + 3 * DAY + 12 * 3600


def _rec(
    ts: int, model: str, cost: float | None, source: str = "openai-usage-api", key: str = ""
) -> UsageRecord:
    return UsageRecord(
        ts=ts,
        provider="openai",
        model=model,
        dedup_key=key or f"{source}:{ts}:{model}:{cost}",
        source=source,
        bucket_seconds=86400,
        requests=10,
        input_tokens=1000,
        output_tokens=100,
        cost_usd=cost,
    )


def _seed(db_url: str) -> Store:
    """Estimated: day 1 gpt-4o $3.00 + gpt-4o-mini $0.40; day 2 gpt-4o $1.00 + one unpriced record.
    Billed (Costs API): day 1 gpt-4o 2.00 + 0.50 (input + output), gpt-4o-mini 0.50; day 2 gpt-4o 1.25;
    day 2 web search 0.10 (no model)."""
    store = Store(db_url)
    store.ingest(
        [
            _rec(NOV1, "gpt-4o-2024-08-06", 3.00),
            _rec(NOV1, "gpt-4o-mini-2024-07-18", 0.40),
            _rec(NOV1 + DAY, "gpt-4o-2024-08-06", 1.00),
            _rec(NOV1 + DAY, "mystery-model", None),
            _rec(NOV1 - DAY, "gpt-4o-2024-08-06", 99.0),  # October: outside the month
        ]
    )
    with FakeProviderAPI(now=NOW) as api:
        api.openai_costs += [
            {"ts": NOV1 + 1, "project_id": "p", "line_item": "gpt-4o-2024-08-06, input", "value": 2.00},
            {"ts": NOV1 + 2, "project_id": "p", "line_item": "gpt-4o-2024-08-06, output", "value": 0.50},
            {"ts": NOV1 + 3, "project_id": "p", "line_item": "gpt-4o-mini, input", "value": 0.50},
            {"ts": NOV1 + DAY + 1, "project_id": "p", "line_item": "gpt-4o, output", "value": 1.25},
            {"ts": NOV1 + DAY + 2, "project_id": "p", "line_item": "web search tool calls", "value": 0.10},
        ]
        sync_openai(store, OPENAI_KEY, base_url=api.url, since=NOV1, now=NOW, endpoints=[], costs=True)
    return store


def test_drift_per_day_and_per_model(db_url: str) -> None:
    _seed(db_url)
    with FastReader(db_url) as r:
        rec = reconcile(r, month="2026-11", now=NOW)
    assert rec.basis == "usage-api"
    days = {d.key: d for d in rec.days}
    d1, d2 = days["2026-11-01"], days["2026-11-02"]
    # Day 1: estimated 3.00 + 0.40 = 3.40; billed 2.00 + 0.50 + 0.50 = 3.00; drift +0.40 = +13.33 %.
    assert d1.estimated_usd == pytest.approx(3.40) and d1.billed_usd == pytest.approx(3.00)
    assert d1.drift_usd == pytest.approx(0.40) and d1.drift_pct == pytest.approx(0.40 / 3.00 * 100)
    # Day 2: estimated 1.00 (+1 unpriced); billed 1.25 + 0.10 = 1.35; drift -0.35 = -25.93 %.
    assert d2.estimated_usd == pytest.approx(1.00) and d2.billed_usd == pytest.approx(1.35)
    assert d2.drift_pct == pytest.approx(-0.35 / 1.35 * 100) and d2.unpriced_records == 1
    # Days with neither side do not appear; the 3rd has a (empty) billed bucket only.
    assert set(days) == {"2026-11-01", "2026-11-02"}
    models = {m.key: m for m in rec.models}
    # gpt-4o: estimated 3.00 + 1.00 = 4.00, billed 2.00 + 0.50 + 1.25 = 3.75 (dated and undated names merge).
    assert models["gpt-4o"].estimated_usd == pytest.approx(4.00) and models[
        "gpt-4o"
    ].billed_usd == pytest.approx(3.75)
    assert models["gpt-4o"].drift_pct == pytest.approx(0.25 / 3.75 * 100)
    assert models["gpt-4o-mini"].drift_usd == pytest.approx(-0.10)
    assert (
        models["(not a model)"].billed_usd == pytest.approx(0.10)
        and models["(not a model)"].estimated_usd == 0
    )
    assert models["mystery-model"].billed_usd is None and models["mystery-model"].drift_pct is None
    total = rec.total
    assert total.estimated_usd == pytest.approx(4.40) and total.billed_usd == pytest.approx(4.35)


def test_billed_total_and_coverage(db_url: str) -> None:
    _seed(db_url)
    with FastReader(db_url) as r:
        assert billed_total(r, NOV1, NOV1 + DAY) == pytest.approx(3.00)
        assert billed_total(r, NOV1, NOV1 + 30 * DAY, provider="openai") == pytest.approx(4.35)
        assert billed_total(r, NOV1, NOV1 + 30 * DAY, provider="anthropic") is None
        assert billed_total(r, NOV1 - 40 * DAY, NOV1) is None
        assert billed_days(r, NOV1, NOV1 + 30 * DAY) == {
            NOV1: pytest.approx(3.0),
            NOV1 + DAY: pytest.approx(1.35),
        }
        # NOW is 12:00 on the 4th: days up to the 3rd are complete, the 4th is still open.
        assert billed_until(r, "openai") == NOV1 + 3 * DAY


def test_fallback_to_rollups_and_empty_month(db_url: str) -> None:
    store = Store(db_url)
    store.ingest([_rec(NOV1, "gpt-4o", 2.0, source="codex")])
    with FastReader(db_url) as r:
        rec = reconcile(r, month="2026-11", now=NOW)
        assert rec.basis == "rollups (all sources)" and rec.days[0].estimated_usd == pytest.approx(2.0)
        assert rec.days[0].billed_usd is None
        assert reconcile(r, month="2026-05", now=NOW).days == []


def test_model_key() -> None:
    assert model_key("gpt-4o-2024-08-06") == "gpt-4o"
    assert model_key("claude-sonnet-4-20250514") == "claude-sonnet-4"
    assert model_key("gpt-4o") == "gpt-4o"


def test_cli_reconcile(run_cli, db_url: str) -> None:
    _seed(db_url)
    r = run_cli("reconcile", "--month", "2026-11", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["total"]["drift_usd"] == pytest.approx(0.05)
    assert data["days"][0] == {
        "key": "2026-11-01",
        "estimated_usd": 3.4,
        "billed_usd": 3.0,
        "drift_usd": 0.4,
        "drift_pct": 13.333,
        "unpriced_records": 0,
    }
    text = run_cli("reconcile", "--month", "2026-11")
    assert text.exit_code == 0 and "+13.3%" in text.stdout and "gpt-4o" in text.stdout
    bad = run_cli("reconcile", "--month", "2026-13")
    assert bad.exit_code == 2 and "YYYY-MM" in bad.stderr
