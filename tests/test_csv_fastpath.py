"""The chunked generic-CSV path (plain lines split at commas, rows built column by column) against the
row-by-row path it replaced (csv.reader and ``_Builder.build_row`` for every row): same row tuples, same
de-duplication keys, same ``file:line: reason`` reports, on varied input with malformed lines."""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from openai_monitor.domain import ParseReport, UsageRecord
from openai_monitor.sources import csv_generic
from openai_monitor.sources.base import LineReader, open_binary
from openai_monitor.sources.csv_generic import _ROW_FIELDS, CsvAdapter, _Builder
from openai_monitor.store.repo import record_rows

A = CsvAdapter()


def reference(path: Path, options: dict) -> tuple[list[UsageRecord], ParseReport]:
    """The row-by-row reading of a generic CSV file, as the adapter did it before the chunked path."""
    report = ParseReport()
    fname = str(path)
    records: list[UsageRecord] = []
    with open_binary(path) as fh:
        reader = LineReader(fh, 0, 0, incremental=False)
        current = [0]

        def feed() -> Iterator[str]:
            for n, text in A._decoded(reader, partial(report.error, fname)):
                current[0] = n
                yield text + "\n"

        rows = csv.reader(feed())
        header = next(rows, None)
        if header is not None:
            cols = A._columns(header, fname, options)
            width = len(header)
            builder = _Builder(fname, options)
            at = [cols.get(f, width) for f in _ROW_FIELDS]
            for row in rows:
                if len(row) != width:
                    if not row or (len(row) == 1 and not row[0].strip()):
                        continue
                    report.error(fname, current[0], f"expected {width} fields, found {len(row)}")
                    continue
                row.append("")
                rec = builder.build_row(row, at, current[0], report)
                if rec is not None:
                    report.records += 1
                    records.append(rec)
    report.lines += reader.lineno
    return records, report


def fast(path: Path, options: dict) -> tuple[list[UsageRecord], ParseReport]:
    report = ParseReport()
    recs = list(A.read(path, offset=0, state={}, run={}, report=report, options=options))
    return recs, report


def assert_same(path: Path, options: dict | None = None) -> list[UsageRecord]:
    options = {"format": "generic", **(options or {})}
    got, got_report = fast(path, options)
    want, want_report = reference(path, options)
    assert record_rows(got) == record_rows(want)
    assert [str(e) for e in got_report.errors] == [str(e) for e in want_report.errors]
    assert (got_report.lines, got_report.records, got_report.skipped) == (
        want_report.lines,
        want_report.records,
        want_report.skipped,
    )
    return got


GOOD_TS = ["2025-05-01T10:00:{:02d}Z", "2025-05-01T11:{:02d}:07Z", "2025-05-{:02d}T23:59:59Z"]
ODD_TS = [
    "1748772000",
    "1748772000123",
    "2025-06-02",
    "2025-06-01T10:00:00.250Z",
    "2025-06-01 10:00:00+02:00",
    "2025-06-01 10:00:00Z",
    "2025-05-01T10:00:60Z",
    "2024-02-29T23:59:59Z",
    "2025-05-01T+9:00:00Z",
]
BAD_TS = [
    "",
    "  ",
    "yesterday",
    "2025-13-01T00:00:00Z",
    "nan",
    "2025-05-01T10:00:61Z",
    "2025-05-01T10:00:6xZ",
    "2025-02-29T00:00:00Z",
    "2025-05-01T24:00:00Z",
    "2025-05-01T10:60:00Z",
]
GOOD_INT = ["0", "1", "17", "250", "4000"]
ODD_INT = ["", " 12", "+3", "1.0", "007", "1_000"]
BAD_INT = ["1.5", "x", "-4", "nan"]
COSTS = ["", "", "0.0035", "0.00481750", "1e-3", " 0.5 ", "0"]
BAD_COSTS = ["nan", "-1", "abc"]
MODELS = ["gpt-4o", "claude-sonnet-4-5", "gemini-2.5-pro", "mistral-large", "my-model", " gpt-4o-mini "]
PROVIDERS = ["", "", "openai", "OpenAI", "anthropic", " google "]


def make_rows(rng: random.Random, n: int, *, messy: float, with_id: bool) -> list[list[str]]:
    rows = []
    for i in range(n):
        bad = rng.random() < messy
        template = rng.choice(GOOD_TS)
        ts = template.format(rng.randrange(1, 29) if "T23" in template else rng.randrange(60))
        if rng.random() < messy:
            ts = rng.choice(ODD_TS + (BAD_TS if bad else []))
        inp, out = rng.choice(GOOD_INT[3:]), rng.choice(GOOD_INT[2:])
        cached, cw, reasoning = rng.choice(GOOD_INT[:3]), rng.choice(GOOD_INT[:2]), rng.choice(GOOD_INT[:2])
        req = rng.choice(GOOD_INT)
        if rng.random() < messy:
            inp = rng.choice(ODD_INT + (BAD_INT if bad else []))
        if rng.random() < messy:
            req = rng.choice(ODD_INT + (BAD_INT if bad else []))
        cost = rng.choice(COSTS + (BAD_COSTS if bad else []))
        provider = rng.choice(PROVIDERS + (["nosuch"] if bad else []))
        model = rng.choice(MODELS + ([""] if bad else []))
        row_id = f"req-{i}" if with_id and rng.random() < 0.5 else ""
        rows.append(
            [ts, provider, model, rng.choice(["alice", "", " bob "]), rng.choice(["web", ""]), req, inp]
            + [cached, cw, out, reasoning, cost, row_id]
        )
    return rows


HEADER = (
    "timestamp,provider,model,user,project,requests,input_tokens,cached_tokens,cache_write_tokens,"
    "output_tokens,reasoning_tokens,cost_usd,id"
)


@pytest.mark.parametrize("chunk", [5, 64, csv_generic.CHUNK_ROWS])
@pytest.mark.parametrize("messy", [0.0, 0.02, 0.3])
def test_chunked_path_matches_row_by_row(tmp_path, monkeypatch, chunk, messy):
    monkeypatch.setattr(csv_generic, "CHUNK_ROWS", chunk)
    rng = random.Random(f"{chunk}-{messy}")
    rows = make_rows(rng, 3000, messy=messy, with_id=messy > 0.1)
    # Identical rows (kept, with occurrence keys), at chunk boundaries and within chunks.
    rows += rows[:40] + rows[10:12] * 3
    lines = [",".join(r) for r in rows]
    if messy:
        for _ in range(12):
            at = rng.randrange(len(lines))
            lines[at] = rng.choice(["", "   ", "only,three,fields", lines[at] + ",extra"])
    f = tmp_path / "u.csv"
    f.write_text(HEADER + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    recs = assert_same(f, {"user": "default-user", "project": "default-proj"})
    assert len(recs) > 1000
    if messy == 0.0:
        # Without the id column and with defaults: every row a record, occurrence keys present.
        assert len(recs) == len(rows)
        assert any("#" in r.dedup_key for r in recs)


def test_unreadable_lines_reported_in_line_order(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_generic, "CHUNK_ROWS", 4)
    rng = random.Random(3)
    lines = [",".join(r).encode() for r in make_rows(rng, 40, messy=0.0, with_id=False)]
    lines[5] = b"2025-05-01T10:00:00Z,openai,gpt-4o,\xff\xfe,web,1,1,0,0,1,0,,"
    lines[6] = b"2025-05-01T10:00:00Z,openai,gpt-4o,alice,web,1,1,0,0,1,0,-1,"  # negative cost
    lines[7] = b"2025-05-01T10:00:00Z,openai,gpt-4o,alice,web,1,1,0,0,1,0,,,"  # one field too many
    lines[9] = b"\xc3"
    lines[21] = b"bad-timestamp,openai,gpt-4o,alice,web,1,1,0,0,1,0,,"
    f = tmp_path / "u.csv"
    f.write_bytes(b"\xef\xbb\xbf" + HEADER.encode() + b"\r\n" + b"\n".join(lines) + b"\n\xff\n")
    assert_same(f)
    _, report = fast(f, {"format": "generic"})
    assert [e.line for e in report.errors] == [7, 8, 9, 11, 23, 42]


def test_quoted_fields_switch_to_csv_reader(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_generic, "CHUNK_ROWS", 8)
    rng = random.Random(5)
    lines = [",".join(r) for r in make_rows(rng, 200, messy=0.05, with_id=False)]
    # A quoted user with a comma, and one spanning two lines, after a few plain chunks.
    lines[50] = '2025-05-01T10:00:00Z,openai,gpt-4o,"smith, ann",web,1,10,0,0,5,0,,'
    lines[60] = '2025-05-01T10:00:01Z,openai,gpt-4o,"two\nlines",web,1,10,0,0,5,0,,'
    lines[70] = "2025-05-01T10:00:02Z,openai,gpt-4o,cr\rinside,web,1,10,0,0,5,0,,"
    f = tmp_path / "u.csv"
    f.write_text(HEADER + "\n" + "\n".join(lines[:70] + lines[71:]) + "\n", encoding="utf-8")
    recs = assert_same(f)
    assert {"smith, ann", "two\nlines"} <= {r.user for r in recs}
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes((HEADER + "\r\n" + "\r\n".join(lines[:50]) + "\r\n").encode())
    assert_same(crlf)


def test_mapped_and_minimal_columns(tmp_path):
    rng = random.Random(11)
    rows = make_rows(rng, 500, messy=0.05, with_id=False)
    f = tmp_path / "m.csv"
    f.write_text(
        "when,model,prompt_tokens,completion_tokens\n"
        + "\n".join(f"{r[0]},{r[2]},{r[6]},{r[9]}" for r in rows)
        + "\n",
        encoding="utf-8",
    )
    recs = assert_same(f, {"map": {"when": "timestamp"}, "provider": "azure"})
    assert recs and {r.provider for r in recs} == {"azure"}


def test_default_model_fills_blank_model_cells(tmp_path, monkeypatch):
    """``--model`` (options["model"]): rows with a blank model cell take it on both paths; without the
    option such rows are reported as they were."""
    monkeypatch.setattr(csv_generic, "CHUNK_ROWS", 16)
    rng = random.Random(9)
    rows = make_rows(rng, 400, messy=0.0, with_id=False)
    for r in rows[::7]:
        r[2] = rng.choice(["", "  "])
    f = tmp_path / "u.csv"
    f.write_text(HEADER + "\n" + "\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8")
    recs = assert_same(f, {"model": "gpt-4.1"})
    assert len(recs) == len(rows)
    assert [r.model for r in recs[::7]] == ["gpt-4.1"] * len(rows[::7])
    assert {r.provider for r in recs[::7]} <= {"openai", "anthropic", "google"}  # row's own or guessed
    _, report = fast(f, {"format": "generic"})
    assert report.skipped == len(rows[::7]) and "model" in str(report.errors[0])


@pytest.mark.parametrize("unit", ["s", "ms"])
def test_offsets_from_a_start(tmp_path, monkeypatch, unit):
    """With --start, timestamps are offsets from it (seconds, or milliseconds); both paths agree, and
    a cell that is not an offset is reported, not read as a date."""
    monkeypatch.setattr(csv_generic, "CHUNK_ROWS", 32)
    rng = random.Random(unit)
    rows = make_rows(rng, 300, messy=0.0, with_id=False)
    offsets = sorted(rng.randrange(0, 3_600_000) for _ in rows)
    for r, off in zip(rows, offsets):
        r[0] = str(off)
    rows[40][0] = "2025-05-01T10:00:00Z"
    rows[41][0] = "-3"
    f = tmp_path / "u.csv"
    f.write_text(HEADER + "\n" + "\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8")
    options = {"start": "2025-01-06", "time_unit": unit}
    recs = assert_same(f, options)
    start, per_second = 1736121600, 1000 if unit == "ms" else 1
    kept = [off for i, off in enumerate(offsets) if i not in (40, 41)]
    assert [r.ts for r in recs] == [start + off // per_second for off in kept]
    _, report = fast(f, {"format": "generic", **options})
    assert [e.line for e in report.errors] == [42, 43]
    assert "counts" in str(report.errors[0]) and "not an offset" in str(report.errors[1])


@pytest.mark.parametrize("chunk", [300, 4096])
def test_runs_of_lines_match_row_by_row(tmp_path, monkeypatch, chunk):
    """The file read a run of lines at a time (small reads here, so many runs and lines cut across
    reads), with a non-UTF-8 line, an empty line and later a quoted field: same records, keys and
    reports as row by row."""
    monkeypatch.setattr(csv_generic, "LineReader", partial(LineReader, chunk=chunk))
    monkeypatch.setattr(csv_generic, "CHUNK_ROWS", 16)
    rng = random.Random(chunk)
    lines = [",".join(r).encode() for r in make_rows(rng, 600, messy=0.02, with_id=False)]
    lines[150] = b""
    lines[300] = b"2025-05-01T10:00:00Z,openai,gpt-4o,\xff,web,1,1,0,0,1,0,,"
    lines[450] = b'2025-05-01T10:00:00Z,openai,gpt-4o,"a, b",web,1,1,0,0,1,0,,'
    f = tmp_path / "u.csv"
    f.write_bytes(HEADER.encode() + b"\n" + b"\n".join(lines) + b"\n")
    recs = assert_same(f)
    assert len(recs) > 500 and "a, b" in {r.user for r in recs}
    _, report = fast(f, {"format": "generic"})
    assert 302 in [e.line for e in report.errors]
