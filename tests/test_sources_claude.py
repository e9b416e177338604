"""Claude Code adapter: normalisation, de-duplication rules, bad lines, incremental reads, ground truth.

Every test runs twice: files read whole (msgspec's line decoder, the default below FAST_MAX_BYTES) and
line by line (the path for large files and for any file holding a line the whole-file path leaves to
it); both must give the same records, reports and file state."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path

import pytest
from helpers_common import gen_claude_logs

from openai_monitor.domain import ParseReport
from openai_monitor.errors import InputError
from openai_monitor.sources import claude_code
from openai_monitor.sources.base import resume_lineno
from openai_monitor.sources.claude_code import ClaudeCodeAdapter

A = ClaudeCodeAdapter()


@pytest.fixture(autouse=True, params=["whole-file", "line-by-line"])
def read_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "line-by-line":
        monkeypatch.setattr(claude_code, "FAST_MAX_BYTES", -1)
    return request.param


def line(
    mid="msg_01A",
    rid="req_01A",
    *,
    ts="2025-06-01T10:00:00.000Z",
    model="claude-sonnet-4-20250514",
    inp=4,
    out=100,
    cc=2000,
    cr=30000,
    cc1h=0,
    sidechain=False,
    cwd="/home/dev/code/webapp",
    **extra,
):
    usage = {
        "input_tokens": inp,
        "cache_creation_input_tokens": cc,
        "cache_read_input_tokens": cr,
        "cache_creation": {"ephemeral_5m_input_tokens": cc - cc1h, "ephemeral_1h_input_tokens": cc1h},
        "output_tokens": out,
        "service_tier": "standard",
    }
    usage.update(extra.pop("usage_extra", {}))
    obj = {
        "parentUuid": None,
        "isSidechain": sidechain,
        "userType": "external",
        "cwd": cwd,
        "sessionId": "sess-1",
        "version": "1.0.80",
        "type": "assistant",
        "uuid": f"u-{mid}-{out}",
        "timestamp": ts,
        "message": {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "ok"}],
            "usage": usage,
        },
    }
    if rid is not None:
        obj["requestId"] = rid
    if mid is None:
        del obj["message"]["id"]
    obj.update(extra)
    return json.dumps(obj, separators=(",", ":"))


def write(path: Path, lines: list[str], end: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + end, encoding="utf-8")
    return path


def read_all(files, run=None, states=None):
    run = {} if run is None else run
    report = ParseReport()
    out = []
    for f in files:
        state = {} if states is None else states.setdefault(str(f), {})
        out.extend(A.read(f, offset=state.get("offset", 0), state=state, run=run, report=report, options={}))
    return out, report


def test_normalised_tokens_project_session_and_cost(tmp_path):
    f = write(
        tmp_path / "projects" / "-home-dev-code-webapp" / "s.jsonl",
        [
            json.dumps(
                {
                    "type": "user",
                    "message": {"role": "user", "content": "hi"},
                    "timestamp": "2025-06-01T09:59:00Z",
                }
            ),
            line(cc=2089, cr=16399, inp=15, out=445, cc1h=89, costUSD=0.0123),
            line(
                "msg_02",
                "req_02",
                usage_extra={"speed": "fast", "output_tokens_details": {"thinking_tokens": 40}},
            ),
        ],
    )
    recs, report = read_all([f])
    assert report.skipped == 0 and report.lines == 3
    r = recs[0]
    assert (
        r.input_tokens,
        r.cached_input_tokens,
        r.cache_write_tokens,
        r.cache_write_1h_tokens,
        r.output_tokens,
    ) == (15 + 2089 + 16399, 16399, 2089, 89, 445)
    assert (r.provider, r.source, r.project, r.session_id) == ("anthropic", "claude-code", "webapp", "sess-1")
    assert r.cost_usd == pytest.approx(0.0123) and r.cost_reported
    assert r.ts == 1748772000 and r.dedup_key == "claude:msg_01A:req_01A"
    assert recs[1].service_tier == "fast" and recs[1].reasoning_tokens == 40 and recs[1].cost_usd is None
    assert not recs[1].cost_reported


def test_split_copies_keep_the_larger_total_and_synthetic_is_skipped(tmp_path):
    f = write(
        tmp_path / "p" / "s.jsonl",
        [
            line(out=1),  # early streaming snapshot with a partial output count
            json.dumps(
                {
                    "type": "user",
                    "message": {"content": [{"type": "tool_result"}]},
                    "toolUseResult": {"usage": {"x": 1}},
                }
            ),
            line(out=512),
            line(out=512),
            line("msg_err", "req_err", model="<synthetic>", inp=0, out=0, cc=0, cr=0),
        ],
    )
    recs, report = read_all([f])
    assert [r.output_tokens for r in recs] == [512]
    assert report.skipped == 0


def test_sidechain_copy_with_other_request_id_is_a_duplicate_and_main_copy_wins(tmp_path):
    f = write(
        tmp_path / "p" / "s.jsonl",
        [
            line("msg_X", "req_side", sidechain=True, out=300),
            line("msg_X", "req_main", out=200),
            line("msg_Y", "req_1", out=10),
            line("msg_Y", "req_2", out=20),  # same message id, other request, no sidechain: distinct calls
        ],
    )
    recs, _ = read_all([f])
    keys = sorted((r.dedup_key, r.output_tokens) for r in recs)
    assert keys == [("claude:msg_X:req_main", 200), ("claude:msg_Y:req_1", 10), ("claude:msg_Y:req_2", 20)]


def test_missing_request_id_and_missing_message_id(tmp_path):
    f = write(
        tmp_path / "p" / "s.jsonl",
        [
            line("msg_N", None, out=5),
            line("msg_N", None, out=7),
            line(None, "req_Z", out=1),
            line(None, "req_Z", out=2),
        ],
    )
    recs, _ = read_all([f])
    assert sorted(r.output_tokens for r in recs) == [1, 2, 7]
    assert {r.dedup_key for r in recs} >= {"claude:msg_N", "claude:uuid:u-None-1", "claude:uuid:u-None-2"}
    again, _ = read_all([f])
    assert sorted(r.dedup_key for r in again) == sorted(r.dedup_key for r in recs)


def test_cross_file_replay_is_counted_once(tmp_path):
    a = write(tmp_path / "p" / "a.jsonl", [line("m1", "r1"), line("m2", "r2")])
    b = write(tmp_path / "p" / "b.jsonl", [line("m2", "r2"), line("m3", "r3")])
    sub = write(tmp_path / "p" / "a" / "subagents" / "agent-1.jsonl", [line("m3", "rX", sidechain=True)])
    files = A.discover(tmp_path)
    assert files[-1] == sub
    recs, _ = read_all(files)
    assert sorted(r.dedup_key for r in recs) == ["claude:m1:r1", "claude:m2:r2", "claude:m3:r3"]
    assert a in files and b in files


def test_bad_lines_are_reported_with_true_line_numbers(tmp_path):
    good = line("m1", "r1")
    f = tmp_path / "p" / "s.jsonl"
    f.parent.mkdir(parents=True)
    f.write_bytes(
        b"\n".join(
            [
                good.encode(),
                good[: len(good) // 2 + 60].encode(),  # truncated JSON, still containing "usage"
                line("m2", "r2").encode().replace(b"ok", b"\xff\xfe"),  # non-UTF-8 bytes
                line("m3", "r3", out=-5).encode(),
                line("m4", "r4", ts="not a time").encode(),
                line("m5", "r5").encode(),
            ]
        )
        + b"\n"
    )
    recs, report = read_all([f])
    assert sorted(r.dedup_key for r in recs) == ["claude:m1:r1", "claude:m5:r5"]
    reasons = {e.line: e.reason for e in report.errors}
    assert set(reasons) == {2, 3, 4, 5}
    assert "truncated" in reasons[2] or "invalid JSON" in reasons[2]
    assert "UTF-8" in reasons[3]
    assert "negative output_tokens" in reasons[4]
    assert "timestamp" in reasons[5]
    assert str(report.errors[0]).startswith(f"{f}:2: ")


def test_incremental_read_after_append_yields_only_new_records(tmp_path):
    f = tmp_path / "p" / "s.jsonl"
    write(f, [line("m1", "r1"), line("m2", "r2")])
    partial = line("m3", "r3")
    with open(f, "a") as fh:
        fh.write(partial[:50])  # being written: no newline yet
    states: dict = {}
    first, _ = read_all([f], states=states)
    assert [r.dedup_key for r in first] == ["claude:m1:r1", "claude:m2:r2"]
    st = states[str(f)]
    # Read whole, the lines are counted only if a later read must number one (UNCOUNTED until then).
    assert lines_of(f, st) == 2 and st["offset"] < f.stat().st_size
    with open(f, "a") as fh:
        fh.write(
            partial[50:] + "\n" + "{broken\n" + line("m4", "r4") + "\n" + line("m5", "r5", out=-1) + "\n"
        )
    second, report = read_all([f], states=states)
    assert [r.dedup_key for r in second] == ["claude:m3:r3", "claude:m4:r4"]
    assert [(e.line, e.reason) for e in report.errors] == [(6, "negative output_tokens")]
    assert report.lines == 4 and lines_of(f, st) == 6 and st["offset"] == f.stat().st_size
    third, report = read_all([f], states=states)
    assert third == [] and report.lines == 0


def lines_of(path: Path, state: dict) -> int:
    """The line count a file state stands for (counted from the file when the reader left it UNCOUNTED)."""
    return resume_lineno(path, state["offset"], state["lines"])


def test_truncated_file_restarts_from_zero(tmp_path):
    f = write(tmp_path / "p" / "s.jsonl", [line("m1", "r1"), line("m2", "r2")])
    state: dict = {}
    list(A.read(f, offset=0, state=state, run={}, report=ParseReport(), options={}))
    write(f, [line("m9", "r9")])
    recs = list(A.read(f, offset=state["offset"], state=state, run={}, report=ParseReport(), options={}))
    assert [r.dedup_key for r in recs] == ["claude:m9:r9"] and lines_of(f, state) == 1


def test_project_falls_back_to_the_encoded_directory(tmp_path):
    f = write(tmp_path / "projects" / "-srv-some-where" / "s.jsonl", [line(cwd="")])
    recs, _ = read_all([f])
    assert recs[0].project == "-srv-some-where"


def test_discover_default_roots_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    with pytest.raises(InputError, match="--path DIR"):
        A.discover(None)
    f1 = write(tmp_path / "home" / ".claude" / "projects" / "p" / "a.jsonl", [line()])
    f2 = write(tmp_path / "home" / ".config" / "claude" / "projects" / "q" / "b.jsonl", [line()])
    assert sorted(A.discover(None)) == sorted([f1, f2])
    f3 = write(tmp_path / "c1" / "projects" / "p" / "c.jsonl", [line()])
    f4 = write(tmp_path / "c2" / "projects" / "p" / "d.jsonl", [line()])
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", f"{tmp_path / 'c1'},{tmp_path / 'c2'}")
    assert A.discover(None) == [f3, f4]
    assert A.discover(tmp_path / "home") == [f1]


def test_ground_truth_of_generated_logs(tmp_path):
    """Per UTC day and model, token sums equal the generator's de-duplicated ground truth exactly."""
    out = gen_claude_logs(
        tmp_path / "home", "3MB", "--continue-p", "0.6", "--subagent-p", "0.5", "--projects", "4"
    )
    truth = json.loads((out / "ground_truth.json").read_text())
    assert truth["stats"]["duplicate_cross_file"] > 0 and truth["stats"]["duplicate_assistant_lines"] > 0
    files = A.discover(out)
    recs, report = read_all(files)
    assert report.skipped == 0
    agg: dict = defaultdict(lambda: [0, 0, 0, 0, 0])
    for r in recs:
        t = agg[(dt.datetime.fromtimestamp(r.ts, dt.timezone.utc).strftime("%Y-%m-%d"), r.model)]
        t[0] += r.input_tokens - r.cached_input_tokens - r.cache_write_tokens
        t[1] += r.output_tokens
        t[2] += r.cache_write_tokens
        t[3] += r.cached_input_tokens
        t[4] += 1
    expected = {
        (row["date"], row["model"]): [
            row["inputTokens"],
            row["outputTokens"],
            row["cacheCreationTokens"],
            row["cacheReadTokens"],
            row["entries"],
        ]
        for row in truth["daily_by_model"]
    }
    assert dict(agg) == expected
    assert len({r.dedup_key for r in recs}) == len(recs) == truth["stats"]["unique_usage_keys"]
