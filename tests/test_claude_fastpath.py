"""The Claude Code adapter reads a file whole (msgspec's line decoder) or line by line, with the same
results: records, malformed-line reports and file state."""

from __future__ import annotations

from dataclasses import astuple
from pathlib import Path

import pytest
from helpers_common import gen_claude_logs
from test_sources_claude import line, read_all

from openai_monitor.domain import COLUMNS_OPTION, RECORD_FIELDS, ParseReport, RecordColumns
from openai_monitor.sources import claude_code
from openai_monitor.sources.base import UNCOUNTED, resume_lineno
from openai_monitor.sources.claude_code import ClaudeCodeAdapter

A = ClaudeCodeAdapter()


def _read_with(files, fast_max: int, monkeypatch) -> tuple:
    monkeypatch.setattr(claude_code, "FAST_MAX_BYTES", fast_max)
    states: dict = {}
    recs, report = read_all(files, states=states)
    return recs, report, states


def test_whole_file_and_line_by_line_reads_agree(tmp_path, monkeypatch):
    """On generated logs with cross-file copies, plus files holding each kind of line the whole-file
    path hands over (bad JSON, bad UTF-8 in text it skips, a message that is not an object, a line with
    neither message id nor uuid, an unexpected type), both paths give the same records, reports and
    states; clean files are read whole."""
    out = gen_claude_logs(tmp_path / "home", "2MB", "--continue-p", "0.6", "--subagent-p", "0.5")
    files = A.discover(out)
    odd = [
        b"not json at all",
        line("m2", "r2").encode().replace(b"ok", b"\xff\xfe"),
        b'{"type":"assistant","message":"text","usage":1}',
        b'{"type":"assistant","message":null,"x":"usage"}',
        b'{"type":"assistant","message":{"model":"claude-sonnet-4-20250514","usage":{"input_tokens":1,'
        b'"output_tokens":2}},"timestamp":"2025-06-01T00:00:00Z"}',
        b'{"type":"assistant","message":{"id":7,"model":"m","usage":{"input_tokens":"x","output_tokens":2}},'
        b'"timestamp":"2025-06-01T00:00:00Z","uuid":"u1"}',
        b"[1, 2]",
    ]
    for i, bad in enumerate(odd):
        with open(files[i], "ab") as fh:
            fh.write(bad + b"\n")
    fast = _read_with(files, claude_code.FAST_MAX_BYTES, monkeypatch)
    slow = _read_with(files, -1, monkeypatch)
    assert [astuple(r) for r in fast[0]] == [astuple(r) for r in slow[0]]
    assert len(fast[0]) > 300
    assert [str(e) for e in fast[1].errors] == [str(e) for e in slow[1].errors]
    assert (fast[1].lines, fast[1].records, fast[1].skipped) == (
        slow[1].lines,
        slow[1].records,
        slow[1].skipped,
    )
    assert fast[1].skipped >= 4
    # Equal states, once the lines a whole-file read left uncounted are counted.
    for name, st in fast[2].items():
        if st.get("lines") == UNCOUNTED:
            st["lines"] = resume_lineno(Path(name), st["offset"], st["lines"])
    assert fast[2] == slow[2]
    # The files without odd lines really were read whole.
    taken = []
    real = claude_code._fast_entries
    monkeypatch.setattr(claude_code, "FAST_MAX_BYTES", 32 * 1024 * 1024)
    monkeypatch.setattr(claude_code, "_fast_entries", lambda *a: taken.append(r := real(*a)) or r)
    read_all(files)
    assert sum(r is not None for r in taken) == len(files) - len(odd)


def _field_kinds(tmp_path: Path) -> tuple[Path, int]:
    """A file using each field the records take (billed cost, fast mode, thinking tokens, 1-hour cache
    writes, priority tier, a line without message id, no cwd, a non-text session id, a float count, an
    offset timestamp, a synthetic placeholder, split copies and a sidechain copy), and its line count."""
    f = tmp_path / "projects" / "-home-dev-code-webapp" / "s.jsonl"
    f.parent.mkdir(parents=True)
    lines = [
        '{"type":"user","message":{"role":"user","content":"hi"},"timestamp":"2025-06-01T09:59:00Z"}',
        line("m1", "r1", cc=2089, cr=16399, inp=15, out=445, cc1h=89, costUSD=0.0123),
        line("m2", "r2", usage_extra={"speed": "fast", "output_tokens_details": {"thinking_tokens": 40}}),
        line("m3", "r3", usage_extra={"service_tier": "priority"}, costUSD=2),
        line(None, "r4", ts="2025-06-01T10:05:00+02:00"),
        line("m5", "r5", cwd=None, sessionId=17),
        line("m6", "r6", model="<synthetic>"),
        line("m7", "r7", out=10),
        line("m7", "r7", out=90),  # a later, larger copy of the same response replaces the first
        line("m7", "r7b", sidechain=True, out=500),  # a sidechain copy under another request id
        line("m8", None, out=7),
        line("m9", "r9", inp=5.0, ts="2025-06-02T23:59:59.999Z"),
    ]
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f, len(lines)


def test_every_field_kind_is_taken_whole_and_equal_to_line_by_line(tmp_path, monkeypatch):
    """Each kind of field is read whole, with the line-by-line records."""
    f, n_lines = _field_kinds(tmp_path)
    taken = []
    real = claude_code._fast_entries
    monkeypatch.setattr(claude_code, "_fast_entries", lambda *a: taken.append(r := real(*a)) or r)
    fast = _read_with([f], claude_code.FAST_MAX_BYTES, monkeypatch)
    assert len(taken) == 1 and taken[0] is not None
    slow = _read_with([f], -1, monkeypatch)
    assert [astuple(r) for r in fast[0]] == [astuple(r) for r in slow[0]]
    assert len(fast[0]) == 8 and fast[1].skipped == 0 and fast[1].lines == slow[1].lines == n_lines
    assert {r.service_tier for r in fast[0]} == {"", "fast", "priority"}
    assert sorted(r.cost_usd for r in fast[0] if r.cost_reported) == [0.0123, 2.0]
    assert [r.input_tokens for r in fast[0] if r.dedup_key == "claude:m9:r9"] == [5 + 2000 + 30000]


@pytest.mark.parametrize("fast_max", [claude_code.FAST_MAX_BYTES, -1], ids=["whole-file", "line-by-line"])
def test_columns_for_a_parsing_process_equal_the_records(tmp_path, monkeypatch, fast_max):
    """What a parsing process reads (RecordColumns, COLUMNS_OPTION) holds exactly the records an
    in-process read yields, values and types, on generated logs with cross-file copies and on a file of
    every field kind."""
    out = gen_claude_logs(tmp_path / "home", "1MB", "--continue-p", "0.6", "--subagent-p", "0.5")
    files = [*A.discover(out), _field_kinds(tmp_path)[0]]
    monkeypatch.setattr(claude_code, "FAST_MAX_BYTES", fast_max)
    records, _ = read_all(files)
    run: dict = {}
    rows: list[tuple] = []
    for f in files:
        for chunk in A.read(
            f, offset=0, state={}, run=run, report=ParseReport(), options={COLUMNS_OPTION: True}
        ):
            assert isinstance(chunk, RecordColumns) and len(chunk.columns) == len(RECORD_FIELDS)
            rows.extend(zip(*chunk.columns))
    expected = [astuple(r) for r in records]
    assert len(expected) > 100
    assert rows == expected
    assert [tuple(map(type, r)) for r in rows] == [tuple(map(type, r)) for r in expected]
