"""Gemini CLI adapter: legacy .json and .jsonl recordings, last copy wins, token mapping, projects."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from openai_monitor.domain import ParseReport
from openai_monitor.errors import InputError
from openai_monitor.sources.gemini import GeminiAdapter

FIX = Path(__file__).parent / "fixtures" / "sources" / "gemini"
SID = "a1b2c3d4-0000-4000-8000-000000000001"
A = GeminiAdapter()


def read(files, states=None):
    report, out, run = ParseReport(), [], {}
    for f in files:
        st = {} if states is None else states.setdefault(str(f), {})
        out.extend(A.read(f, offset=st.get("offset", 0), state=st, run=run, report=report, options={}))
    return out, report


def test_discover_only_chat_recordings():
    files = A.discover(FIX / "tmp")
    names = sorted(p.name for p in files)
    assert names == [
        "b2c3d4e5-0000-4000-8000-000000000002.jsonl",
        "session-2025-09-01T08-00-c3d4e5f6.json",
        "session-2026-01-15T10-00-a1b2c3d4.jsonl",
    ]
    assert A.discover(FIX) == files


def test_all_fixtures_normalised():
    recs, report = read(A.discover(FIX))
    assert report.skipped == 0
    got = {
        r.dedup_key: (
            r.model,
            r.input_tokens,
            r.cached_input_tokens,
            r.output_tokens,
            r.reasoning_tokens,
            r.project,
            r.session_id,
        )
        for r in recs
    }
    hashdir = "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b"
    legacy = "c3d4e5f6-0000-4000-8000-000000000003"
    sub = "b2c3d4e5-0000-4000-8000-000000000002"
    assert got == {
        # input = prompt (cached included) + tool; output = output + thoughts
        f"gemini:{SID}:m1": ("gemini-2.5-pro", 15327 + 7, 11526, 23 + 919, 919, "webapp", SID),
        # rewound by $rewindTo, but the call was made and billed
        f"gemini:{SID}:m2": ("gemini-2.5-flash", 16000, 15000, 150, 50, "webapp", SID),
        f"gemini:{SID}:m3": ("gemini-2.5-pro", 17000, 16000, 1600, 1200, "webapp", SID),
        f"gemini:{sub}:s1": ("gemini-2.5-flash", 4012, 0, 90, 30, "webapp", sub),
        f"gemini:{legacy}:x2": ("gemini-2.5-pro", 5000, 0, 500, 300, hashdir, legacy),
        f"gemini:{legacy}:x3": ("gemini-2.5-pro", 9000, 4000, 50, 0, hashdir, legacy),
    }
    assert {(r.provider, r.source) for r in recs} == {("google", "gemini")}
    assert A.replace is True


def test_last_copy_wins_across_incremental_reads(tmp_path):
    shutil.copytree(FIX, tmp_path / "g")
    f = next(p for p in A.discover(tmp_path / "g") if p.name.startswith("session-2026"))
    states: dict = {}
    first, _ = read([f], states)
    assert len(first) == 3
    updated = {
        "id": "m3",
        "timestamp": "2026-01-15T10:02:00.000Z",
        "type": "gemini",
        "model": "gemini-2.5-pro",
        "tokens": {"input": 17000, "output": 450, "cached": 16000, "thoughts": 1200, "tool": 0},
    }
    with open(f, "a") as fh:
        fh.write(json.dumps(updated) + "\n" + json.dumps({"$set": {"lastUpdated": "x"}}) + "\n")
    second, report = read([f], states)
    # Only the re-appended message comes back, under the same key: the store replaces it.
    assert [(r.dedup_key, r.output_tokens) for r in second] == [(f"gemini:{SID}:m3", 1650)]
    assert report.lines == 2 and second[0].project == "webapp" and second[0].session_id == SID


def test_bad_lines(tmp_path):
    d = tmp_path / "tmp" / "proj" / "chats"
    d.mkdir(parents=True)
    f = d / "session-x.jsonl"
    good = {
        "id": "g1",
        "timestamp": "2026-01-01T00:00:00Z",
        "type": "gemini",
        "model": "gemini-2.5-pro",
        "tokens": {"input": 10, "output": 1, "cached": 0, "thoughts": 0},
    }
    neg = dict(good, id="g2", tokens={"input": 10, "output": -3})
    f.write_bytes(
        b"\n".join(
            [
                json.dumps({"sessionId": "s", "startTime": "2026-01-01T00:00:00Z"}).encode(),
                json.dumps(good).encode(),
                b'{"id":"g3","type":"gemini","tokens":{"input":',
                b'{"id":"g4","type":"gemini","content":"\xff"}',
                json.dumps(neg).encode(),
            ]
        )
        + b"\n"
    )
    recs, report = read([f])
    assert [r.dedup_key for r in recs] == ["gemini:s:g1"] and recs[0].project == "proj"
    assert [e.line for e in report.errors] == [3, 4, 5]
    j = d / "session-y.json"
    j.write_text('{"sessionId": "s", "messages": [')
    recs, report = read([j])
    assert recs == [] and "truncated" in report.errors[0].reason


def test_discover_env(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_DATA_DIR", str(tmp_path / "none"))
    with pytest.raises(InputError, match="GEMINI_DATA_DIR"):
        A.discover(None)
    monkeypatch.setenv("GEMINI_DATA_DIR", str(FIX / "tmp"))
    assert len(A.discover(None)) == 3
