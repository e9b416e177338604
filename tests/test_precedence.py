"""Source precedence: a provider's usage API (organisation-wide, bucketed) and its per-call sources
(proxy, SDK, CLI logs, CSV) report the same calls. With `usage-api` precedence the usage API replaces
the per-call records on the UTC days it covers (they stay in the history, shadowed); with `all` every
source adds up. Rollups always equal the counted records, whatever the order things arrive in."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict

import pytest
from store_helpers import assert_rollups_equal_rebuild

from openai_monitor.domain import UsageRecord
from openai_monitor.store import Store
from openai_monitor.store.migrations import step_names

D = 1_750_032_000  # 2025-06-16T00:00:00Z
DAY = 86400


def _org(day: int, i: int, model: str = "gpt-4o") -> UsageRecord:
    return UsageRecord(
        ts=D + day * DAY,
        provider="openai",
        model=model,
        dedup_key=f"openai-usage-api:{day}:{i}",
        source="openai-usage-api",
        bucket_seconds=DAY,
        requests=10 + i,
        input_tokens=1000 * (i + 1),
        output_tokens=100 * (i + 1),
        cost_usd=0.5 + i,
        cost_reported=False,
    )


def _call(day: int, i: int, provider: str = "openai", source: str = "proxy") -> UsageRecord:
    return UsageRecord(
        ts=D + day * DAY + 3600 * (i % 20) + i,
        provider=provider,
        model="gpt-4o" if provider == "openai" else "claude-sonnet-4",
        user=f"u{i % 3}",
        dedup_key=f"{source}:{provider}:{day}:{i}",
        source=source,
        input_tokens=37 * (i + 1),
        output_tokens=5 * (i + 1),
        cost_usd=0.01 * (i + 1),
    )


ORG = [_org(d, i) for d in (0, 1) for i in range(2)]
# Per-call openai records on the two synced days and on a third, a Claude Code day, an openai CSV day.
CALLS = [_call(d, i) for d in (0, 1, 2) for i in range(6)]
CALLS += [_call(0, i, "anthropic", "claude-code") for i in range(4)]
CALLS += [_call(1, i, "openai", "csv") for i in range(3)]


def _expected(precedence: str, by_provider: bool = True) -> dict[tuple[int, str], list]:
    """(day, provider) -> [records, input tokens, output tokens, cost] of the records that count; with
    ``by_provider=False`` (day, "") -> the same summed over providers, as the user rollup keeps them."""
    covered = {r.ts - r.ts % DAY for r in ORG}
    out: dict[tuple[int, str], list] = defaultdict(lambda: [0, 0, 0, 0.0])
    for r in ORG + CALLS:
        day = r.ts - r.ts % DAY
        if (
            precedence == "usage-api"
            and r.provider == "openai"
            and r.source != "openai-usage-api"
            and day in covered
        ):
            continue
        t = out[(day, r.provider if by_provider else "")]
        t[0] += 1
        t[1] += r.input_tokens
        t[2] += r.output_tokens
        t[3] += r.cost_usd
    return {k: [v[0], v[1], v[2], round(v[3], 6)] for k, v in out.items()}


def _rollup(store: Store, dim: str = "user") -> dict[tuple[int, str], list]:
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT bucket_ts, provider, SUM(records), SUM(input_tokens), SUM(output_tokens), SUM(cost_usd) "
            "FROM rollup WHERE grain = 'd' AND dim = ? GROUP BY bucket_ts, provider",
            (dim,),
        ).all()
    return {(b, p): [n, i, o, round(c, 6)] for b, p, n, i, o, c in rows}


@pytest.mark.parametrize(
    "order", ["calls, sync, set", "set, calls, sync", "set, sync, calls", "sync, set, calls"]
)
def test_usage_api_replaces_per_call_records_whatever_the_order(db_url: str, order: str) -> None:
    store = Store(db_url)
    steps = {
        "calls": lambda: store.ingest(CALLS[:9]) and store.ingest(CALLS[9:]),
        "sync": lambda: store.ingest(ORG),
        "set": lambda: store.set_precedence("openai", "usage-api"),
    }
    for step in order.split(", "):
        steps[step]()
    assert _rollup(store, "model") == _expected("usage-api")
    assert _rollup(store) == _expected("usage-api", by_provider=False)
    assert _expected("usage-api") != _expected("all")  # the case matters
    assert_rollups_equal_rebuild(store)
    # History keeps every record; the replaced ones are flagged.
    assert store.count() == len(ORG) + len(CALLS)
    (st,) = [p for p in store.precedence_status() if p["provider"] == "openai"]
    assert st["precedence"] == "usage-api" and st["covered_days"] == 2
    assert st["shadowed_records"] == 12 + 3 and st["double_counted_records"] == 0
    store.dispose()


def test_back_to_all_counts_every_source_and_doctor_sees_it(db_url: str, run_cli) -> None:
    store = Store(db_url)
    store.set_precedence("openai", "usage-api")
    store.ingest(ORG + CALLS)
    assert _rollup(store, "model") == _expected("usage-api")
    assert _rollup(store) == _expected("usage-api", by_provider=False)
    status = store.set_precedence("openai", "all")
    assert _rollup(store, "model") == _expected("all")
    assert _rollup(store) == _expected("all", by_provider=False)
    assert status["shadowed_records"] == 0 and status["double_counted_records"] == 15
    assert_rollups_equal_rebuild(store)
    store.dispose()
    checks = {c["check"]: c for c in json.loads(run_cli("doctor", "--json").stdout)}
    assert checks["double counting (openai)"]["ok"] is False
    assert "oaim precedence openai usage-api" in checks["double counting (openai)"]["fix"]
    # The fix the doctor names works, through the CLI, and summary totals follow.
    before = json.loads(run_cli("summary", "--json").stdout)
    r = run_cli("precedence", "openai", "usage-api", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)[0]["shadowed_records"] == 15
    after = json.loads(run_cli("summary", "--json").stdout)
    want = _expected("usage-api")
    assert after["requests"] == before["requests"] - 15 and after["requests"] == sum(
        r.requests
        for r in ORG + CALLS
        if not (r.provider == "openai" and r.source != "openai-usage-api" and r.ts < D + 2 * DAY)
    )
    assert round(after["cost_usd"], 6) == round(sum(v[3] for v in want.values()), 6)
    checks = {c["check"]: c for c in json.loads(run_cli("doctor", "--json").stdout)}
    assert "double counting (openai)" not in checks and checks["sources (openai)"]["ok"] is True


def test_bad_precedence_input_is_a_one_line_error(db_url: str, run_cli) -> None:
    for args, words in (
        (("precedence", "google", "usage-api"), "openai, anthropic"),
        (("precedence", "openai", "sometimes"), "usage-api or all"),
        (("precedence", "openai"), "oaim precedence openai usage-api"),
    ):
        r = run_cli(*args)
        assert r.exit_code == 2, (args, r.stdout, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in r.stderr


def test_upgrade_backfills_the_days_each_usage_api_covers(db_url: str) -> None:
    Store(db_url, migrate_to="collectors_001_billed_sync_ratelimits").dispose()
    # Records written by the previous version, straight into its table.
    conn = sqlite3.connect(db_url.split(":///", 1)[1])
    assert "shadowed" not in {r[1] for r in conn.execute("PRAGMA table_info(usage_records)")}
    conn.executemany(
        "INSERT INTO usage_records (ts, bucket_seconds, provider, model, source, dedup_key, requests, "
        "input_tokens, output_tokens, cost_usd, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
        [
            (
                r.ts,
                r.bucket_seconds,
                r.provider,
                r.model,
                r.source,
                r.dedup_key,
                r.requests,
                r.input_tokens,
                r.output_tokens,
                r.cost_usd,
            )
            for r in ORG + CALLS[:6]
        ],
    )
    conn.commit()
    conn.close()
    store = Store(db_url)
    assert store.applied_now == step_names()[-1:]
    (st,) = [p for p in store.precedence_status() if p["provider"] == "openai"]
    assert (st["precedence"], st["covered_days"], st["double_counted_records"]) == ("all", 2, 6)
    store.set_precedence("openai", "usage-api")
    assert store.precedence_status()[0]["shadowed_records"] == 6
    assert_rollups_equal_rebuild(store)
    store.dispose()
