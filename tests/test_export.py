"""Streaming export: round trips equal the database, bounds, chunked reads, bounded memory, CLI errors."""

from __future__ import annotations

import csv
import io
import json
import math
import sqlite3
import sys
import tracemalloc

import pytest
from insights_data import DAY, START, make_db

from openai_monitor.domain import UsageRecord
from openai_monitor.errors import InputError, MonitorError
from openai_monitor.service.export import export
from openai_monitor.store.db import sqlite_path


@pytest.fixture
def db(db_url: str) -> str:
    make_db(db_url).dispose()
    return db_url


def _sql(url: str, sql: str, params: tuple = ()) -> tuple:
    with sqlite3.connect(sqlite_path(url)) as c:
        return c.execute(sql, params).fetchone()


def _truth(url: str, lo: int = 0, hi: int = 2**62) -> tuple:
    return _sql(
        url,
        "SELECT COUNT(*), SUM(cost_usd), SUM(input_tokens), SUM(cached_input_tokens), SUM(output_tokens) "
        "FROM usage_records WHERE ts >= ? AND ts < ?",
        (lo, hi),
    )


def _sums(rows: list[dict]) -> tuple:
    return (
        len(rows),
        sum(float(r["cost_usd"]) for r in rows),
        sum(int(r["input_tokens"]) for r in rows),
        sum(int(r["cached_input_tokens"]) for r in rows),
        sum(int(r["output_tokens"]) for r in rows),
    )


def _read(path, fmt: str) -> list[dict]:
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    if fmt == "json":
        return json.loads(path.read_text(encoding="utf-8"))
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "parquet"])
def test_records_round_trip(db: str, tmp_path, fmt: str) -> None:
    out = tmp_path / f"records.{fmt}"
    res = export(db, fmt=fmt, output=out, chunk_rows=257)
    rows = _read(out, fmt)
    truth = _truth(db)
    got = _sums(rows)
    assert res.rows == truth[0] == got[0]
    assert got[1] == pytest.approx(truth[1])
    assert got[2:] == truth[2:]
    assert not (tmp_path / f"records.{fmt}.part").exists()
    # Every stored record once, in time order, with the user column and an ISO time.
    assert len({r["dedup_key"] for r in rows}) == truth[0]
    ts = [int(r["ts"]) for r in rows]
    assert ts == sorted(ts)
    assert {r["user"] for r in rows} == {"batchbot", "ann", "ben"}
    first = rows[0]
    t = first["time"] if fmt != "parquet" else first["time"].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert t.startswith("2025-01-06T02:")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_daily_rollups_round_trip(db: str, tmp_path, fmt: str) -> None:
    out = tmp_path / f"daily.{fmt}"
    lo, hi = START + 7 * DAY, START + 14 * DAY
    res = export(db, fmt=fmt, what="daily", by="user", output=out, since=lo, until=hi)
    rows = _read(out, fmt)
    n, cost, req = _sql(
        db,
        "SELECT COUNT(*), SUM(cost_usd), SUM(requests) FROM rollup WHERE grain='d' AND dim='user' "
        "AND bucket_ts >= ? AND bucket_ts < ?",
        (lo, hi),
    )
    assert res.rows == len(rows) == n == 15  # 5 weekdays x 3 users
    assert sum(float(r["cost_usd"]) for r in rows) == pytest.approx(cost)
    assert sum(int(r["requests"]) for r in rows) == req
    assert sum(float(r["cost_usd"]) for r in rows) == pytest.approx(_truth(db, lo, hi)[1])
    days = sorted({str(r["day"]) for r in rows})
    assert days[0] == "2025-01-13" and days[-1] == "2025-01-17"


def test_since_until_bounds(db: str, tmp_path) -> None:
    lo, hi = START + 3 * DAY, START + 10 * DAY
    out = tmp_path / "b.jsonl"
    export(db, fmt="jsonl", output=out, since=lo, until=hi)
    rows = _read(out, "jsonl")
    assert rows and all(lo <= r["ts"] < hi for r in rows)
    truth = _truth(db, lo, hi)
    assert _sums(rows)[0] == truth[0] and _sums(rows)[1] == pytest.approx(truth[1])


def test_reads_in_chunks(db: str, tmp_path) -> None:
    seen: list[int] = []
    res = export(db, fmt="csv", output=tmp_path / "c.csv", chunk_rows=100, on_chunk=seen.append)
    n = _truth(db)[0]
    assert max(seen) == 100 and sum(seen) == n
    assert res.chunks == len(seen) == math.ceil(n / 100)


def _bulk_db(url: str, n: int) -> None:
    recs = [
        UsageRecord(
            ts=START + i * 7, provider="openai", model=f"m{i % 5}", dedup_key=f"k{i}", user=f"u{i % 13}",
            input_tokens=1000 + i % 97, output_tokens=100 + i % 31, cost_usd=0.001 * (i % 11),
        )
        for i in range(n)
    ]  # fmt: skip
    make_db(url, recs).dispose()


def _peak_bytes(url: str, out, fmt: str) -> int:
    tracemalloc.start()
    try:
        export(url, fmt=fmt, output=out, chunk_rows=500)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_memory_does_not_grow_with_rows(tmp_path, fmt: str) -> None:
    small, big = tmp_path / "small.db", tmp_path / "big.db"
    _bulk_db(f"sqlite:///{small}", 4_000)
    _bulk_db(f"sqlite:///{big}", 24_000)
    p_small = _peak_bytes(f"sqlite:///{small}", tmp_path / f"s.{fmt}", fmt)
    p_big = _peak_bytes(f"sqlite:///{big}", tmp_path / f"b.{fmt}", fmt)
    size_big = (tmp_path / f"b.{fmt}").stat().st_size
    # Six times the rows, (about) the same peak: nothing is held per row. Loading everything would
    # need several times the output size.
    assert p_big < 1.5 * p_small + 200_000, (p_small, p_big)
    assert p_big < size_big or fmt == "parquet", (p_big, size_big)


def test_stdout_json_array_is_valid(db: str) -> None:
    buf = io.StringIO()
    res = export(db, fmt="json", what="daily", stdout=buf)
    data = json.loads(buf.getvalue())
    assert len(data) == res.rows > 0 and {"day", "key", "cost_usd"} <= set(data[0])


def test_empty_database_exports_header_or_empty_array(db_url: str, tmp_path) -> None:
    make_db(db_url, []).dispose()
    export(db_url, fmt="csv", output=tmp_path / "e.csv")
    assert (tmp_path / "e.csv").read_text().startswith("id,ts,time,")
    buf = io.StringIO()
    export(db_url, fmt="json", stdout=buf)
    assert json.loads(buf.getvalue()) == []


def test_missing_pyarrow_names_the_extra(db: str, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(MonitorError, match=r"pip install 'openai-usage-monitor\[parquet\]'"):
        export(db, fmt="parquet", output=tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_bad_options(db: str, tmp_path) -> None:
    with pytest.raises(InputError, match="--output"):
        export(db, fmt="parquet")
    with pytest.raises(InputError, match="use one of csv"):
        export(db, fmt="xml", output=tmp_path / "x")
    with pytest.raises(InputError, match="--until must be after"):
        export(db, fmt="csv", output=tmp_path / "x", since=10, until=5)


def test_cli_export(db: str, run_cli, tmp_path) -> None:
    r = run_cli("--db", db, "export", "--format", "csv", "--since", "2025-01-13", "--until", "2025-01-13")
    assert r.exit_code == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == _truth(db, START + 7 * DAY, START + 8 * DAY)[0]
    out = tmp_path / "d.parquet"
    r = run_cli("--db", db, "export", "-f", "parquet", "--what", "daily", "-o", str(out))
    assert r.exit_code == 0 and "wrote" in r.stderr and out.exists()
    r = run_cli("--db", db, "export", "-f", "parquet")
    assert r.exit_code == 2 and "--output FILE.parquet" in r.stderr
    r = run_cli("--db", db, "export", "-f", "csv", "--what", "weekly")
    assert r.exit_code == 2 and "records, daily" in r.stderr
    r = run_cli("--db", db, "export", "-f", "csv", "-o", str(tmp_path / "no" / "x.csv"))
    assert r.exit_code == 2 and "does not exist" in r.stderr


RESTORE_FIELDS = (
    "ts, bucket_seconds, provider, model, user_name, project, api_key_id, source, session_id, dedup_key, "
    "requests, input_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, output_tokens, "
    "reasoning_tokens, cost_reported, service_tier, tokens_estimated"
)


def _stored(url: str) -> list[tuple]:
    with sqlite3.connect(sqlite_path(url)) as c:
        return c.execute(
            f"SELECT {RESTORE_FIELDS}, cost_usd FROM usage_records ORDER BY dedup_key"
        ).fetchall()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_imports_back_as_stored(tmp_path, run_cli, fmt: str) -> None:
    """`oaim export` then `oaim import csv` of the file restores the records as they were stored: same
    keys (a second import, or an import of the original source, adds nothing), sources, billed costs,
    1h cache writes, tiers and estimated flags; computed costs are computed again with this install's
    prices. Before, an export re-imported was read as a generic table: every record again under a key
    made from its row id, and every computed cost turned into a billed one."""
    from insights_data import records

    from openai_monitor.service.pricing import make_pricer

    special = [
        UsageRecord(
            START + 100,
            "openai",
            "gpt-4o",
            "k-billed",
            "openai-usage-api",
            'a, "b"',
            "p\nq",
            requests=3,
            input_tokens=900,
            cached_input_tokens=100,
            output_tokens=50,
            cost_usd=0.25,
            cost_reported=True,
            service_tier="batch",
        ),
        UsageRecord(
            START + 200,
            "anthropic",
            "claude-sonnet-4-20250514",
            "k-cache",
            "claude-code",
            "ann",
            input_tokens=5000,
            cached_input_tokens=1000,
            cache_write_tokens=800,
            cache_write_1h_tokens=300,
            output_tokens=700,
            reasoning_tokens=100,
        ),
        UsageRecord(
            START + 3600,
            "openai",
            "gpt-4o-mini",
            "k-bucket",
            "proxy",
            bucket_seconds=3600,
            requests=5,
            input_tokens=10,
            output_tokens=10,
            tokens_estimated=True,
        ),
        UsageRecord(
            START + 400, "other", "my-own-model", "k-unknown", "csv", input_tokens=10, output_tokens=1
        ),
    ]
    src_url = f"sqlite:///{tmp_path / 'a.db'}"
    pricer = make_pricer()
    make_db(src_url, list(pricer.apply(records(weeks=1) + special))).dispose()
    out = tmp_path / f"e.{fmt}"
    assert run_cli("--db", src_url, "export", "-f", fmt, "-o", str(out)).exit_code == 0
    dst_url = f"sqlite:///{tmp_path / 'b.db'}"
    res = run_cli("--db", dst_url, "import", "csv", str(out), "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["inserted"] == len(records(weeks=1)) + len(special)
    got, want = _stored(dst_url), _stored(src_url)
    assert [r[:-1] for r in got] == [r[:-1] for r in want]
    assert [r[-1] for r in got] == pytest.approx([r[-1] for r in want])
    billed = [r for r in got if r[9] == "k-billed"][0]
    assert billed[-1] == 0.25 and billed[-4] == 1  # cost and cost_reported kept
    assert [r for r in got if r[9] == "k-unknown"][0][-1] is None  # still unpriced, not $0
    again = run_cli("--db", dst_url, "import", "csv", str(out), "--full", "--json")
    assert json.loads(again.stdout)["inserted"] == 0
    s_src = json.loads(run_cli("--db", src_url, "summary", "--json", "--since", "2025-01-01").stdout)
    s_dst = json.loads(run_cli("--db", dst_url, "summary", "--json", "--since", "2025-01-01").stdout)
    assert s_src == s_dst


def test_bad_lines_of_an_export_are_reported(tmp_path, run_cli, db: str) -> None:
    out = tmp_path / "e.csv"
    assert run_cli("--db", db, "export", "-f", "csv", "-o", str(out)).exit_code == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    i_in, i_key = header.index("input_tokens"), header.index("dedup_key")
    broken = lines[3].split(",")
    broken[i_in] = "-5"
    emptykey = lines[4].split(",")
    emptykey[i_key] = ""
    lines[3], lines[4], lines[5] = ",".join(broken), ",".join(emptykey), lines[5] + ",extra"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    dst = f"sqlite:///{tmp_path / 'b.db'}"
    res = run_cli("--db", dst, "import", "csv", str(out))
    assert res.exit_code == 0, res.stderr
    assert f"{out}:4: negative input_tokens" in res.stderr
    assert f"{out}:5: empty dedup_key" in res.stderr and f"{out}:6: wrong number of fields" in res.stderr
    assert _sql(dst, "SELECT COUNT(*) FROM usage_records")[0] == len(lines) - 1 - 3


def test_json_array_export_is_refused_with_the_fix(tmp_path, run_cli, db: str) -> None:
    out = tmp_path / "e.json"
    assert run_cli("--db", db, "export", "-f", "json", "-o", str(out)).exit_code == 0
    res = run_cli("--db", f"sqlite:///{tmp_path / 'b.db'}", "import", "csv", str(out))
    assert res.exit_code == 2 and "JSON Lines" in res.stderr and "-f jsonl" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_defaults_given_for_an_export_are_an_error_naming_the_fix(
    tmp_path, run_cli, db: str, fmt: str
) -> None:
    """An export is restored as stored, so a default user, model, ... would be silently ignored: the
    import refuses them in one line naming both fixes, and writes nothing; without them it restores."""
    out = tmp_path / f"e.{fmt}"
    assert run_cli("--db", db, "export", "-f", fmt, "-o", str(out)).exit_code == 0
    dst = f"sqlite:///{tmp_path / 'b.db'}"
    res = run_cli("--db", dst, "import", "csv", str(out), "--user", "ann", "--model", "gpt-4o")
    assert res.exit_code == 2, res.stderr
    assert "is an `oaim export`" in res.stderr and "--model, --user" in res.stderr
    assert "leave them out" in res.stderr and "--map" in res.stderr and "Traceback" not in res.stderr
    assert _sql(dst, "SELECT COUNT(*) FROM usage_records")[0] == 0
    ok = run_cli("--db", dst, "import", "csv", str(out), "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["inserted"] > 0
