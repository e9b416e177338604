"""The streaming line reader, timestamps and the adapter registry."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from openai_monitor.errors import InputError
from openai_monitor.sources import ADAPTERS, get_adapter
from openai_monitor.sources.base import Adapter, LineReader, parse_iso_ts


def lines_of(data: bytes, **kw) -> tuple[list, LineReader]:
    r = LineReader(io.BytesIO(data), **kw)
    return list(r), r


def test_complete_lines_and_trailing_partial_line_not_consumed_when_incremental():
    got, r = lines_of(b"a\nbb\n\nccc", incremental=True)
    assert got == [(1, b"a"), (2, b"bb"), (3, b"")]
    assert (r.offset, r.lineno) == (6, 3)
    got, r = lines_of(b"a\nbb\n\nccc", incremental=False)
    assert got[-1] == (4, b"ccc") and r.offset == 9


def test_resume_from_offset_keeps_true_line_numbers():
    data = b"one\ntwo\nthree\n"
    first = LineReader(io.BytesIO(data[:8]))
    assert list(first) == [(1, b"one"), (2, b"two")]
    again = LineReader(io.BytesIO(data), first.offset, first.lineno)
    assert list(again) == [(3, b"three")]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64])
def test_matching_equals_filtered_iteration_for_any_chunk_size(chunk):
    data = b"x usage 1\nnothing\n\nusage at start\nmid usage\nno\nusage-tail-without-newline"
    for incremental in (True, False):
        plain = [(n, line) for n, line in LineReader(io.BytesIO(data), chunk=chunk, incremental=incremental)]
        want = [(n, line) for n, line in plain if b"usage" in line]
        r = LineReader(io.BytesIO(data), chunk=chunk, incremental=incremental)
        assert list(r.matching(b"usage")) == want
        r2 = LineReader(io.BytesIO(data), chunk=chunk, incremental=incremental)
        list(r2)
        assert (r.offset, r.lineno) == (r2.offset, r2.lineno)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64])
def test_blocks_equal_iteration_for_any_chunk_size(chunk):
    """Runs of lines joined by newlines hold exactly the lines iterating yields, with the same final
    offset and line count; a partial last line is left unread when incremental."""
    data = b"a,1\nbb,22\n\nccc,3\nd\ntail-without-newline"
    for incremental in (True, False):
        plain = list(LineReader(io.BytesIO(data), chunk=chunk, incremental=incremental))
        r = LineReader(io.BytesIO(data), chunk=chunk, incremental=incremental)
        lines = [line for run in r.blocks() for line in run.split(b"\n")]
        assert lines == [line for _, line in plain]
        r2 = LineReader(io.BytesIO(data), chunk=chunk, incremental=incremental)
        list(r2)
        assert (r.offset, r.lineno) == (r2.offset, r2.lineno)


def test_blocks_stop_where_asked_and_before_an_overlong_line():
    """A caller that stops at a run reads it again by iterating (the offset moves past a run only when
    the next is asked for); an over-long line ends the runs and iterating reports it."""
    data = b"l1\nl2\nl3\nl4\n" + b"y" * 100 + b"\nl6\n"
    r = LineReader(io.BytesIO(data), chunk=6, max_line=40)
    runs = r.blocks()
    assert next(runs) == b"l1\nl2"
    assert next(runs) == b"l3\nl4"
    runs.close()
    assert (r.offset, r.lineno) == (6, 2)
    assert list(r) == [(3, b"l3"), (4, b"l4"), (5, None), (6, b"l6")]
    r = LineReader(io.BytesIO(data), chunk=6, max_line=40)
    assert b"\n".join(r.blocks()).split(b"\n") == [b"l1", b"l2", b"l3", b"l4"]
    assert list(r) == [(5, None), (6, b"l6")]


@pytest.mark.parametrize("use_matching", [False, True])
def test_overlong_line_is_reported_as_none_without_being_kept(use_matching):
    data = b"ok 1\n" + b"y" * 100 + b"\nok 2\n"
    r = LineReader(io.BytesIO(data), max_line=40, chunk=16)
    got = list(r.matching(b"ok") if use_matching else r)
    assert got == [(1, b"ok 1"), (2, None), (3, b"ok 2")]
    assert r.offset == len(data)


def test_overlong_line_at_eof_is_reported_once_across_resumes():
    part1 = b"ok\n" + b"z" * 100
    r = LineReader(io.BytesIO(part1), max_line=40, chunk=16)
    assert list(r.matching(b"ok")) == [(1, b"ok"), (2, None)]
    assert r.in_long_line and r.offset == len(part1)
    data = part1 + b"z" * 50 + b"\nok again\n"
    r2 = LineReader(io.BytesIO(data), r.offset, r.lineno, max_line=40, chunk=16, skipping=True)
    assert list(r2.matching(b"ok")) == [(3, b"ok again")]
    assert r2.offset == len(data) and not r2.in_long_line


def test_two_gigabyte_line_without_newline_is_streamed_past(tmp_path):
    """A sparse 2 GiB file of NUL bytes, then a newline and a real line: memory stays bounded."""
    big = tmp_path / "absurd.jsonl"
    with open(big, "wb") as fh:
        fh.truncate(2 * 1024**3)
        fh.seek(0, os.SEEK_END)
        fh.write(b'\n{"usage": 1}\n')
    t = time.perf_counter()
    with open(big, "rb", buffering=0) as fh:
        r = LineReader(fh)
        got = list(r.matching(b'"usage"'))
    elapsed = time.perf_counter() - t
    assert got == [(1, None), (2, b'{"usage": 1}')]
    assert r.offset == big.stat().st_size
    print(f"skipped 2 GiB line in {elapsed:.2f}s")


def test_parse_iso_ts_fast_path_agrees_with_datetime():
    assert parse_iso_ts("2025-06-01T00:00:00.000Z") == 1748736000
    assert parse_iso_ts("2025-06-01T23:59:59.999Z") == 1748822399
    assert parse_iso_ts("2025-06-01T02:00:00+02:00") == 1748736000
    assert parse_iso_ts("2025-06-01T00:00:00") == 1748736000
    assert parse_iso_ts("2025-06-01T00:00:07.1234567Z") == 1748736007
    for bad in ("2025-06-01T25:00:00.000Z", "yesterday", None, 12):
        with pytest.raises(ValueError):
            parse_iso_ts(bad)


def test_registry():
    assert set(ADAPTERS) == {"claude-code", "codex", "gemini", "csv"}
    for name, adapter in ADAPTERS.items():
        assert isinstance(adapter, Adapter) and adapter.name == name
    assert get_adapter("gemini").replace is True
    assert get_adapter("claude-code").replace is False
    with pytest.raises(InputError, match="claude-code, codex, csv, gemini"):
        get_adapter("cursor")


@pytest.mark.parametrize("name", ["claude-code", "codex", "gemini", "csv"])
def test_missing_path_names_the_fix(name, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        get_adapter(name).discover(tmp_path / "nope")


def test_empty_files_give_nothing_and_no_error(tmp_path):
    from openai_monitor.domain import ParseReport

    for name, fname in [
        ("claude-code", "e.jsonl"),
        ("codex", "e.jsonl"),
        ("gemini", "e.jsonl"),
        ("csv", "e.csv"),
    ]:
        f = tmp_path / fname
        f.write_bytes(b"")
        report, state = ParseReport(), {}
        assert list(get_adapter(name).read(f, offset=0, state=state, run={}, report=report, options={})) == []
        assert report.skipped == 0 and state["offset"] == 0
    (tmp_path / "e.json").write_bytes(b"")
    assert (
        list(
            get_adapter("gemini").read(
                tmp_path / "e.json", offset=0, state={}, run={}, report=ParseReport(), options={}
            )
        )
        == []
    )


def test_discover_file_and_dir(tmp_path: Path):
    f = tmp_path / "a.jsonl"
    f.write_text("")
    assert get_adapter("claude-code").discover(f) == [f]
    assert get_adapter("claude-code").discover(tmp_path) == [f]
