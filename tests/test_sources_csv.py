"""Generic CSV/JSONL and BurstGPT adapter, on hand-made files and the real BurstGPT extracts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from openai_monitor.domain import ParseReport
from openai_monitor.errors import InputError
from openai_monitor.sources.csv_generic import CsvAdapter

BURST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "burstgpt"
A = CsvAdapter()


def read(path: Path, **options):
    report, state = ParseReport(), {}
    recs = list(A.read(path, offset=0, state=state, run={}, report=report, options=options))
    return recs, report


def test_generic_csv_semantics_and_provider_guess(tmp_path):
    f = tmp_path / "u.csv"
    f.write_text(
        "\ufefftimestamp,model,user,project,requests,input_tokens,cached_tokens,output_tokens,reasoning_tokens,cost_usd\n"
        "2025-06-01T10:00:00Z,gpt-4o,alice,web,1,1000,200,50,0,0.0035\n"
        "1748772000,claude-sonnet-4-5,bob,,2,10,0,5,,\n"
        "2025-06-02,gemini-2.5-pro,,,,1,0,1,0,\n",
        encoding="utf-8",
    )
    recs, report = read(f, project="default-proj")
    assert report.skipped == 0 and report.lines == 4
    r0, r1, r2 = recs
    assert (r0.ts, r0.provider, r0.user, r0.project, r0.input_tokens, r0.cached_input_tokens) == (
        1748772000,
        "openai",
        "alice",
        "web",
        1000,
        200,
    )
    assert r0.cost_usd == pytest.approx(0.0035) and r0.cost_reported
    assert (r1.ts, r1.provider, r1.requests, r1.project, r1.cost_usd) == (
        1748772000,
        "anthropic",
        2,
        "default-proj",
        None,
    )
    assert (r2.ts, r2.provider, r2.requests) == (1748822400, "google", 1)
    assert {r.source for r in recs} == {"csv"}


def test_dedup_keys_stable_and_identical_rows_kept(tmp_path):
    f = tmp_path / "u.csv"
    row = "2025-06-01T10:00:00Z,gpt-4o,7,3\n"
    f.write_text("timestamp,model,input_tokens,output_tokens\n" + row + row + "1748772000,gpt-4o,7,3\n")
    recs, _ = read(f)
    keys = [r.dedup_key for r in recs]
    assert len(set(keys)) == 3  # three identical calls (the third written as Unix seconds) are all kept
    assert keys[1] == keys[0] + "#1" and keys[2] == keys[0] + "#2"
    again, _ = read(f)
    assert [r.dedup_key for r in again] == keys
    g = tmp_path / "ids.csv"
    g.write_text("id,timestamp,model\nabc,2025-06-01T10:00:00Z,gpt-4o\n")
    assert read(g)[0][0].dedup_key == "csv:id:abc"


def test_map_option_and_wrong_columns(tmp_path):
    f = tmp_path / "export.csv"
    f.write_text("when,engine,in,out\n2025-06-01T10:00:00Z,gpt-4o,5,6\n")
    with pytest.raises(InputError) as exc:
        read(f)
    msg = str(exc.value)
    assert "timestamp, model" in msg and "when, engine, in, out" in msg
    # The hint names the file's own columns that look like the missing fields.
    assert "--map when=timestamp --map engine=model" in msg and "--model NAME" in msg
    f2 = tmp_path / "odd.csv"
    f2.write_text("a,b\n1,2\n")
    assert "--map COLUMN=timestamp --map COLUMN=model" in str(pytest.raises(InputError, read, f2).value)
    recs, _ = read(
        f, map={"when": "timestamp", "engine": "model", "in": "input_tokens", "out": "output_tokens"}
    )
    assert (recs[0].input_tokens, recs[0].output_tokens) == (5, 6)
    with pytest.raises(InputError, match="not a field"):
        read(f, map={"when": "time_of_day"})
    b = tmp_path / "burst.csv"
    b.write_text(
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,1,1,2,API log\n"
    )
    with pytest.raises(InputError, match="--format burstgpt"):
        read(b)


def test_bad_rows_reported_good_rows_kept(tmp_path):
    f = tmp_path / "u.csv"
    f.write_bytes(
        b"timestamp,model,input_tokens,cached_tokens,output_tokens\n"
        b"2025-06-01T10:00:00Z,gpt-4o,10,0,1\n"
        b"2025-06-01T10:00:00Z,gpt-4o,-10,0,1\n"
        b"2025-06-01T10:00:00Z,gpt-4\xff,10,0,1\n"
        b"soon,gpt-4o,10,0,1\n"
        b"2025-06-01T10:00:00Z,gpt-4o,10,20,1\n"
        b"2025-06-01T10:00:00Z,gpt-4o,10\n"
        b"2025-06-01T10:00:00Z,,10,0,1\n"
        b"2025-06-01T11:00:00Z,gpt-4o,ten,0,1\n"
        b"2025-06-01T12:00:00Z,gpt-4o,10,0,1"  # last line without newline is still read
    )
    recs, report = read(f)
    assert [r.ts for r in recs] == [1748772000, 1748779200]
    reasons = {e.line: e.reason for e in report.errors}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9]
    assert "negative input_tokens" in reasons[3] and "UTF-8" in reasons[4] and "timestamp" in reasons[5]
    assert (
        "exceed" in reasons[6] and "fields" in reasons[7] and "model" in reasons[8] and "number" in reasons[9]
    )


def test_jsonl_generic(tmp_path):
    f = tmp_path / "u.jsonl"
    f.write_text(
        '{"timestamp": 1748772000, "model": "o3", "input_tokens": 100, "output_tokens": 80, "reasoning_tokens": 60}\n'
        '{"timestamp": "2025-06-01T10:00:00Z", "model": "o3", "input_tokens": 1\n'
        '{"timestamp": 1748772000000, "model": "mistral-large-latest", "user": "ci"}\n'
    )
    recs, report = read(f)
    assert [(r.ts, r.provider, r.reasoning_tokens) for r in recs] == [
        (1748772000, "openai", 60),
        (1748772000, "mistral", 0),
    ]
    assert [e.line for e in report.errors] == [2]


def test_burstgpt_raw_real_rows():
    f = BURST / "burstgpt1_first400_rows.csv"
    with pytest.raises(InputError, match="--start"):
        read(f, format="burstgpt")
    recs, report = read(f, format="burstgpt", start=dt.date(2024, 1, 1))
    assert len(recs) == 400 and report.skipped == 0
    assert (recs[0].ts, recs[0].model, recs[0].input_tokens, recs[0].output_tokens, recs[0].user) == (
        1704067205,
        "gpt-3.5-turbo",
        472,
        18,
        "conversation",
    )
    assert sum(r.model == "gpt-4" for r in recs) == 80 and sum(r.user == "api" for r in recs) == 2
    assert sum(1 for r in recs if r.input_tokens == 0 and r.output_tokens == 0) == 17
    assert len({r.dedup_key for r in recs}) == 400
    again, _ = read(f, format="burstgpt", start="2024-01-01")
    assert [r.dedup_key for r in again] == [r.dedup_key for r in recs]


def test_burstgpt_hourly_real_aggregate():
    recs, report = read(
        BURST / "burstgpt1_hourly_days00-41.csv", format="burstgpt", start="2024-01-01T00:00:00"
    )
    assert report.skipped == 0
    assert sum(r.requests for r in recs) == 960_392
    assert sum(r.requests for r in recs if r.user == "conversation") == 115_672
    assert {(r.bucket_seconds, r.model, r.input_tokens, r.output_tokens) for r in recs} == {
        (3600, "unknown-burstgpt", 0, 0)
    }
    assert recs[0].ts == 1704067200 and len({r.dedup_key for r in recs}) == len(recs)


def test_burstgpt_wrong_layout(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not a BurstGPT layout"):
        read(f, format="burstgpt", start="2024-01-01")
    with pytest.raises(InputError, match="--format generic or --format burstgpt"):
        read(f, format="excel")


def test_discover(tmp_path):
    with pytest.raises(InputError, match="oaim import csv FILE"):
        A.discover(None)
    with pytest.raises(InputError, match="no .csv"):
        A.discover(tmp_path)


def test_default_model_for_a_trace_without_model_column(run_cli, oaim_home):
    """The real Azure LLM inference trace has no model column: --model names the deployment's model for
    every row; without it the error says so. Token totals are the file's own sums; a re-import adds nothing."""
    import csv
    import json

    trace = BURST.parent / "azure_llm_inference" / "azure2023_code_before1855.csv"
    res = run_cli("import", "csv", str(trace))
    assert res.exit_code == 2 and "--model NAME" in res.stderr and "Traceback" not in res.stderr
    args = ["--model", "gpt-4", "--user", "azure-code"]
    args += ["--map", "ContextTokens=input_tokens", "--map", "GeneratedTokens=output_tokens"]
    res = run_cli("import", "csv", str(trace), *args, "--json")
    assert res.exit_code == 0, res.stderr
    with open(trace, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert json.loads(res.stdout)["inserted"] == len(rows) > 1000
    summary = json.loads(run_cli("summary", "--json", "--since", "2023-01-01").stdout)
    assert summary["records"] == len(rows) and summary["unpriced_records"] == 0
    assert summary["input_tokens"] == sum(int(r["ContextTokens"]) for r in rows)
    assert summary["output_tokens"] == sum(int(r["GeneratedTokens"]) for r in rows)
    by_model = json.loads(run_cli("summary", "--json", "--by", "model", "--since", "2023-01-01").stdout)
    assert [r["model"] for r in by_model["rows"]] == ["gpt-4"]
    again = run_cli("import", "csv", str(trace), *args, "--full", "--json")
    assert json.loads(again.stdout)["inserted"] == 0


def test_mooncake_trace_with_millisecond_offsets(run_cli, oaim_home):
    """The real Mooncake trace (JSON Lines, milliseconds from the trace start, no model): --start,
    --time-unit ms and --model import every line, in the 40 minutes after the start."""
    import json

    trace = BURST.parent / "mooncake" / "conversation_trace_first40min.jsonl"
    args = ["--start", "2025-01-06", "--time-unit", "ms", "--model", "kimi", "--provider", "other"]
    args += ["--map", "input_length=input_tokens", "--map", "output_length=output_tokens"]
    res = run_cli("import", "csv", str(trace), *args, "--json")
    assert res.exit_code == 0, res.stderr
    objs = [json.loads(line) for line in trace.read_text().splitlines()]
    assert json.loads(res.stdout)["inserted"] == len(objs) > 7000
    s = json.loads(run_cli("summary", "--json", "--since", "2025-01-06").stdout)
    assert s["first_ts"] == "2025-01-06T00:00:00Z"
    last = 1736121600 + max(o["timestamp"] for o in objs) // 1000
    assert s["last_ts"] == dt.datetime.fromtimestamp(last, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert s["input_tokens"] == sum(o["input_length"] for o in objs)
    bad = run_cli("import", "csv", str(trace), "--time-unit", "ms", "--model", "kimi")
    assert bad.exit_code == 2 and "--start" in bad.stderr
