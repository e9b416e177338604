"""Columns that hold one value in a whole batch are written into the INSERT as literals instead of being
bound row by row (``split_constants``). What is stored must not change, down to SQLite's storage class
of each value, on every path of a write: all new, duplicates, usage-API coverage and precedence."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

from store_helpers import assert_rollups_equal_rebuild, make_records

from openai_monitor.domain import UsageRecord
from openai_monitor.store import Store
from openai_monitor.store.repo import (
    _CONSTANTS_MIN_ROWS,
    _RECORD_FIELDS,
    record_rows,
    rollup_deltas,
    split_constants,
    with_constants,
)

NOW = 1_750_000_000
IDX = {name: i for i, name in enumerate(_RECORD_FIELDS)}


def _records(n: int, prefix: str = "c", **same: object) -> list[UsageRecord]:
    """Varied records (make_records) with the fields in SAME set to one value in every record."""
    return [replace(r, **same) for r in make_records(n, seed=3, prefix=prefix)]


def _stored(db: Path) -> list[tuple]:
    """Every stored record with each value's storage class: 1 and 1.0 or '' and NULL must not swap."""
    conn = sqlite3.connect(db)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(usage_records)") if r[1] != "id"]
    expr = ", ".join(f"{c}, typeof({c})" for c in cols)
    rows = conn.execute(f"SELECT {expr} FROM usage_records ORDER BY dedup_key").fetchall()
    conn.close()
    return rows


def _table(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    rows = conn.execute(sql).fetchall()
    conn.close()
    return rows


def test_constant_columns_are_found_and_put_back() -> None:
    recs = _records(
        _CONSTANTS_MIN_ROWS,
        user="O'Brien; DROP TABLE usage_records; --",
        api_key_id="",
        session_id="s\x00nul",  # a NUL cannot be written as a literal: bound as usual
        cost_usd=0.125,  # a non-zero float stays bound: no decimal round trip through SQLite
        reasoning_tokens=0,
        tokens_estimated=True,
    )
    rows = record_rows(recs)
    slim, consts = split_constants(rows)
    assert consts[IDX["user"]] == "O'Brien; DROP TABLE usage_records; --"
    assert consts[IDX["api_key_id"]] == "" and consts[IDX["reasoning_tokens"]] == 0
    assert consts[IDX["tokens_estimated"]] is True
    assert IDX["session_id"] not in consts and IDX["cost_usd"] not in consts
    assert IDX["dedup_key"] not in consts and IDX["ts"] not in consts
    assert len(slim[0]) == len(rows[0]) - len(consts)
    assert with_constants(slim, consts) == rows
    # Too few rows to be worth it: unchanged.
    few = rows[: _CONSTANTS_MIN_ROWS - 1]
    assert split_constants(few) == (few, {})


def test_columns_that_vary_anywhere_are_kept() -> None:
    rows = record_rows(_records(_CONSTANTS_MIN_ROWS + 1, source="csv"))
    # One different value just past the middle (where no probe looks): counted, so not constant.
    mid = len(rows) // 2 + 1
    rows[mid] = rows[mid][: IDX["source"]] + ("other",) + rows[mid][IDX["source"] + 1 :]
    slim, consts = split_constants(rows)
    assert IDX["source"] not in consts
    assert with_constants(slim, consts) == rows


def _pair(tmp_path: Path) -> tuple[Store, Store, Path, Path]:
    a, b = tmp_path / "whole.db", tmp_path / "split.db"
    return Store(f"sqlite:///{a}"), Store(f"sqlite:///{b}"), a, b


def _both(whole: Store, split: Store, recs: list[UsageRecord]) -> tuple[tuple[int, int], tuple[int, int]]:
    rows = record_rows(recs)
    deltas = rollup_deltas(rows)
    slim, consts = split_constants(rows)
    assert consts, "the batch must have constant columns for this test to mean anything"
    return (
        whole.ingest_rows(rows, deltas=deltas, now=NOW),
        split.ingest_rows(slim, deltas=deltas, consts=consts, now=NOW),
    )


def test_split_rows_store_exactly_what_whole_rows_store(tmp_path: Path) -> None:
    whole, split, a, b = _pair(tmp_path)
    first = _records(600, source="csv", user="o'neil", cost_usd=0.0, cost_reported=True, service_tier="")
    assert _both(whole, split, first) == ((600, 0), (600, 0))
    # Half of the next batch is already stored: the duplicate path rebuilds whole rows for the rollups.
    again = first[300:] + _records(300, prefix="d", source="csv", user="o'neil", cost_usd=None)
    assert _both(whole, split, again) == ((300, 300), (300, 300))
    assert_rollups_equal_rebuild(split)
    whole.dispose()
    split.dispose()
    assert _stored(a) == _stored(b)
    assert _table(a, "SELECT * FROM rollup ORDER BY 1, 2, 3, 4, 5") == _table(
        b, "SELECT * FROM rollup ORDER BY 1, 2, 3, 4, 5"
    )
    users = _table(b, "SELECT DISTINCT user_name, typeof(cost_usd) FROM usage_records ORDER BY 2")
    assert users == [("o'neil", "null"), ("o'neil", "real")]


def test_usage_api_rows_with_constant_source_record_coverage_and_shadow(tmp_path: Path) -> None:
    whole, split, a, b = _pair(tmp_path)
    for st in (whole, split):
        st.set_precedence("openai", "usage-api")
    day = 1_748_736_000
    calls = [
        replace(r, provider="openai", source="proxy", ts=day + i * 60)
        for i, r in enumerate(make_records(300, seed=5, prefix="call"))
    ]
    org = [
        replace(r, provider="openai", source="openai-usage-api", bucket_seconds=86400, ts=day)
        for r in make_records(300, seed=6, prefix="org")
    ]
    first = _both(whole, split, calls)
    assert first[0] == first[1] == (300, 0)
    second = _both(whole, split, org)
    assert second[0] == second[1] == (300, 0)
    assert_rollups_equal_rebuild(split)
    whole.dispose()
    split.dispose()
    assert _stored(a) == _stored(b)
    coverage = "SELECT provider, day FROM source_coverage ORDER BY 1, 2"
    assert _table(b, coverage) == _table(a, coverage) == [("openai", day)]
    shadowed = "SELECT COUNT(*) FROM usage_records WHERE shadowed = 1"
    assert _table(b, shadowed) == _table(a, shadowed) == [(300,)]
