"""The parsing-process import path gives exactly what the in-process path gives (records, rollups, file
progress, counts, errors), keeps each batch atomic, and is only used for large files."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

import pytest
from store_helpers import db_snapshot

from openai_monitor.config import load_settings
from openai_monitor.errors import InputError, StoreError
from openai_monitor.service import ingest, parallel_ingest
from openai_monitor.service.ingest import run_import
from openai_monitor.service.pricing import make_pricer
from openai_monitor.sources import get_adapter
from openai_monitor.store import Store

HEADER = "id,timestamp,model,user,input_tokens,output_tokens,cost_usd\n"


def _csv(path: Path, first: int, n: int, dup_every: int = 0, bad_every: int = 0) -> Path:
    lines = []
    for i in range(first, first + n):
        cost = f"{i / 1e5:.5f}" if i % 5 == 0 else ""
        model = "no-such-model-x" if i % 7 == 0 else "gpt-4o"
        lines.append(
            f"r{i},2025-05-{1 + i % 20:02d}T{i % 24:02d}:00:00Z,{model},u{i % 3},{10 + i},{i},{cost}\n"
        )
        if dup_every and i % dup_every == 0:
            lines.append(lines[-1])  # the same id again: a duplicate within the batch
        if bad_every and i % bad_every == 0:
            lines.append(f"r{i}b,not-a-time,gpt-4o,u1,1,1,\n")
    path.write_text(HEADER + "".join(lines))
    return path


def _rebuilt_rollup(db: Path) -> list:
    """The rollups recomputed from the raw rows with the store's own SQL (floats rounded)."""
    from sqlalchemy import create_engine

    from openai_monitor.store.repo import rebuild_rollups_sql

    eng = create_engine(f"sqlite:///{db}")
    with eng.begin() as conn:
        rebuild_rollups_sql(conn)
    eng.dispose()
    return db_snapshot(db)["rollup"]


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny batches and no size floor, so a few thousand rows cross several transactions in the worker.
    monkeypatch.setattr(ingest, "BATCH_RECORDS", 700)
    monkeypatch.setattr(parallel_ingest, "MIN_BYTES", 0)


def _both(tmp_path: Path, files: list[Path], pre: list[Path] = ()) -> tuple[dict, dict, Path]:
    """Import FILES (after PRE, in-process) into two databases: in-process and through the worker."""
    adapter = get_adapter("csv")
    settings = load_settings()
    out = {}
    for label in ("serial", "worker"):
        db = tmp_path / f"{label}.db"
        store = Store(f"sqlite:///{db}")
        pricer = make_pricer(settings)
        for p in pre:
            run_import(store, adapter, files=[p], options={}, pricer=pricer, parallel=False)
        kwargs = (
            {"parallel": False} if label == "serial" else {"pricer_factory": partial(make_pricer, settings)}
        )
        res = run_import(store, adapter, files=files, options={}, pricer=pricer, now=1_750_000_000, **kwargs)
        store.dispose()
        d = res.as_dict()
        d.pop("seconds")
        out[label] = (d, db_snapshot(db))
    return out["serial"], out["worker"], tmp_path / "worker.db"


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_worker_path_equals_in_process_with_duplicates_and_malformed_lines(
    tmp_path: Path, small_batches: None, start: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openai_monitor.service import fork_ingest

    # fork: from a single-threaded process (a CLI import); spawn: a fresh interpreter (the daemon's threads).
    monkeypatch.setattr(fork_ingest, "_threads", lambda: 1 if start == "fork" else 2)
    monkeypatch.setattr(parallel_ingest, "RAMP_FROM", 100)  # batches of 100, 125, 156 ... 700 rows
    src = tmp_path / "src"
    src.mkdir()
    pre = [_csv(src / "a_pre.csv", 0, 900)]
    files = [_csv(src / "b.csv", 500, 3000, dup_every=11, bad_every=97), _csv(src / "c.csv", 3400, 200)]
    threads = threading.active_count()
    (res_s, db_s), (res_w, db_w), worker_db = _both(tmp_path, files, pre)
    assert threading.active_count() == threads
    assert res_w == res_s
    # Other batch boundaries than in-process: float sums may differ in the last bits, nothing else.
    assert db_w["records"] == db_s["records"] and db_w["progress"] == db_s["progress"]
    assert db_w["rollup"] == db_s["rollup"]
    # The input really has all the cases: malformed lines, duplicates within the file and against the
    # earlier import, unpriced models, and more records than one batch.
    assert res_w["skipped_lines"] > 0 and "not-a-time" in " ".join(res_w["errors"])
    assert res_w["duplicates"] > 400 and res_w["unpriced"] > 0 and res_w["inserted"] > 2 * 700
    assert db_w["rollup"] == _rebuilt_rollup(worker_db)


def test_worker_path_is_used_for_big_files_only(tmp_path: Path) -> None:
    f = _csv(tmp_path / "x.csv", 0, 10)
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    factory = partial(make_pricer, load_settings())
    big = parallel_ingest.MIN_BYTES
    assert parallel_ingest.use_worker(store, get_adapter("csv"), big, None, factory, True)
    assert not parallel_ingest.use_worker(store, get_adapter("csv"), big - 1, None, factory, True)
    assert not parallel_ingest.use_worker(store, get_adapter("csv"), big, None, factory, False)
    # a caller's Pricer without a factory cannot be shipped: in-process
    assert not parallel_ingest.use_worker(store, get_adapter("csv"), big, object(), None, True)
    assert not parallel_ingest.use_worker(store, get_adapter("gemini"), big, None, factory, True)
    res = run_import(store, get_adapter("csv"), files=[f], options={}, pricer_factory=factory)
    assert res.inserted == 10


def test_a_failing_batch_leaves_the_database_as_before_it(
    tmp_path: Path, small_batches: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "GROUP_ROWS", 1400)  # the writer joins the worker's batches two by two
    f = _csv(tmp_path / "big.csv", 0, 3000)
    db = tmp_path / "crash.db"
    store = Store(f"sqlite:///{db}")
    # A real failure inside the second transaction: SQLite aborts the insert of one row of it.
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER boom BEFORE INSERT ON usage_records WHEN NEW.dedup_key = 'csv:id:r1500' "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    factory = partial(make_pricer, load_settings())
    threads = threading.active_count()
    with pytest.raises(StoreError, match="disk on fire"):
        run_import(store, get_adapter("csv"), files=[f], options={}, pricer_factory=factory)
    # The thread receiving batches ahead of the writer is gone too (a later import may fork again).
    assert threading.active_count() == threads
    # Batches of 700 written two per transaction: the first two committed (no progress yet: the file
    # was not finished), the next two (r1400-r2799) left nothing behind, and the rollups equal the rows that are there.
    assert store.count() == 1400
    assert store.get_progress("csv") == {}
    assert db_snapshot(db)["rollup"] == _rebuilt_rollup(db)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER boom")
    again = run_import(store, get_adapter("csv"), files=[f], options={}, pricer_factory=factory)
    assert again.inserted == 1600 and again.duplicates == 1400 and store.count() == 3000
    store.dispose()
    assert db_snapshot(db)["rollup"] == _rebuilt_rollup(db)


def test_a_file_failing_in_the_worker_keeps_the_files_before_it(tmp_path: Path, small_batches: None) -> None:
    good = [_csv(tmp_path / f"a{i}.csv", i * 100, 100) for i in range(3)]
    bad = tmp_path / "b_bad.csv"
    bad.write_text("when,what\n1,2\n")
    store = Store(f"sqlite:///{tmp_path / 'f.db'}")
    with pytest.raises(InputError) as worker_err:
        run_import(
            store,
            get_adapter("csv"),
            files=[*good, bad],
            options={},
            pricer_factory=partial(make_pricer, load_settings()),
        )
    assert store.count() == 300
    assert set(store.get_progress("csv")) == {str(p) for p in good}
    serial = Store(f"sqlite:///{tmp_path / 's.db'}")
    with pytest.raises(InputError) as serial_err:
        run_import(serial, get_adapter("csv"), files=[*good, bad], options={}, parallel=False)
    assert str(worker_err.value) == str(serial_err.value)
