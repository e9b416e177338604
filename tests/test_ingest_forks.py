"""Log directories read by forked parsing processes give exactly what the in-process import gives
(records, rollups, file progress, counts, malformed-line reports), with cross-file duplicates of one
project resolved as in-process; a failing file keeps what was read before it; threads disable forking."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
from helpers_common import gen_claude_logs
from store_helpers import db_snapshot

from openai_monitor.config import load_settings
from openai_monitor.service import fork_ingest
from openai_monitor.service.ingest import _stat, run_import
from openai_monitor.service.pricing import make_pricer
from openai_monitor.sources import get_adapter
from openai_monitor.sources.claude_code import ClaudeCodeAdapter
from openai_monitor.store import Store


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 MB of generated Claude Code logs with many resumed sessions and subagents (cross-file copies),
    plus malformed lines in two files."""
    out = gen_claude_logs(
        tmp_path_factory.mktemp("forklogs"),
        "4MB",
        "--continue-p",
        "0.6",
        "--subagent-p",
        "0.5",
        "--projects",
        "6",
    )
    files = sorted((out / ".claude" / "projects").rglob("*.jsonl"))
    with open(files[3], "ab") as fh:
        fh.write(b'{"type":"assistant","message":{"usage":{"input_tokens": 5\n')
    with open(files[-2], "ab") as fh:
        fh.write(
            b'{"type":"assistant","message":{"id":"m-neg","model":"claude-x","usage":{"input_tokens":-3,'
            b'"output_tokens":1}},"timestamp":"2025-06-01T00:00:00Z"}\n'
        )
    return out


@pytest.fixture
def forked(monkeypatch: pytest.MonkeyPatch) -> None:
    # No size floor, small batches, and two workers even on a one-core machine (correctness only).
    monkeypatch.setattr(fork_ingest, "MIN_BYTES", 0)
    monkeypatch.setattr(fork_ingest, "BATCH_FILES", 7)
    monkeypatch.setattr(fork_ingest, "_cpus", lambda: 2)
    # Earlier tests of the suite may leave idle threads behind (servers, buses); a real CLI import runs
    # single-threaded. The threaded case is tested on its own below.
    monkeypatch.setattr(fork_ingest, "_threads", lambda: 1)


def _import(root: Path, db: Path, parallel: bool, factory: bool = False) -> dict:
    """``factory``: the Pricer is built by each parsing process (as the CLI's import does), not here."""
    store = Store(f"sqlite:///{db}")
    priced = {"pricer_factory": make_pricer} if factory else {"pricer": make_pricer(load_settings())}
    try:
        res = run_import(
            store,
            get_adapter("claude-code"),
            path=root,
            parallel=parallel,
            now=1_750_000_000,
            **priced,
        )
    finally:
        store.dispose()
    d = res.as_dict()
    d.pop("seconds")
    d["errors"] = sorted(d["errors"])  # the workers' reports arrive interleaved
    return d


def test_forked_import_equals_in_process(generated: Path, tmp_path: Path, forked: None) -> None:
    adapter = ClaudeCodeAdapter()
    files = adapter.discover(generated)
    todo = [(p, 0, {}) for p in files]
    stats = {p: _stat(p) for p in files}
    assert fork_ingest.worker_count(adapter, todo, stats, True) == 2
    parts = fork_ingest.shards(adapter, todo, stats)
    # A shard is one project directory, in the import's file order; together they hold every file once;
    # the largest (bytes) come first.
    keys = [{adapter.shard_key(p) for p, _, _ in part} for part in parts]
    assert all(len(k) == 1 for k in keys) and len(set.union(*keys)) == len(parts) > 2
    assert sorted(p for part in parts for p, _, _ in part) == sorted(files)
    assert all(
        [p for p, _, _ in part] == [p for p in files if adapter.shard_key(p) in k]
        for part, k in zip(parts, keys)
    )
    sizes = [sum(p.stat().st_size for p, _, _ in part) for part in parts]
    assert sizes == sorted(sizes, reverse=True)

    serial = _import(generated, tmp_path / "serial.db", parallel=False)
    fork = _import(generated, tmp_path / "fork.db", parallel=True)
    assert fork == serial
    assert db_snapshot(tmp_path / "fork.db") == db_snapshot(tmp_path / "serial.db")
    built = _import(generated, tmp_path / "built.db", parallel=True, factory=True)
    assert built == serial
    assert db_snapshot(tmp_path / "built.db") == db_snapshot(tmp_path / "serial.db")
    # More project directories than the queue holds: they are merged into MAX_SHARDS shards.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fork_ingest, "MAX_SHARDS", 2)
        merged = _import(generated, tmp_path / "merged.db", parallel=True)
    assert merged == serial
    assert db_snapshot(tmp_path / "merged.db") == db_snapshot(tmp_path / "serial.db")
    # The input had the cases that matter: copies across files, malformed lines, several batches.
    assert serial["skipped_lines"] == 2 and serial["inserted"] > 1000
    assert serial["files_read"] > 3 * fork_ingest.BATCH_FILES
    # Importing again through the workers adds nothing and reads nothing.
    again = _import(generated, tmp_path / "fork.db", parallel=True)
    assert again["inserted"] == 0 and again["files_read"] == 0


def test_a_failing_file_keeps_what_its_worker_read_before(
    generated: Path, tmp_path: Path, forked: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "home"
    shutil.copytree(generated, root)
    files = ClaudeCodeAdapter().discover(root)
    bad = files[len(files) // 2]
    real_read = ClaudeCodeAdapter.read

    def read(self, path, **kw):  # noqa: ANN001, ANN202 - the adapter's signature
        if path == bad:
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(self, path, **kw)

    monkeypatch.setattr(ClaudeCodeAdapter, "read", read)
    db = tmp_path / "f.db"
    with pytest.raises(PermissionError):
        _import(root, db, parallel=True)
    done = db_snapshot(db)
    stored = {p for _, p, *_ in done["progress"]}
    assert str(bad) not in stored and stored  # some files were committed, not the failing one
    # What is stored is consistent: rollups equal the raw rows, recomputed.
    conn = sqlite3.connect(db)
    raw = conn.execute("SELECT COUNT(*), SUM(input_tokens), SUM(output_tokens) FROM usage_records").fetchone()
    for grain, dim, *sums in conn.execute(
        "SELECT grain, dim, SUM(records), SUM(input_tokens), SUM(output_tokens) FROM rollup GROUP BY 1, 2"
    ):
        assert tuple(sums) == raw, (grain, dim)
    conn.close()
    # Without the failure the next import completes, equal to an in-process import.
    monkeypatch.setattr(ClaudeCodeAdapter, "read", real_read)
    _import(root, db, parallel=True)
    _import(root, tmp_path / "s.db", parallel=False)
    assert db_snapshot(db)["records"] == db_snapshot(tmp_path / "s.db")["records"]


def test_no_fork_from_a_threaded_process_or_for_small_imports(
    generated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = ClaudeCodeAdapter()
    files = adapter.discover(generated)
    todo = [(p, 0, {}) for p in files]
    stats = {p: _stat(p) for p in files}
    monkeypatch.setattr(fork_ingest, "_cpus", lambda: 2)
    assert fork_ingest.worker_count(adapter, todo, stats, True) == 0  # 4 MB < MIN_BYTES
    monkeypatch.setattr(fork_ingest, "MIN_BYTES", 0)
    before = threading.active_count()
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert fork_ingest._threads() == before + 1 > 1
        assert fork_ingest.worker_count(adapter, todo, stats, True) == 0
    finally:
        stop.set()
        t.join()
    if before == 1:
        assert fork_ingest.worker_count(adapter, todo, stats, True) == 2
    # Adapters without a shard key (files that replace each other's records) never fork.
    assert fork_ingest.worker_count(get_adapter("gemini"), todo, stats, True) == 0


def test_the_progress_bar_leaves_the_import_single_threaded(
    generated: Path, oaim_home: Path, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's progress bar must not draw from a thread of its own: the import forks its parsers only
    from a single-threaded process, so a refresh thread sent every interactive import to one process."""
    from openai_monitor.cli import core
    from openai_monitor.service import ingest

    monkeypatch.setattr(core, "BAR_BYTES", 0)  # the bar for these 4 MB too
    real = ingest.run_import
    seen: dict[str, int] = {}
    before = threading.active_count()

    def probe(*args, **kwargs):
        seen["threads"] = threading.active_count()
        seen["workers"] = fork_ingest.worker_count(
            ClaudeCodeAdapter(),
            [(p, 0, {}) for p in kwargs["files"]],
            {p: _stat(p) for p in kwargs["files"]},
            True,
        )
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest, "run_import", probe)
    monkeypatch.setattr(fork_ingest, "MIN_BYTES", 0)
    monkeypatch.setattr(fork_ingest, "_cpus", lambda: 2)
    res = run_cli("import", "claude-code", "--path", str(generated))
    assert res.exit_code == 0, res.stderr
    assert seen["threads"] == before  # the bar is up (BAR_BYTES 0) and no thread was started for it
    if before == 1:  # a suite's earlier tests may leave idle threads behind; alone, the import forks
        assert seen["workers"] == 2
    assert "record(s) found" in res.stdout


def test_work_queue_hands_out_each_shard_once() -> None:
    """Workers take shard numbers from one pipe; together they get each shard once, in queue order."""
    import os

    parts = [[(Path(f"s{i}-f{j}"), 0, {}) for j in range(i % 3 + 1)] for i in range(700)]
    fd = fork_ingest.work_queue(len(parts))
    try:
        first = fork_ingest.claimed(fd, parts)
        second = fork_ingest.claimed(fd, parts)
        got = [next(first)[0], next(second)[0]]  # two readers sharing the queue
        got += [p for p, _, _ in first] + [p for p, _, _ in second]
    finally:
        os.close(fd)
    assert sorted(got) == sorted(p for part in parts for p, _, _ in part)
    assert got[:2] == [Path("s0-f0"), Path("s1-f0")]
