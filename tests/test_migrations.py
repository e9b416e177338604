"""Schema migrations: from a blank database, from the previous schema (rollups backfilled), and
re-opening applies nothing."""

from __future__ import annotations

import sqlite3

from store_helpers import assert_rollups_equal_rebuild

from openai_monitor.store import Store
from openai_monitor.store.migrations import step_names


def _tables(db_url: str) -> set[str]:
    conn = sqlite3.connect(db_url.split(":///", 1)[1])
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def test_blank_database_gets_every_step_once(db_url: str) -> None:
    store = Store(db_url)
    assert store.applied_now == step_names()
    assert {"usage_records", "rollup", "import_progress", "import_runs", "meta_kv", "_migrations"} <= _tables(
        db_url
    )
    store.dispose()
    again = Store(db_url)
    assert again.applied_now == []
    with again.engine.connect() as conn:
        names = [r[0] for r in conn.exec_driver_sql("SELECT name FROM _migrations ORDER BY rowid")]
    assert names == step_names()


def test_previous_schema_is_upgraded_and_rollups_backfilled(db_url: str) -> None:
    old = Store(db_url, migrate_to="m001_initial")
    assert old.applied_now == ["m001_initial"]
    old.dispose()
    assert "rollup" not in _tables(db_url)

    # Rows written by the previous version, straight into the raw table.
    conn = sqlite3.connect(db_url.split(":///", 1)[1])
    rows = [
        # ts, provider, model, user, dedup_key, input, cached, output, cost, reported
        (1_748_736_000 + 60, "openai", "gpt-4o", "ann", "old:1", 1000, 200, 50, 0.01, 0),
        (1_748_736_000 + 4000, "openai", "gpt-4o", "bob", "old:2", 3000, 0, 70, 0.02, 1),
        (1_748_736_000 + 90_000, "anthropic", "claude-x", "ann", "old:3", 500, 100, 5, None, 0),
    ]
    conn.executemany(
        "INSERT INTO usage_records (ts, provider, model, user_name, dedup_key, input_tokens, "
        "cached_input_tokens, output_tokens, cost_usd, cost_reported, imported_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
        rows,
    )
    conn.commit()
    conn.close()

    store = Store(db_url)
    assert store.applied_now == step_names()[1:]
    assert store.count() == 3
    assert_rollups_equal_rebuild(store)
    with store.engine.connect() as conn:
        day = dict(
            (tuple(r[:2]), tuple(r[2:]))
            for r in conn.exec_driver_sql(
                "SELECT bucket_ts, key, records, input_tokens, output_tokens, cost_usd, cost_reported_usd, "
                "unpriced_records FROM rollup WHERE grain = 'd' AND dim = 'model'"
            )
        )
        hours = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM rollup WHERE grain = 'h' AND dim = 'user'"
        ).scalar()
    assert day == {
        (1_748_736_000, "gpt-4o"): (2, 4000, 120, 0.03, 0.02, 0),
        (1_748_822_400, "claude-x"): (1, 500, 5, 0.0, 0.0, 1),
    }
    assert hours == 3  # ann@00h, bob@01h, ann@next day 01h
    # New records land on top of the backfilled rollups.
    from openai_monitor.domain import UsageRecord

    store.ingest([UsageRecord(ts=1_748_736_000 + 100, provider="openai", model="gpt-4o", dedup_key="new:1")])
    assert_rollups_equal_rebuild(store)
    store.dispose()
    assert Store(db_url).applied_now == []
