"""Codex adapter: deltas of cumulative totals, re-emits, resets, sub-agent replay bursts, incremental reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from openai_monitor.domain import ParseReport
from openai_monitor.errors import InputError
from openai_monitor.sources.codex import UNKNOWN_MODEL, CodexAdapter

FIX = Path(__file__).parent / "fixtures" / "sources" / "codex"
MAIN = "0197a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
A = CodexAdapter()


def read(files, states=None, run=None):
    report, out, run = ParseReport(), [], {} if run is None else run
    for f in files:
        st = {} if states is None else states.setdefault(str(f), {})
        out.extend(A.read(f, offset=st.get("offset", 0), state=st, run=run, report=report, options={}))
    return out, report


def test_main_session_deltas_ignore_reemits_and_handle_reset():
    f = next(p for p in A.discover(FIX) if MAIN in p.name)
    recs, report = read([f])
    assert report.skipped == 0 and report.lines == 10
    assert [
        (r.model, r.input_tokens, r.cached_input_tokens, r.output_tokens, r.reasoning_tokens) for r in recs
    ] == [
        ("gpt-5.2-codex", 2500, 500, 300, 200),
        ("gpt-5.2", 3500, 2000, 400, 200),  # model from the latest turn_context
        ("gpt-5.2", 1000, 0, 100, 0),  # totals reset: last_token_usage
    ]
    # Summing last_token_usage of every event (ccusage at the studied HEAD) would give 11000 input tokens.
    assert sum(r.input_tokens for r in recs) == 7000
    assert {(r.provider, r.source, r.project, r.session_id) for r in recs} == {
        ("openai", "codex", "webapp", MAIN)
    }
    assert recs[0].ts == 1778662860
    assert len({r.dedup_key for r in recs}) == 3
    again, _ = read([f])
    assert [r.dedup_key for r in again] == [r.dedup_key for r in recs]


def test_subagent_replay_burst_is_a_baseline_not_usage():
    f = next(p for p in A.discover(FIX) if "ffff" in p.name)
    recs, _ = read([f])
    assert [(r.input_tokens, r.cached_input_tokens, r.output_tokens, r.reasoning_tokens) for r in recs] == [
        (1200, 500, 200, 50)
    ]


def test_incremental_append_and_state_is_json(tmp_path):
    src = next(p for p in A.discover(FIX) if MAIN in p.name)
    lines = src.read_text().splitlines(keepends=True)
    f = tmp_path / "rollout-2026-05-13T09-00-00-x.jsonl"
    f.write_text("".join(lines[:6]))
    states: dict = {}
    first, _ = read([f], states)
    assert [r.input_tokens for r in first] == [2500]
    json.dumps(states)  # state must be storable as JSON
    f.write_text("".join(lines))
    second, report = read([f], states)
    assert [r.input_tokens for r in second] == [3500, 1000] and report.lines == 4
    full, _ = read([src])
    assert [r.dedup_key for r in first + second] == [r.dedup_key for r in full]


def test_bad_lines_unknown_model_and_negative_tokens(tmp_path):
    ev = {
        "timestamp": "2026-05-13T09:01:00.000Z",
        "type": "event_msg",
        "payload": {
            "type": "token_count",
            "info": {"total_token_usage": {"input_tokens": 10, "output_tokens": 2}},
        },
    }
    neg = json.loads(json.dumps(ev))
    neg["payload"]["info"]["total_token_usage"] = {"input_tokens": 5, "output_tokens": -1}
    neg["payload"]["info"]["last_token_usage"] = {"input_tokens": 5, "output_tokens": -1}
    f = tmp_path / "rollout-x.jsonl"
    f.write_bytes(
        b"\n".join(
            [
                json.dumps(ev).encode(),
                b'{"timestamp":"2026-05-13T09:02:00.000Z","type":"event_msg","payload":{"type":"token_count","info":{',
                b'{"type":"turn_context","payload":{"model":"gpt-\xff"}}',
                json.dumps(neg).encode(),
            ]
        )
        + b"\n"
    )
    recs, report = read([f])
    assert [(r.model, r.input_tokens) for r in recs] == [(UNKNOWN_MODEL, 10)]
    assert [e.line for e in report.errors] == [2, 3, 4]
    assert "UTF-8" in report.errors[1].reason and "negative" in report.errors[2].reason


def test_discover_codex_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "codex"))
    with pytest.raises(InputError, match="CODEX_HOME"):
        A.discover(None)
    shutil.copytree(FIX / "sessions", tmp_path / "codex" / "sessions")
    (tmp_path / "codex" / "archived_sessions").mkdir()
    arch = tmp_path / "codex" / "archived_sessions" / "rollout-old.jsonl"
    arch.write_text("")
    files = A.discover(None)
    assert len(files) == 3 and files[-1] == arch
