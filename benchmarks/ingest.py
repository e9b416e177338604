"""Ingestion speed, each figure beside a baseline measured in the same run.

(a) 1,000,000 generated usage rows in the generic CSV format imported through the project's own path
    (``run_import`` with the csv adapter and the configured Pricer: what ``oaim import csv`` does; with
    a ``pricer_factory`` it parses and prices in a second process, also timed without), beside
    a raw ``sqlite3.executemany`` of the same rows into a table with the same columns and a UNIQUE
    de-duplication key (the physical line). Also ``Store.ingest`` alone on records already in memory.
(b) MB/s importing Claude Code logs from ``../shared/tools/gen_claude_logs.py`` through
    ``oaim import claude-code --path`` (a fresh process, as a user runs it), beside ccusage 20.0.24 on the
    same files, with both token totals printed; then a repeat import of the unchanged logs. By default at
    two sizes: 200 MB, and 500 MB, the scale at which the issue measured ccusage (a fresh process pays the
    same start-up, ~0.13 s, at any size, so the smaller set is the harder one for oaim).

Usage: python benchmarks/ingest.py [--rows 1000000] [--rounds 3] [--rounds-b 5] [--size 200MB,500MB]
                                   [--dir /tmp/oaim-ingest-bench] [--no-ccusage] [--skip-a] [--skip-b]
The last line printed is one JSON object with every figure (with several sizes, (b)'s figures are under
``claude``, by size).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers_common import gen_claude_logs  # noqa: E402 - the tests' call of the shared log generator

CCUSAGE_VERSION = "20.0.24"

# Model mix of the generated CSV: priced models of four providers plus one the price table cannot know,
# so the unpriced path is part of the measurement.
MODELS = [
    ("openai", "gpt-4o", 0.30),
    ("openai", "gpt-4o-mini", 0.25),
    ("openai", "o3", 0.08),
    ("anthropic", "claude-sonnet-4-20250514", 0.17),
    ("google", "gemini-2.5-flash", 0.12),
    ("mistral", "mistral-large-latest", 0.05),
    ("openai", "ft:gpt-4o:acme:internal", 0.03),
]
CSV_HEADER = (
    "timestamp,provider,model,user,project,requests,input_tokens,cached_tokens,output_tokens,"
    "reasoning_tokens,cost_usd"
)


def generate_csv(path: Path, rows: int, seed: int = 7) -> None:
    """Realistic usage export, in time order: 90 days, 40 users, 12 projects, seven models (one unknown
    to the price table), a fifth of the rows with a billed cost (as a provider export would carry)."""
    rng = random.Random(seed)
    start = int(datetime(2025, 5, 1, tzinfo=timezone.utc).timestamp())
    span = 90 * 86400
    weights = [w for _, _, w in MODELS]
    users = [f"user{i:02d}" for i in range(40)]
    projects = [f"proj-{i}" for i in range(12)]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(CSV_HEADER + "\n")
        out = []
        # Exports are chronological; run_import's batches then each cover a stretch of time.
        stamps = sorted(start + rng.randrange(span) for _ in range(rows))
        for ts in stamps:
            provider, model, _ = rng.choices(MODELS, weights)[0]
            inp = int(rng.lognormvariate(7.0, 1.2)) + 1
            cached = rng.randrange(inp) if rng.random() < 0.4 else 0
            outp = int(rng.lognormvariate(5.5, 1.0))
            reasoning = rng.randrange(outp + 1) if model == "o3" else 0
            cost = f"{(inp * 2.5 + outp * 10) / 1e6:.8f}" if rng.random() < 0.2 else ""
            stamp = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            out.append(
                f"{stamp},{provider},{model},{rng.choice(users)},{rng.choice(projects)},1,"
                f"{inp},{cached},{outp},{reasoning},{cost}\n"
            )
            if len(out) >= 50_000:
                fh.writelines(out)
                out = []
        fh.writelines(out)
    tmp.replace(path)


def raw_executemany(db_path: Path, rows: list[tuple], columns: list[str]) -> float:
    """Seconds to insert ROWS with plain sqlite3 into a same-column table with a UNIQUE dedup key."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-65536")  # the store's own settings: the baseline gets them too
    cols = ", ".join(f"{c} {'TEXT UNIQUE NOT NULL' if c == 'dedup_key' else ''}" for c in columns)
    conn.execute(f"CREATE TABLE usage_records (id INTEGER PRIMARY KEY, {cols})")
    sql = (
        f"INSERT INTO usage_records ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        "ON CONFLICT (dedup_key) DO NOTHING"
    )
    t = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(sql, rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - t
    n = conn.execute("SELECT COUNT(*) FROM usage_records").fetchone()[0]
    conn.close()
    if n != len(rows):
        raise SystemExit(f"raw baseline stored {n} of {len(rows)} rows")
    return elapsed


def fresh_store(path: Path):
    from openai_monitor.store import Store

    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return Store(f"sqlite:///{path}")


def rollups_match_raw(db_path: Path) -> bool:
    """Rollup sums (every grain and dim) equal the raw table's: the fast path must not drift."""
    conn = sqlite3.connect(db_path)
    raw = conn.execute(
        "SELECT COUNT(*), SUM(input_tokens), SUM(output_tokens), ROUND(SUM(COALESCE(cost_usd, 0)), 4) "
        "FROM usage_records"
    ).fetchone()
    ok = True
    for _grain, _dim, *sums in conn.execute(
        "SELECT grain, dim, SUM(records), SUM(input_tokens), SUM(output_tokens), ROUND(SUM(cost_usd), 4) "
        "FROM rollup GROUP BY grain, dim"
    ):
        ok &= tuple(sums) == tuple(raw)
    conn.close()
    return ok


def bench_rows(work: Path, n_rows: int, rounds: int = 3) -> dict:
    from openai_monitor.config import load_settings
    from openai_monitor.domain import ParseReport
    from openai_monitor.service.ingest import BATCH_RECORDS, run_import
    from openai_monitor.service.pricing import make_pricer
    from openai_monitor.sources import get_adapter
    from openai_monitor.store.repo import _INSERT_COLUMNS, _ROW_OF

    csv_path = work / f"usage_{n_rows}.csv"
    if not csv_path.exists():
        t = time.perf_counter()
        generate_csv(csv_path, n_rows)
        print(
            f"generated {csv_path} ({csv_path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s"
        )
    options = {"format": "generic", "map": {}}
    adapter = get_adapter("csv")
    pricer = make_pricer(load_settings())

    # The project's path, end to end: read + parse + de-duplication keys + pricing + ingest + rollups,
    # parsed and priced in a second process (pricer_factory) and, for comparison, all in this one.
    factory = partial(make_pricer, load_settings())
    timings = {}
    import_ok = True
    for label, kwargs in (
        ("parallel", {"pricer_factory": factory}),
        ("in_process", {"parallel": False}),
    ):
        store = fresh_store(work / f"a_import_{label}.db")
        t = time.perf_counter()
        result = run_import(store, adapter, path=csv_path, options=options, pricer=pricer, **kwargs)
        timings[label] = time.perf_counter() - t
        store.dispose()
        if result.inserted != n_rows:
            raise SystemExit(
                f"import stored {result.inserted} of {n_rows} rows ({result.report.skipped} skipped)"
            )
        import_ok &= rollups_match_raw(work / f"a_import_{label}.db")
    t_import, t_serial = timings["parallel"], timings["in_process"]

    # Parsing and pricing alone: the share of the import spent before the store sees a record.
    t = time.perf_counter()
    report = ParseReport()
    records = list(adapter.read(csv_path, offset=0, state={}, run={}, report=report, options=options))
    t_parse = time.perf_counter() - t
    t = time.perf_counter()
    records = list(pricer.apply(records))
    t_price = time.perf_counter() - t

    # Store.ingest alone, records in memory, in the batches run_import uses.
    store = fresh_store(work / "a_ingest.db")
    t = time.perf_counter()
    for i in range(0, len(records), BATCH_RECORDS):
        store.ingest(records[i : i + BATCH_RECORDS], now=1_750_000_000)
    t_ingest = time.perf_counter() - t
    store.dispose()
    ingest_ok = rollups_match_raw(work / "a_ingest.db")

    # The physical line: the same row tuples, one executemany.
    rows = [_ROW_OF(r) + (1_750_000_000,) for r in records]
    del records
    t_raw = raw_executemany(work / "a_raw.db", rows, _INSERT_COLUMNS)

    # The import and its baseline again, alternately: one run of each swings by +-0.4 s on a shared
    # machine, so the figures are the medians over ROUNDS and each round's ratio is printed.
    raws, imports = [t_raw], [t_import]
    for _ in range(rounds - 1):
        store = fresh_store(work / "a_import_parallel.db")
        t = time.perf_counter()
        result = run_import(
            store, adapter, path=csv_path, options=options, pricer=pricer, pricer_factory=factory
        )
        imports.append(time.perf_counter() - t)
        store.dispose()
        import_ok &= result.inserted == n_rows and rollups_match_raw(work / "a_import_parallel.db")
        raws.append(raw_executemany(work / "a_raw.db", rows, _INSERT_COLUMNS))
    t_raw, t_import = statistics.median(raws), statistics.median(imports)
    ratios = [r / i for r, i in zip(raws, imports)]

    out = {
        "rows": n_rows,
        "raw_executemany_rows_s": round(n_rows / t_raw),
        "import_csv_rows_s": round(n_rows / t_import),
        "import_csv_in_process_rows_s": round(n_rows / t_serial),
        "store_ingest_rows_s": round(n_rows / t_ingest),
        "csv_parse_rows_s": round(n_rows / t_parse),
        "pricing_rows_s": round(n_rows / t_price),
        "import_vs_raw": round(t_raw / t_import, 3),
        "import_vs_raw_rounds": [round(x, 3) for x in ratios],
        "import_in_process_vs_raw": round(t_raw / t_serial, 3),
        "ingest_vs_raw": round(t_raw / t_ingest, 3),
        "rollups_consistent": import_ok and ingest_ok,
    }
    print(f"\n(a) {n_rows:,} usage rows ({csv_path.stat().st_size / 1e6:.0f} MB generic CSV)")
    print(f"{'':44}{'seconds':>9}{'rows/s':>11}{'vs raw':>8}")
    for label, secs in (
        ("raw sqlite3.executemany (baseline)", t_raw),
        ("oaim import csv (parsing process)", t_import),
        ("  same, all in one process", t_serial),
        ("Store.ingest alone (records in memory)", t_ingest),
        ("  of which not in the store: CSV parse", t_parse),
        ("  of which not in the store: pricing", t_price),
    ):
        print(f"{label:44}{secs:9.2f}{n_rows / secs:11,.0f}{t_raw / secs:8.2f}")
    print(
        f"raw and parsing-process import: medians of {rounds} alternate runs; per round, raw / import = "
        + ", ".join(f"{x:.2f}" for x in ratios)
    )
    print(f"rollups equal the raw table's sums: {out['rollups_consistent']}")
    return out


def children_cpu() -> float:
    """User + system CPU seconds of this process's finished children (and theirs, once reaped)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def oaim(home: Path, *args: str) -> tuple[float, dict]:
    env = {**os.environ, "OAIM_HOME": str(home), "NO_COLOR": "1"}
    env.pop("OAIM_DATABASE_URL", None)
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "openai_monitor", *args], env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"oaim {' '.join(args)} failed: {proc.stderr.strip()}")
    return elapsed, json.loads(proc.stdout)


def our_daily_totals(db_path: Path) -> dict[tuple[str, str], list[int]]:
    """(UTC day, model) -> [input excl. cache, output, cache writes, cache reads] from the day rollup,
    i.e. in ccusage's (Anthropic's) token semantics."""
    conn = sqlite3.connect(db_path)
    out = {}
    for bucket, model, inp, cached, write, outp in conn.execute(
        "SELECT bucket_ts, key, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens "
        "FROM rollup WHERE grain = 'd' AND dim = 'model'"
    ):
        day = datetime.fromtimestamp(bucket, timezone.utc).strftime("%Y-%m-%d")
        out[(day, model)] = [inp - cached - write, outp, write, cached]
    conn.close()
    return out


def find_ccusage(work: Path) -> tuple[str | None, str]:
    """Path of a ccusage 20.0.24 binary installed into a private npm prefix, or (None, why not)."""
    if shutil.which("npm") is None:
        return None, "npm not found"
    prefix = work / "npm"
    binary = prefix / "node_modules" / ".bin" / "ccusage"
    if not binary.exists():
        proc = subprocess.run(
            ["npm", "install", "--prefix", str(prefix), f"ccusage@{CCUSAGE_VERSION}"],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not binary.exists():
            return None, f"npm install ccusage@{CCUSAGE_VERSION} failed: {proc.stderr.strip()[-300:]}"
    return str(binary), ""


def bench_claude(work: Path, size: str, use_ccusage: bool, rounds: int = 5) -> dict:
    logs = work / f"claude-{size}"
    if not (logs / "ground_truth.json").exists():
        print(f"generating {size} of Claude Code logs into {logs} ...")
        gen_claude_logs(logs, size)
    files = list((logs / ".claude" / "projects").rglob("*.jsonl"))
    mb = sum(f.stat().st_size for f in files) / 1e6
    # Warm the page cache so neither tool pays for the first read from disk.
    for f in files:
        f.read_bytes()

    # An installed wheel has its modules compiled by pip; a checkout run under PYTHONDONTWRITEBYTECODE
    # would compile about 40 of them (0.07 s) in every run.
    compileall.compile_dir(REPO / "openai_monitor", quiet=1)
    home = work / "b_home"
    binary, why = find_ccusage(work) if use_ccusage else (None, "--no-ccusage given")
    env = {**os.environ, "HOME": str(logs), "TZ": "UTC"}
    env.pop("CLAUDE_CONFIG_DIR", None)

    def run_ccusage() -> tuple[float, dict]:
        t = time.perf_counter()
        proc = subprocess.run(
            [binary, "daily", "--json", "--offline"], env=env, capture_output=True, text=True
        )
        elapsed = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"ccusage failed: {proc.stderr.strip()[-300:]}")
        return elapsed, json.loads(proc.stdout)

    if binary is not None:
        run_ccusage()  # node's start-up from a cold cache is not part of the comparison
    # Alternate rounds: oaim from an empty home, then ccusage on the same files. The host's speed drifts
    # (other tenants), so each round's ratio compares two runs made seconds apart.
    t_first, first = float("inf"), {}
    oaim_times: list[float] = []
    cc_times: list[float] = []
    oaim_cpu: list[float] = []
    cc_cpu: list[float] = []
    data: dict = {}
    for _ in range(rounds):
        shutil.rmtree(home, ignore_errors=True)
        c0 = children_cpu()
        t, res = oaim(home, "import", "claude-code", "--path", str(logs), "--json")
        oaim_cpu.append(children_cpu() - c0)
        oaim_times.append(t)
        if t < t_first:
            t_first, first = t, res
        if binary is not None:
            c0 = children_cpu()
            t_cc, data = run_ccusage()
            cc_cpu.append(children_cpu() - c0)
            cc_times.append(t_cc)
    t_repeat, repeat = oaim(home, "import", "claude-code", "--path", str(logs), "--json")
    ours = our_daily_totals(home / "usage.db")
    truth = json.loads((logs / "ground_truth.json").read_text())
    expected = {
        (r["date"], r["model"]): [
            r["inputTokens"],
            r["outputTokens"],
            r["cacheCreationTokens"],
            r["cacheReadTokens"],
        ]
        for r in truth["daily_by_model"]
    }
    our_tot = [sum(v[i] for v in ours.values()) for i in range(4)]
    out: dict = {
        "claude_mb": round(mb, 1),
        "claude_files": len(files),
        "oaim_import_s": round(t_first, 3),
        "oaim_mb_s": round(mb / t_first, 1),
        "oaim_in_process_s": first["seconds"],
        "repeat_import_process_s": round(t_repeat, 3),
        "repeat_import_in_process_s": repeat["seconds"],
        "repeat_files_read": repeat["files_read"],
        "oaim_equals_ground_truth": ours == expected,
        "oaim_totals": our_tot,
    }
    print(f"\n(b) Claude Code logs: {mb:.1f} MB in {len(files)} files")
    print(f"{'':52}{'seconds':>9}{'MB/s':>9}")
    label = f"oaim import claude-code (fresh process, best of {rounds})"
    print(f"{label:52}{t_first:9.2f}{mb / t_first:9.1f}")
    print(f"{'  of which run_import itself':52}{first['seconds']:9.2f}{mb / first['seconds']:9.1f}")

    if binary is None:
        print(f"ccusage column skipped: {why}")
        out["ccusage"] = f"skipped: {why}"
    else:
        best = min(cc_times)
        tot = data.get("totals", {})
        cc_tot = [
            tot.get("inputTokens"),
            tot.get("outputTokens"),
            tot.get("cacheCreationTokens"),
            tot.get("cacheReadTokens"),
        ]
        ratios = [c / o for o, c in zip(oaim_times, cc_times)]
        label = f"ccusage {CCUSAGE_VERSION} daily --json --offline (best of {rounds})"
        print(f"{label:52}{best:9.2f}{mb / best:9.1f}")
        print(
            f"oaim / ccusage speed: best against best {best / t_first:.2f}; median of the rounds "
            f"{statistics.median(ratios):.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
        print(
            f"CPU seconds (user + system, all their processes), median of the rounds: oaim "
            f"{statistics.median(oaim_cpu):.2f}, ccusage {statistics.median(cc_cpu):.2f}"
        )
        out.update(
            {
                "ccusage_s": round(best, 3),
                "ccusage_mb_s": round(mb / best, 1),
                "oaim_vs_ccusage": round(best / t_first, 2),
                "oaim_vs_ccusage_round_median": round(statistics.median(ratios), 2),
                "oaim_vs_ccusage_rounds": [round(r, 2) for r in ratios],
                "oaim_rounds_s": [round(t, 3) for t in oaim_times],
                "ccusage_rounds_s": [round(t, 3) for t in cc_times],
                "oaim_cpu_s_median": round(statistics.median(oaim_cpu), 3),
                "ccusage_cpu_s_median": round(statistics.median(cc_cpu), 3),
                "ccusage_totals": cc_tot,
                "totals_identical": cc_tot == our_tot,
            }
        )
    names = ("input (excl. cache)", "output", "cache writes", "cache reads")
    print(f"{'token totals':22}{'oaim':>16}{'ccusage':>16}{'ground truth':>16}")
    truth_tot = [sum(v[i] for v in expected.values()) for i in range(4)]
    cc = out.get("ccusage_totals") or ["-"] * 4
    for i, name in enumerate(names):
        print(f"{name:22}{our_tot[i]:>16,}{cc[i]:>16,}{truth_tot[i]:>16,}")
    if "totals_identical" in out:
        print(f"oaim totals identical to ccusage: {out['totals_identical']}")
    print(
        f"oaim per (UTC day, model) equal to the generator's ground truth: {out['oaim_equals_ground_truth']}"
    )
    print(
        f"repeat import of unchanged logs: {repeat['seconds']:.3f} s inside the import "
        f"({repeat['files_read']} files read), {t_repeat:.2f} s for the whole process"
    )
    out.update(claude_floors(work, files, home / "usage.db"))
    return out


def claude_floors(work: Path, files: list[Path], db_path: Path) -> dict:
    """What any importer of these logs into SQLite pays at least, measured in the same run: the usage
    lines found and parsed by a plain orjson reader (one process), and the records oaim stored written
    again by one raw ``executemany``. ccusage does the first part only (it keeps nothing)."""
    import orjson

    from openai_monitor.store.repo import _INSERT_COLUMNS

    t = time.perf_counter()
    n = 0
    for f in files:
        data = f.read_bytes()
        pos = 0
        while (i := data.find(b'"usage"', pos)) >= 0:
            start = data.rfind(b"\n", 0, i) + 1
            stop = data.find(b"\n", i)
            stop = len(data) if stop < 0 else stop
            orjson.loads(data[start:stop])
            n += 1
            pos = stop
    t_reader = time.perf_counter() - t
    conn = sqlite3.connect(db_path)
    rows = conn.execute(f"SELECT {', '.join(_INSERT_COLUMNS)} FROM usage_records").fetchall()
    conn.close()
    t_write = raw_executemany(work / "b_raw.db", rows, _INSERT_COLUMNS)
    print(f"floors: plain orjson reader (find + loads, {n:,} usage lines, one process) {t_reader:.2f} s; ")
    print(f"        raw sqlite3.executemany of the {len(rows):,} records stored {t_write:.2f} s")
    return {"floor_orjson_reader_s": round(t_reader, 3), "floor_raw_write_s": round(t_write, 3)}


_SPIN = "import time\nt = time.perf_counter()\nx = 0\nfor i in range(6_000_000): x += i\nprint(time.perf_counter() - t)"


def second_core() -> float:
    """How much of a second core this machine gives right now: a CPU-bound loop alone, then two copies at
    once; 1.0 means the pair ran as fast as one alone. Both imports measured here that use a second
    process depend on it (on a shared host it varied from 0.6 to 1.0 within one day)."""

    def spin(n: int) -> float:
        procs = [
            subprocess.Popen([sys.executable, "-c", _SPIN], stdout=subprocess.PIPE, text=True)
            for _ in range(n)
        ]
        return max(float(p.communicate()[0]) for p in procs)

    alone = min(spin(1) for _ in range(2))
    pair = min(spin(2) for _ in range(2))
    return round(alone / pair, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument(
        "--size", default="200MB,500MB", help="size(s) of the generated Claude Code logs, comma-separated"
    )
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "oaim-ingest-bench"))
    ap.add_argument("--no-ccusage", action="store_true")
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-b", action="store_true")
    ap.add_argument("--rounds", type=int, default=3, help="alternate runs of (a)'s import and its baseline")
    ap.add_argument("--rounds-b", type=int, default=5, help="alternate runs of (b)'s import and ccusage")
    args = ap.parse_args()
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    # Prices and config come from an empty home: the user's own overrides must not change the figures.
    os.environ["OAIM_HOME"] = str(work / "a_home")
    shutil.rmtree(work / "a_home", ignore_errors=True)
    figures: dict = {"second_core_before": second_core()}
    print(
        f"second core available: {figures['second_core_before']:.2f} (two CPU-bound loops at once vs one alone)"
    )
    if not args.skip_a:
        figures.update(bench_rows(work, args.rows, max(args.rounds, 1)))
    if not args.skip_b:
        sizes = [size.strip() for size in args.size.split(",") if size.strip()]
        per_size = {
            size: bench_claude(work, size, not args.no_ccusage, max(args.rounds_b, 1)) for size in sizes
        }
        if len(per_size) == 1:
            figures.update(per_size[sizes[0]])
        else:
            figures["claude"] = per_size
            ratios = [
                f"{out['claude_mb']:.0f} MB {out['oaim_vs_ccusage_round_median']:.2f}"
                for out in per_size.values()
                if "oaim_vs_ccusage_round_median" in out
            ]
            if ratios:
                print(f"\n(b) oaim / ccusage speed, median of the rounds: {'; '.join(ratios)}")
    figures["second_core_after"] = second_core()
    print(f"second core available at the end: {figures['second_core_after']:.2f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
