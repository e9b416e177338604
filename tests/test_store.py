"""Usage store: idempotent ingestion, rollups that always equal a rebuild from the raw rows, atomic
batches, unknown models priced retroactively, one token semantics across providers."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
from store_helpers import (
    T0,
    assert_rollups_equal_rebuild,
    assert_same_rollups,
    make_records,
    snapshot,
)

from openai_monitor.domain import FileProgress, UsageRecord
from openai_monitor.errors import StoreError
from openai_monitor.store import Store
from openai_monitor.store import repo as repo_mod


def test_same_records_twice_adds_nothing(db_url: str) -> None:
    store = Store(db_url)
    small = make_records(300, seed=1, prefix="small")  # below the vectorised threshold
    big = make_records(repo_mod._NUMPY_MIN_ROWS + 500, seed=2, prefix="big")
    assert store.ingest(small) == (300, 0)
    assert store.ingest(big) == (len(big), 0)
    before = snapshot(db_url)
    assert store.ingest(small) == (0, 300)
    assert store.ingest(big) == (0, len(big))
    assert snapshot(db_url) == before
    assert store.count() == 300 + len(big)
    assert_rollups_equal_rebuild(store)


def test_rollup_totals_match_the_records(db_url: str) -> None:
    """Independent of the rebuild SQL: the day/model rollup sums equal sums taken in Python."""
    store = Store(db_url)
    recs = make_records(repo_mod._NUMPY_MIN_ROWS + 100, seed=3)
    store.ingest(recs)
    expected: dict[tuple, list] = {}
    for r in recs:
        k = (r.ts - r.ts % 86400, r.provider, r.model)
        e = expected.setdefault(k, [0, 0, 0, 0.0, 0])
        e[0] += 1
        e[1] += r.input_tokens
        e[2] += r.output_tokens
        e[3] += r.cost_usd or 0.0
        e[4] += r.cost_usd is None
    with store.engine.connect() as conn:
        got = {
            (b, p, k): [n, i, o, c, u]
            for b, p, k, n, i, o, c, u in conn.exec_driver_sql(
                "SELECT bucket_ts, provider, key, records, input_tokens, output_tokens, cost_usd, "
                "unpriced_records FROM rollup WHERE grain = 'd' AND dim = 'model'"
            )
        }
    assert got.keys() == expected.keys()
    for k, e in expected.items():
        assert got[k][:3] == e[:3] and got[k][4] == e[4]
        assert math.isclose(got[k][3], e[3], rel_tol=1e-9, abs_tol=1e-12)


def test_mixed_batches_duplicates_and_replace_keep_rollups_exact(db_url: str) -> None:
    store = Store(db_url)
    big = make_records(repo_mod._NUMPY_MIN_ROWS + 1000, seed=4, prefix="a")
    store.ingest(big)
    store.ingest(make_records(40, seed=5, prefix="b"))
    # Partly new, partly stored, and one key twice within the batch: the first copy is the stored one.
    fresh = make_records(60, seed=6, prefix="c")
    twin = make_records(1, seed=99, prefix="c")[0]
    twin.input_tokens += 1_000_000
    mixed = big[:30] + fresh + [twin]
    assert store.ingest(mixed) == (60, 31)
    with store.engine.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT input_tokens FROM usage_records WHERE dedup_key = 'c:0'"
        ).scalar()
    assert stored == fresh[0].input_tokens
    assert_rollups_equal_rebuild(store)
    # A large mixed batch goes through the vectorised path with the stored rows picked out.
    many = make_records(repo_mod._NUMPY_MIN_ROWS + 10, seed=7, prefix="d")
    assert store.ingest(big[:500] + many) == (len(many), 500)
    assert_rollups_equal_rebuild(store)
    # Replace: later copies win, nothing is counted twice.
    n = store.count()
    changed = make_records(25, seed=4, prefix="a")
    for r in changed:
        r.output_tokens += 1000
        r.reasoning_tokens = 0
    assert store.ingest(changed, replace=True) == (25, 0)
    assert store.count() == n
    with store.engine.connect() as conn:
        got = conn.exec_driver_sql("SELECT output_tokens FROM usage_records WHERE dedup_key = 'a:3'").scalar()
    assert got == changed[3].output_tokens
    assert_rollups_equal_rebuild(store)


def test_vectorised_and_dict_rollup_deltas_agree() -> None:
    rows = [repo_mod._ROW_OF(r) for r in make_records(3000, seed=8)]
    a = sorted(repo_mod._rollup_deltas_np(rows))
    b = sorted(repo_mod._rollup_deltas_py(rows))
    assert_same_rollups(a, b)


def _progress(path: str, offset: int) -> FileProgress:
    return FileProgress(source="test", path=path, size=offset, mtime_ns=1, offset=offset, inode=1)


def test_failing_record_rolls_back_the_whole_batch(db_url: str) -> None:
    store = Store(db_url)
    store.ingest(make_records(100, seed=9, prefix="x"), progress=[_progress("/f", 10)])
    before = snapshot(db_url)
    batch = make_records(50, seed=10, prefix="y")
    batch[40].model = None  # NOT NULL: the insert fails after 40 rows went in
    with pytest.raises(StoreError, match="rolled back"):
        store.ingest(batch, progress=[_progress("/f", 99), _progress("/g", 5)])
    assert snapshot(db_url) == before


def test_exception_inside_the_records_iterator_leaves_nothing(db_url: str) -> None:
    store = Store(db_url)
    store.ingest(make_records(100, seed=11, prefix="x"), progress=[_progress("/f", 10)])
    before = snapshot(db_url)

    def records():
        yield from make_records(30, seed=12, prefix="z")
        raise OSError("disk went away while reading")

    with pytest.raises(OSError):
        store.ingest(records(), progress=[_progress("/f", 50)])
    assert snapshot(db_url) == before


@pytest.mark.parametrize("size", [50, repo_mod._NUMPY_MIN_ROWS + 50])
def test_failing_rollup_step_rolls_back_the_inserts(
    db_url: str, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    store = Store(db_url)
    store.ingest(make_records(100, seed=13, prefix="x"), progress=[_progress("/f", 10)])
    before = snapshot(db_url)

    def boom(rows):
        raise MemoryError("rollup step failed")

    monkeypatch.setattr(repo_mod, "_rollup_deltas", boom)
    with pytest.raises(MemoryError):
        store.ingest(make_records(size, seed=14, prefix="w"), progress=[_progress("/f", 77)])
    assert snapshot(db_url) == before
    monkeypatch.undo()
    # The same batch goes in cleanly afterwards: nothing half-written blocks it.
    assert store.ingest(make_records(size, seed=14, prefix="w")) == (size, 0)
    assert_rollups_equal_rebuild(store)


def test_unknown_model_is_unpriced_then_priced_retroactively(db_url: str, run_cli) -> None:
    from openai_monitor.config import load_settings
    from openai_monitor.service.ingest import ingest_records
    from openai_monitor.service.pricing import make_pricer

    store = Store(db_url)
    recs = [
        UsageRecord(
            ts=T0 + i * 3600,
            provider="other",
            model="acme-llm-9000",
            dedup_key=f"acme:{i}",
            input_tokens=2_000_000,
            output_tokens=500_000,
        )
        for i in range(3)
    ]
    known = UsageRecord(
        ts=T0, provider="openai", model="gpt-4o", dedup_key="known:1", input_tokens=1000, output_tokens=10
    )
    ingest_records(store, [*recs, known], pricer=make_pricer(load_settings()))
    assert store.unpriced_models() == [("other", "acme-llm-9000", 3)]
    with store.engine.connect() as conn:
        assert (
            conn.exec_driver_sql(
                "SELECT SUM(unpriced_records) FROM rollup WHERE grain='d' AND dim='model'"
            ).scalar()
            == 3
        )
        assert (
            conn.exec_driver_sql("SELECT cost_usd FROM usage_records WHERE dedup_key='acme:0'").scalar()
            is None
        )

    result = run_cli(
        "pricing", "set", "acme-llm-9000", "--input", "1.5", "--output", "4", "--provider", "other"
    )
    assert result.exit_code == 0, result.stderr
    assert "3 stored record(s) priced" in result.stdout
    assert store.unpriced_models() == []
    # 2M input at 1.5 USD/M + 0.5M output at 4 USD/M = 3 + 2 = 5 USD per record.
    with store.engine.connect() as conn:
        costs = [
            r[0]
            for r in conn.exec_driver_sql("SELECT cost_usd FROM usage_records WHERE model='acme-llm-9000'")
        ]
        roll = conn.exec_driver_sql(
            "SELECT SUM(cost_usd), SUM(unpriced_records) FROM rollup "
            "WHERE grain='d' AND dim='model' AND key='acme-llm-9000'"
        ).one()
    assert costs == [pytest.approx(5.0)] * 3
    assert roll[0] == pytest.approx(15.0) and roll[1] == 0
    assert_rollups_equal_rebuild(store)


def _claude_line(msg_id: str, ts: str) -> str:
    return json.dumps(
        {
            "type": "assistant",
            "cwd": "/home/dev/proj",
            "sessionId": "s1",
            "requestId": f"req_{msg_id}",
            "timestamp": ts,
            "uuid": f"u-{msg_id}",
            "message": {
                "id": msg_id,
                "role": "assistant",
                "model": "claude-sonnet-4-20250514",
                "usage": {
                    "input_tokens": 100,
                    "cache_creation_input_tokens": 200,
                    "cache_read_input_tokens": 1000,
                    "output_tokens": 50,
                },
            },
        }
    )


def test_claude_and_openai_tokens_are_stored_with_one_meaning(tmp_path: Path, run_cli, db_url: str) -> None:
    """Claude reports input without cache tokens, OpenAI with them: stored alike (domain.py)."""
    logs = tmp_path / "claude" / "proj"
    logs.mkdir(parents=True)
    (logs / "s1.jsonl").write_text(_claude_line("msg_1", "2025-06-01T10:00:00.000Z") + "\n")
    csv_file = tmp_path / "openai.csv"
    # The same call as OpenAI reports it: prompt_tokens include the 1000 cached tokens and the 200
    # written to the cache.
    csv_file.write_text(
        "timestamp,provider,model,input_tokens,cached_tokens,cache_write_tokens,output_tokens\n"
        "2025-06-01T10:00:00Z,openai,gpt-4o,1300,1000,200,50\n"
    )
    assert run_cli("import", "claude-code", "--path", str(tmp_path / "claude")).exit_code == 0
    assert run_cli("import", "csv", str(csv_file)).exit_code == 0
    conn = sqlite3.connect(db_url.split(":///", 1)[1])
    rows = conn.execute(
        "SELECT provider, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens "
        "FROM usage_records ORDER BY provider"
    ).fetchall()
    conn.close()
    assert rows == [("anthropic", 1300, 1000, 200, 50), ("openai", 1300, 1000, 200, 50)]


def test_new_store_has_16k_pages_and_an_existing_one_keeps_its_own(db_url: str, tmp_path: Path) -> None:
    """A new store is created with 16 KiB pages; a store made with SQLite's 4 KiB default (an older
    openai-monitor) keeps them, and reads and writes as before."""
    store = Store(db_url)
    assert store.ingest(make_records(50, seed=3)) == (50, 0)
    path = db_url.split(":///", 1)[1]
    assert sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0] == 16384
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.execute("PRAGMA page_size=4096")
    conn.execute("CREATE TABLE t (x)")  # the file now exists with 4 KiB pages
    conn.commit()
    conn.close()
    old_store = Store(f"sqlite:///{old}")
    assert old_store.ingest(make_records(50, seed=4)) == (50, 0)
    assert old_store.count() == 50
    assert sqlite3.connect(old).execute("PRAGMA page_size").fetchone()[0] == 4096
