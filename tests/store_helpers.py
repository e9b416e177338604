"""Helpers shared by the store, migration and ingest tests: varied records, rollup snapshots and the
check that incrementally kept rollups equal a from-scratch rebuild."""

from __future__ import annotations

import math
import random
import sqlite3
from pathlib import Path

from openai_monitor.domain import UsageRecord
from openai_monitor.store import Store
from openai_monitor.store.repo import rebuild_rollups_sql

T0 = 1_748_736_000  # 2025-06-01T00:00:00Z

ROLLUP_SQL = (
    "SELECT grain, dim, bucket_ts, provider, key, records, requests, input_tokens, cached_input_tokens, "
    "cache_write_tokens, cache_write_1h_tokens, output_tokens, reasoning_tokens, cost_usd, "
    "cost_reported_usd, unpriced_records FROM rollup ORDER BY 1, 2, 3, 4, 5"
)


def make_records(n: int, seed: int, prefix: str = "k", *, unpriced_every: int = 7) -> list[UsageRecord]:
    """Varied records over three days: several providers, models, users, projects and keys; some with
    a billed cost, some with none (unpriced), some aggregate buckets with many requests."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        inp = rng.randrange(1, 50_000)
        cached = rng.randrange(0, inp // 2 + 1)
        write = rng.randrange(0, inp - cached + 1)
        out_t = rng.randrange(0, 5_000)
        cost = None if i % unpriced_every == 0 else round(rng.random() / 10, 8)
        out.append(
            UsageRecord(
                ts=T0 + rng.randrange(3 * 86400),
                provider=rng.choice(["openai", "anthropic", "google"]),
                model=rng.choice(["m-a", "m-b", "m-c", "m-d"]),
                dedup_key=f"{prefix}:{i}",
                source="test",
                user=rng.choice(["", "ann", "bob", "cy"]),
                project=rng.choice(["", "web", "etl"]),
                api_key_id=rng.choice(["", "key_1", "key_2"]),
                requests=rng.choice([1, 1, 1, 25]),
                input_tokens=inp,
                cached_input_tokens=cached,
                cache_write_tokens=write,
                cache_write_1h_tokens=write // 3,
                output_tokens=out_t,
                reasoning_tokens=out_t // 4,
                cost_usd=cost,
                cost_reported=cost is not None and i % 3 == 0,
            )
        )
    return out


def rollup_rows(conn) -> list[tuple]:
    return [tuple(r) for r in conn.exec_driver_sql(ROLLUP_SQL)]


def assert_same_rollups(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x[:13] == y[:13]  # keys and integer sums exactly
        assert x[15] == y[15]
        assert math.isclose(x[13], y[13], rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(x[14], y[14], rel_tol=1e-9, abs_tol=1e-9)


def assert_rollups_equal_rebuild(store: Store) -> list[tuple]:
    """The incrementally kept rollups equal a from-scratch rebuild (computed and rolled back)."""
    with store.engine.connect() as conn:
        trans = conn.begin()
        current = rollup_rows(conn)
        rebuild_rollups_sql(conn)
        rebuilt = rollup_rows(conn)
        trans.rollback()
    assert current, "no rollups at all"
    assert_same_rollups(current, rebuilt)
    return current


def snapshot(db_url: str) -> dict:
    """Everything an ingest may touch, read with plain sqlite3."""
    conn = sqlite3.connect(db_url.split(":///", 1)[1])
    try:
        return {
            "records": conn.execute("SELECT * FROM usage_records ORDER BY id").fetchall(),
            "rollup": conn.execute(ROLLUP_SQL).fetchall(),
            "progress": conn.execute("SELECT * FROM import_progress ORDER BY 1, 2").fetchall(),
        }
    finally:
        conn.close()


def db_snapshot(db: Path) -> dict:
    """What an import leaves in a database file, to compare two imports: the records (without their
    row id and import time), the rollups (float sums rounded: added in another order they differ in
    the last bits) and the file progress."""
    conn = sqlite3.connect(db)
    cols = [
        r[1] for r in conn.execute("PRAGMA table_info(usage_records)") if r[1] not in ("id", "imported_at")
    ]
    out = {
        "records": conn.execute(f"SELECT {', '.join(cols)} FROM usage_records ORDER BY dedup_key").fetchall(),
        "rollup": [
            tuple(round(v, 9) if isinstance(v, float) else v for v in r)
            for r in conn.execute("SELECT * FROM rollup ORDER BY grain, dim, bucket_ts, provider, key")
        ],
        "progress": conn.execute(
            'SELECT source, path, size, "offset", state FROM import_progress ORDER BY path'
        ).fetchall(),
    }
    conn.close()
    return out
