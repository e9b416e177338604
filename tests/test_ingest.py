"""run_import end to end through the CLI with the real adapters: Claude Code logs from the shared
generator, incremental re-imports, history that outlives its source files, bad input."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from helpers_common import gen_claude_logs


@pytest.fixture(scope="module")
def generated_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gen_claude_logs(tmp_path_factory.mktemp("claude_gen"), "1MB")


@pytest.fixture
def logs(generated_logs: Path, tmp_path: Path) -> Path:
    """A private copy of the generated tree (tests append to, rewrite and delete its files)."""
    dst = tmp_path / "fakehome"
    shutil.copytree(generated_logs, dst)
    return dst


def _files(root: Path) -> list[Path]:
    return sorted((root / ".claude" / "projects").rglob("*.jsonl"))


def _import(run_cli, root: Path) -> dict:
    res = run_cli("import", "claude-code", "--path", str(root), "--json")
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def _day_model_totals(db: Path) -> dict[tuple[str, str], list[int]]:
    """(UTC day, model) -> [input excl. cache, output, cache writes, cache reads] from the raw table."""
    conn = sqlite3.connect(db)
    out: dict[tuple[str, str], list[int]] = {}
    for ts, model, inp, cached, write, outp in conn.execute(
        "SELECT ts, model, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens FROM usage_records"
    ):
        day = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")
        t = out.setdefault((day, model), [0, 0, 0, 0])
        t[0] += inp - cached - write
        t[1] += outp
        t[2] += write
        t[3] += cached
    conn.close()
    return out


def _truth(root: Path) -> dict[tuple[str, str], list[int]]:
    truth = json.loads((root / "ground_truth.json").read_text())
    return {
        (r["date"], r["model"]): [
            r["inputTokens"],
            r["outputTokens"],
            r["cacheCreationTokens"],
            r["cacheReadTokens"],
        ]
        for r in truth["daily_by_model"]
    }


def _summary(run_cli) -> dict:
    res = run_cli("summary", "--json")
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def _assistant_line(msg_id: str, ts: str, cwd: str = "/home/dev/extra") -> bytes:
    obj = {
        "type": "assistant",
        "cwd": cwd,
        "sessionId": "appended",
        "requestId": f"req_{msg_id}",
        "timestamp": ts,
        "uuid": f"u-{msg_id}",
        "message": {
            "id": msg_id,
            "role": "assistant",
            "model": "claude-sonnet-4-20250514",
            "usage": {
                "input_tokens": 11,
                "cache_creation_input_tokens": 22,
                "cache_read_input_tokens": 33,
                "output_tokens": 44,
            },
        },
    }
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def test_import_equals_ground_truth_and_second_import_reads_nothing(logs: Path, run_cli, db_url: str) -> None:
    first = _import(run_cli, logs)
    assert first["files_read"] == len(_files(logs)) > 1
    assert first["inserted"] > 0 and first["skipped_lines"] == 0
    db = Path(db_url.split(":///", 1)[1])
    assert _day_model_totals(db) == _truth(logs)
    second = _import(run_cli, logs)
    assert second["files_read"] == 0 and second["bytes_read"] == 0
    assert second["files_unchanged"] == len(_files(logs))
    assert second["inserted"] == 0
    assert _day_model_totals(db) == _truth(logs)


def test_appended_lines_are_the_only_bytes_read(logs: Path, run_cli, db_url: str) -> None:
    _import(run_cli, logs)
    target = _files(logs)[0]
    extra = _assistant_line("msg_appended_1", "2025-06-02T12:00:00.000Z") + _assistant_line(
        "msg_appended_2", "2025-06-02T12:05:00.000Z"
    )
    with open(target, "ab") as fh:
        fh.write(extra)
    again = _import(run_cli, logs)
    assert again["files_read"] == 1
    assert again["bytes_read"] == len(extra)
    assert again["inserted"] == 2 and again["records"] == 2
    summary = _summary(run_cli)
    truth = _truth(logs)
    assert summary["output_tokens"] == sum(v[1] for v in truth.values()) + 88


def test_history_survives_deletion_of_the_source_files(logs: Path, run_cli, db_url: str) -> None:
    _import(run_cli, logs)
    db = Path(db_url.split(":///", 1)[1])
    before_totals = _day_model_totals(db)
    before_summary = _summary(run_cli)
    # Claude Code deletes transcripts after 30 days: here, all of them.
    for f in _files(logs):
        f.unlink()
    after = _import(run_cli, logs)
    assert after["files_seen"] == 0 and after["inserted"] == 0
    assert _day_model_totals(db) == before_totals == _truth(logs)
    summary = _summary(run_cli)
    assert summary == before_summary
    truth = _truth(logs)
    assert summary["output_tokens"] == sum(v[1] for v in truth.values())
    assert summary["cached_input_tokens"] == sum(v[3] for v in truth.values())


def test_malformed_lines_are_reported_as_file_and_line(logs: Path, run_cli, db_url: str) -> None:
    target = _files(logs)[0]
    n_lines = target.read_bytes().count(b"\n")
    good = _assistant_line("msg_after_bad", "2025-06-03T08:00:00.000Z")
    with open(target, "ab") as fh:
        fh.write(b'{"type":"assistant","message":{"usage":{"input_tokens": 5,\n')  # truncated
        fh.write(good)
    res = run_cli("import", "claude-code", "--path", str(logs), "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["skipped_lines"] == 1
    assert out["errors"] == [f"{target}:{n_lines + 1}: truncated JSON"]
    # The good line after the bad one was imported.
    conn = sqlite3.connect(db_url.split(":///", 1)[1])
    n = conn.execute("SELECT COUNT(*) FROM usage_records WHERE dedup_key LIKE '%msg_after_bad%'").fetchone()[
        0
    ]
    conn.close()
    assert n == 1
    # The human form names the file and line too.
    (target.parent / "extra.jsonl").write_bytes(b'{"type":"assistant","message":{"usage":\n')
    res = run_cli("import", "claude-code", "--path", str(logs))
    assert "1 malformed line(s) skipped" in res.stderr
    assert ":1: truncated JSON" in res.stderr


def test_non_utf8_bytes_are_skipped_and_reported(tmp_path: Path, run_cli) -> None:
    f = tmp_path / "usage.csv"
    f.write_bytes(
        b"timestamp,model,input_tokens,output_tokens\n"
        b"2025-06-01T00:00:00Z,gpt-4o,10,5\n"
        b"2025-06-01T00:01:00Z,gpt-4o\xff\xfe,10,5\n"
        b"2025-06-01T00:02:00Z,gpt-4o,20,5\n"
    )
    res = run_cli("import", "csv", str(f), "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["inserted"] == 2 and out["skipped_lines"] == 1
    assert out["errors"] == [f"{f}:3: invalid UTF-8 at byte 27"]

    logdir = tmp_path / "claude" / "p"
    logdir.mkdir(parents=True)
    bad = _assistant_line("msg_bad_utf8", "2025-06-01T00:00:00.000Z").replace(
        b"/home/dev/extra", b"/home/\xff"
    )
    (logdir / "s.jsonl").write_bytes(_assistant_line("msg_ok", "2025-06-01T00:00:00.000Z") + bad)
    res = run_cli("import", "claude-code", "--path", str(tmp_path / "claude"), "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["inserted"] == 1 and out["skipped_lines"] == 1
    assert out["errors"][0].startswith(f"{logdir / 's.jsonl'}:2: ")


def test_unreadable_file_is_a_one_line_error(logs: Path, tmp_path: Path, run_cli) -> None:
    if os.geteuid() != 0:
        target = _files(logs)[0]
        target.chmod(0)
        res = run_cli("import", "claude-code", "--path", str(logs))
    else:
        # root reads any file whatever its mode: a directory where the database file is expected.
        target = tmp_path / "usage.db"
        target.mkdir()
        res = run_cli("--db", f"sqlite:///{target}", "import", "claude-code", "--path", str(logs))
    assert res.exit_code != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert str(target) in lines[0] and "Traceback" not in res.stderr


def test_shrunk_file_is_reread_from_the_start_without_double_counting(
    logs: Path, run_cli, db_url: str
) -> None:
    _import(run_cli, logs)
    db = Path(db_url.split(":///", 1)[1])
    before = _day_model_totals(db)
    target = max(_files(logs), key=lambda p: p.stat().st_size)
    data = target.read_bytes()
    keep = data[: data.rindex(b"\n", 0, len(data) // 2) + 1]  # the first half, whole lines
    target.write_bytes(keep)  # rewritten in place: same inode, smaller
    again = _import(run_cli, logs)
    assert again["files_read"] == 1
    assert again["bytes_read"] == len(keep)
    assert again["inserted"] == 0
    assert _day_model_totals(db) == before


def test_reset_says_what_it_removed(logs: Path, run_cli) -> None:
    first = _import(run_cli, logs)
    res = run_cli("reset", "--yes")
    assert res.exit_code == 0
    n_files = len(_files(logs))
    assert f"removed {first['inserted']} usage record(s)" in res.stdout
    assert f"{n_files} file progress" in res.stdout
    assert "1 import run(s)" in res.stdout
    assert _summary(run_cli)["records"] == 0
    # Progress went with the records: the next import reads everything again.
    assert _import(run_cli, logs)["inserted"] == first["inserted"]


def test_doctor_on_an_empty_home(run_cli, oaim_home: Path) -> None:
    assert not oaim_home.exists()
    res = run_cli("doctor", "--json")
    checks = {c["check"]: c for c in json.loads(res.stdout)}
    assert checks["database"]["ok"] and "0 record(s)" in checks["database"]["detail"]
    assert checks["config"]["ok"] and "defaults" in checks["config"]["detail"]
    assert checks["prices"]["ok"]
    assert res.exit_code == 0
    res = run_cli("doctor")
    assert "[ok ] database" in res.stdout


def test_doctor_names_unknown_config_keys(run_cli, oaim_home: Path) -> None:
    """A hand-edited config with a mistyped key (kept, but never read) is a FIX line with the key it was
    probably meant to be; the tier overrides section is known."""
    oaim_home.mkdir(parents=True, exist_ok=True)
    (oaim_home / "config.toml").write_text(
        'timezon = "Europe/Berlin"\nplan = "tier2"\n[tiers.tier2]\nmonthly_limit_usd = 600\n'
    )
    res = run_cli("doctor", "--json")
    bad = [c for c in json.loads(res.stdout) if c["check"] == "config" and not c["ok"]]
    assert len(bad) == 1 and "'timezon'" in bad[0]["detail"] and "did you mean 'timezone'" in bad[0]["fix"]
    assert res.exit_code == 1
