"""run_import groups small files into shared transactions: every file's progress is stored with its
records, a file that fails to read keeps the ones read before it, and replace-adapters stay per file."""

from __future__ import annotations

from pathlib import Path

import pytest

from openai_monitor.errors import InputError
from openai_monitor.service import ingest
from openai_monitor.service.ingest import run_import
from openai_monitor.sources import get_adapter
from openai_monitor.store import Store

HEADER = "timestamp,model,input_tokens,output_tokens\n"


class CountingStore(Store):
    """The real store, counting its ingest transactions."""

    calls = 0

    def ingest(self, records, **kw):  # type: ignore[no-untyped-def]
        self.calls += 1
        return super().ingest(records, **kw)


def _write(dir_: Path, name: str, rows: int, hour: int) -> Path:
    p = dir_ / name
    lines = [f"2025-05-01T{hour:02d}:{i % 60:02d}:00Z,gpt-4o,{10 + i},{i}\n" for i in range(rows)]
    p.write_text(HEADER + "".join(lines))
    return p


def test_small_files_share_transactions_and_all_progress_is_kept(db_url: str, tmp_path: Path) -> None:
    files = [_write(tmp_path, f"f{i:02d}.csv", 3, i) for i in range(12)]
    store = CountingStore(db_url)
    result = run_import(store, get_adapter("csv"), path=tmp_path, options={})
    assert result.inserted == 36 and result.files_read == 12
    assert store.calls == 1
    assert set(store.get_progress("csv")) == {str(p) for p in files}
    again = run_import(store, get_adapter("csv"), path=tmp_path, options={})
    assert again.files_unchanged == 12 and again.inserted == 0


def test_batches_are_capped_by_files_and_records(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "BATCH_FILES", 4)
    monkeypatch.setattr(ingest, "BATCH_RECORDS", 10)
    for i in range(10):
        _write(tmp_path, f"f{i:02d}.csv", 2, i)
    _write(tmp_path, "z_big.csv", 25, 20)
    store = CountingStore(db_url)
    result = run_import(store, get_adapter("csv"), path=tmp_path, options={})
    assert result.inserted == 45
    # A batch closes at 4 files or 10 records: f0-f3, f4-f7, then f8 + f9 + the big file's first 6
    # records, its next 10, and its last 5 with its progress.
    assert store.calls == 5
    assert len(store.get_progress("csv")) == 11


def test_a_failing_file_keeps_the_files_read_before_it(db_url: str, tmp_path: Path) -> None:
    good = [_write(tmp_path, f"a{i}.csv", 2, i) for i in range(3)]
    (tmp_path / "b_bad.csv").write_text("when,what\n1,2\n")
    store = CountingStore(db_url)
    with pytest.raises(InputError):
        run_import(store, get_adapter("csv"), path=tmp_path, options={})
    assert store.count() == 6
    assert set(store.get_progress("csv")) == {str(p) for p in good}
