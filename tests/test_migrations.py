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


def test_blank_database_from_the_snapshot_equals_the_steps(tmp_path, monkeypatch) -> None:
    """A new SQLite file is created from sqlite_baseline.sql; its schema and step records must be what
    running every step builds (if this fails after adding a step: python -m openai_monitor.store.baseline)."""
    from openai_monitor.store import baseline

    steps_url = f"sqlite:///{tmp_path / 'steps.db'}"
    snap_url = f"sqlite:///{tmp_path / 'sub' / 'snap.db'}"
    Store(steps_url, migrate_to=step_names()[-1]).dispose()
    snap = Store(snap_url)
    assert snap.applied_now == step_names()
    snap.dispose()
    schemas = {}
    for label, url in (("steps", steps_url), ("snap", snap_url)):
        conn = sqlite3.connect(url.split(":///", 1)[1])
        schemas[label] = (
            baseline.schema_statements(conn),
            [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY rowid")],
            conn.execute("PRAGMA journal_mode").fetchone()[0],
        )
        conn.close()
    assert schemas["snap"] == schemas["steps"]
    assert schemas["snap"][1] == step_names() and schemas["snap"][2] == "wal"
    assert baseline.load()[0] == step_names()
    # A snapshot older than the steps is not used: the steps run instead.
    old = tmp_path / "old.sql"
    old.write_text(baseline.BASELINE.read_text().replace(" " + step_names()[-1], ""))
    assert baseline.load(old)[0] == step_names()[:-1]
    monkeypatch.setattr(baseline, "BASELINE", old)
    assert baseline.create_blank(f"sqlite:///{tmp_path / 'never.db'}") is None
    late = Store(f"sqlite:///{tmp_path / 'late.db'}")
    assert late.applied_now == step_names()  # every step ran, through SQLAlchemy
    late.dispose()
    conn = sqlite3.connect(tmp_path / "late.db")
    assert baseline.schema_statements(conn) == schemas["steps"][0]
    conn.close()


def test_store_opened_on_an_up_to_date_file_does_not_import_sqlalchemy(tmp_path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'u.db'}"
    code = (
        "import sys\n"
        "from openai_monitor.store import Store\n"
        "from openai_monitor.domain import UsageRecord\n"
        f"s = Store({url!r})\n"
        "s.ingest([UsageRecord(ts=1_750_000_000, provider='openai', model='gpt-4o', dedup_key='k1')])\n"
        "s.set_meta('x', 1)\n"
        "run = s.start_run('t', 1)\n"
        "s.finish_run(run, 2, inserted=1)\n"
        "print(s.count(), s.get_meta('x'), 'sqlalchemy' in sys.modules)\n"
    )
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert first.stdout.split() == ["1", "1", "False"]  # created from the snapshot
    assert second.stdout.split() == ["1", "1", "False"]  # the same key again: nothing added


def test_per_provider_user_rollups_are_folded_into_one_row_per_key(db_url: str) -> None:
    """Stores written before m003 kept user, project and api-key rollup rows per provider; the step folds
    them into one row per key (provider ''), equal to a rebuild, and reports are unchanged."""
    import sqlite3

    from sqlalchemy import text
    from store_helpers import assert_rollups_equal_rebuild

    from openai_monitor.domain import UsageRecord
    from openai_monitor.store import Store
    from openai_monitor.store import columns as s
    from openai_monitor.store.repo import _GRAINS

    t0 = 1_750_000_000 - 1_750_000_000 % 3600
    recs = [
        UsageRecord(
            t0 + i * 600,
            prov,
            model,
            f"k{i}",
            "csv",
            user="ann",
            project="web",
            input_tokens=10 + i,
            output_tokens=i,
            cost_usd=0.01 * i,
        )
        for i, (prov, model) in enumerate([("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5")] * 4)
    ]
    store = Store(db_url)
    store.ingest(recs)
    rows_now = store._run("SELECT COUNT(*) FROM rollup WHERE dim = 'user'")[0][0]
    assert rows_now == 2 + 1  # one row per hour (two hours) and per day, providers summed
    # The old layout: user/project/api_key rows per provider, as the code before m003 wrote them.
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM rollup WHERE dim <> 'model'"))
        for grain, width in _GRAINS.items():
            for dim, col in s.ROLLUP_DIMS.items():
                if dim == "model":
                    continue
                conn.execute(
                    text(
                        f"INSERT INTO rollup (grain, dim, bucket_ts, provider, key, records, requests, input_tokens, "
                        "output_tokens, cost_usd, cost_reported_usd, unpriced_records) "
                        f"SELECT '{grain}', '{dim}', ts - ts % {width}, provider, {col}, COUNT(*), SUM(requests), "
                        "SUM(input_tokens), SUM(output_tokens), SUM(COALESCE(cost_usd, 0)), 0, 0 FROM usage_records "
                        f"GROUP BY ts - ts % {width}, provider, {col}"
                    )
                )
        conn.execute(text("DELETE FROM _migrations WHERE name = 'm003_rollup_provider_on_model_rows_only'"))
    assert store._run("SELECT COUNT(*) FROM rollup WHERE dim = 'user'")[0][0] == 2 * rows_now
    store.dispose()
    store = Store(db_url)  # opening migrates
    with sqlite3.connect(db_url.split(":///", 1)[1]) as c:
        assert (
            c.execute("SELECT COUNT(*) FROM rollup WHERE dim <> 'model' AND provider <> ''").fetchone()[0]
            == 0
        )
        applied = {r[0] for r in c.execute("SELECT name FROM _migrations")}
    assert "m003_rollup_provider_on_model_rows_only" in applied
    assert_rollups_equal_rebuild(store)
    store.dispose()
