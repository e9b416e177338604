"""Wall time of the report commands on a 1,000,000-row database, as fresh processes (what a user waits for).

Usage: python benchmarks/read_speed.py [--db PATH] [--rows 1000000] [--repeat 5]

The database is built through the project's own ingest path (``Pricer.apply`` then ``Store.ingest`` in
100k-record transactions, which also maintains the rollups) from generated records: one year ending
2025-10-31, 4 providers + an unpriced in-house model (12 models), 25 users and 8 projects with skewed
(Zipf-like) shares, a diurnal curve, quieter weekends and slow growth. With ``--db PATH`` an existing
database holding records is reused; otherwise it is built there (default: a temporary directory).

Each command runs ``--repeat`` times (after one warm-up run) and the median is printed beside three
baselines measured in the same run: ``python -c pass`` (interpreter start), ``python -c "import typer"``
(the CLI framework's import) and an empty Typer app with the same options as ``oaim daily`` (the framework's
import plus its per-invocation parameter handling). Target: under 0.5 s for ``summary --json`` and ``daily --json``.
Then the report queries alone are timed in this process (``build_report`` on a FastReader), which shows how
much of a command's wall time is the database work.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 0.5
END = dt.datetime(2025, 11, 1, tzinfo=dt.timezone.utc)
MODELS = [  # (provider, model, share, mean input tokens, mean output tokens)
    ("openai", "gpt-4o", 0.16, 2500, 400),
    ("openai", "gpt-4o-mini", 0.20, 1500, 300),
    ("openai", "o3", 0.05, 4000, 2500),
    ("openai", "o4-mini", 0.08, 3000, 1500),
    ("openai", "gpt-4.1", 0.07, 5000, 600),
    ("anthropic", "claude-sonnet-4", 0.18, 12000, 800),
    ("anthropic", "claude-opus-4", 0.03, 15000, 900),
    ("anthropic", "claude-3-5-haiku", 0.06, 3000, 300),
    ("google", "gemini-2.5-pro", 0.05, 6000, 1200),
    ("google", "gemini-2.5-flash", 0.08, 4000, 500),
    ("mistral", "mistral-large-latest", 0.03, 2000, 400),
    ("other", "internal-llm", 0.01, 1000, 200),  # not in any price list: stays unpriced
]
USERS = [f"user{i:02d}" for i in range(1, 26)]
PROJECTS = ["web", "api", "mobile", "data", "search", "support-bot", "eval", "batch-jobs"]
# Relative call volume by local hour (UTC here) and by weekday (Monday first).
DIURNAL = [0.2, 0.15, 0.1, 0.1, 0.1, 0.15, 0.3, 0.6, 1.0, 1.3, 1.4, 1.4, 1.2, 1.3, 1.4, 1.4, 1.3, 1.1, 0.9]
DIURNAL += [0.7, 0.6, 0.5, 0.4, 0.3]
WEEKLY = [1.0, 1.05, 1.05, 1.0, 0.9, 0.35, 0.3]


def generate(n: int, seed: int = 42):
    """Yield batches of UsageRecord with the spread described in the module docstring."""
    from openai_monitor.domain import UsageRecord

    rnd = random.Random(seed)
    start = END - dt.timedelta(days=365)
    days = [start + dt.timedelta(days=i) for i in range(365)]
    day_w = [WEEKLY[d.weekday()] * (0.6 + 0.8 * i / 365) for i, d in enumerate(days)]
    user_w = [1 / (i + 1) ** 0.9 for i in range(len(USERS))]
    proj_w = [1 / (i + 1) ** 0.7 for i in range(len(PROJECTS))]
    model_w = [m[2] for m in MODELS]
    batch: list = []
    day_pick = rnd.choices(range(365), weights=day_w, k=n)
    hour_pick = rnd.choices(range(24), weights=DIURNAL, k=n)
    for i in range(n):
        prov, model, _share, mean_in, mean_out = rnd.choices(MODELS, weights=model_w)[0]
        ts = int(days[day_pick[i]].timestamp()) + hour_pick[i] * 3600 + rnd.randrange(3600)
        inp = max(1, int(rnd.expovariate(1 / mean_in)))
        cached = int(inp * rnd.choice((0, 0, 0.3, 0.6, 0.9)))
        write = int((inp - cached) * 0.2) if prov == "anthropic" and rnd.random() < 0.3 else 0
        out = max(1, int(rnd.expovariate(1 / mean_out)))
        reasoning = int(out * 0.7) if model in ("o3", "o4-mini", "gemini-2.5-pro") else 0
        batch.append(
            UsageRecord(
                ts=ts,
                provider=prov,
                model=model,
                dedup_key=f"bench-{seed}-{i}",
                source="benchmark",
                user=rnd.choices(USERS, weights=user_w)[0],
                project=rnd.choices(PROJECTS, weights=proj_w)[0],
                api_key_id=f"key-{rnd.randrange(6)}",
                input_tokens=inp,
                cached_input_tokens=cached,
                cache_write_tokens=write,
                output_tokens=out,
                reasoning_tokens=reasoning,
            )
        )
        if len(batch) == 100_000:
            yield batch
            batch = []
    if batch:
        yield batch


def build(path: Path, rows: int) -> None:
    from openai_monitor.pricing.engine import Pricer
    from openai_monitor.store import Store

    store = Store(f"sqlite:///{path}")
    pricer = Pricer()
    t0 = time.perf_counter()
    total = 0
    for batch in generate(rows):
        inserted, _dups = store.ingest(list(pricer.apply(batch)))
        total += inserted
        print(f"  built {total:,} rows ({time.perf_counter() - t0:.0f} s)", end="\r", flush=True)
    store.dispose()
    print(f"  built {total:,} rows in {time.perf_counter() - t0:.1f} s (generate + price + ingest)")


def record_count(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM usage_records").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def timed(cmd: list[str], env: dict[str, str], repeat: int) -> tuple[float, str]:
    def once() -> tuple[float, str]:
        t0 = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        dt_s = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
        return dt_s, out.stdout

    once()  # warm the page cache and .pyc files
    runs = [once() for _ in range(repeat)]
    return statistics.median(t for t, _ in runs), runs[-1][1]


def oaim_command() -> list[str]:
    exe = shutil.which("oaim", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "openai_monitor"]


# A Typer app with the same option signature as `oaim daily` that does nothing: the CLI framework's own
# cost (Typer >= 0.2x coerces every parameter through a pydantic TypeAdapter).
TYPER_APP = """
import typer
app = typer.Typer()
@app.command()
def daily(by: str | None = typer.Option(None, "--by"), since: str | None = typer.Option(None, "--since"),
          until: str | None = typer.Option(None, "--until"), timezone: str | None = typer.Option(None, "--timezone"),
          json_out: bool = typer.Option(False, "--json"), csv_out: bool = typer.Option(False, "--csv")) -> None:
    print("{}")
app()
"""


def in_process(db: Path, repeat: int) -> None:
    from openai_monitor.service.reports import build_report
    from openai_monitor.store.db import FastReader

    cases = [
        ("summary", {}),
        ("daily", {"period": "day"}),
        ("daily --by model", {"period": "day", "by": "model"}),
        ("daily, New York", {"period": "day", "tz": NY}),
        ("daily --by user, New York", {"period": "day", "by": "user", "tz": NY}),
        ("weekly --by user, Tokyo", {"period": "week", "by": "user", "tz": "Asia/Tokyo"}),
        ("monthly --by project, Kolkata", {"period": "month", "by": "project", "tz": "Asia/Kolkata"}),
    ]
    print(f"\nreport queries alone, in this process (build_report + as_dict, median of {repeat})\n")
    with FastReader(f"sqlite:///{db}") as reader:
        for label, kw in cases:
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                report = build_report(reader, **kw)
                report.as_dict()
                times.append(time.perf_counter() - t0)
            print(f"{label:40} {statistics.median(times) * 1000:8.1f} ms  {len(report.rows):6d} rows")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", type=Path, help="SQLite file to reuse (built there when missing or empty).")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    tmp = None
    if args.db is None:
        tmp = Path(tempfile.mkdtemp(prefix="oaim-read-speed-"))
        db = tmp / "usage.db"
    else:
        db = args.db.resolve()
    try:
        n = record_count(db)
        if n == 0:
            print(f"building {args.rows:,} records into {db} ...")
            build(db, args.rows)
            n = record_count(db)
        else:
            print(f"reusing {db} ({n:,} records)")
        with sqlite3.connect(db) as conn:
            rollup_rows = conn.execute("SELECT COUNT(*) FROM rollup").fetchone()[0]
        print(f"database: {n:,} usage records, {rollup_rows:,} rollup rows, {db.stat().st_size / 1e6:.0f} MB")

        home = Path(tempfile.mkdtemp(prefix="oaim-read-home-"))
        env = {**os.environ, "OAIM_HOME": str(home), "OAIM_DATABASE_URL": f"sqlite:///{db}", "TZ": "UTC"}
        env.pop("OAIM_DEBUG", None)
        oaim = oaim_command()
        cases = [
            ("python -c pass (baseline)", [sys.executable, "-c", "pass"]),
            ("python -c 'import typer' (baseline)", [sys.executable, "-c", "import typer"]),
            ("empty Typer app, same options, --json (baseline)", [sys.executable, "-c", TYPER_APP, "--json"]),
            ("oaim --version", [*oaim, "--version"]),
            ("oaim summary --json", [*oaim, "summary", "--json"]),
            ("oaim daily --json", [*oaim, "daily", "--json"]),
            ("oaim daily --json --by model", [*oaim, "daily", "--json", "--by", "model"]),
            ("oaim daily --json --timezone America/New_York", [*oaim, "daily", "--json", "--timezone", NY]),
            (
                "oaim daily --json --by user --timezone America/New_York",
                [*oaim, "daily", "--json", "--by", "user", "--timezone", NY],
            ),
            ("oaim monthly --by project (table)", [*oaim, "monthly", "--by", "project"]),
            ("oaim summary --since 30d --json", [*oaim, "summary", "--since", "30d", "--json"]),
        ]
        print(f"\nmedian of {args.repeat} fresh processes (after one warm-up); target {TARGET_S} s\n")
        print(f"{'command':58} {'median s':>9} {'x pass':>7} {'x typer':>8}  target")
        base: dict[str, float] = {}
        for label, cmd in cases:
            t, _out = timed(cmd, env, args.repeat)
            if label.startswith("python -c pass"):
                base["pass"] = t
            elif label.startswith("python -c 'import typer'"):
                base["typer"] = t
            verdict = "" if "baseline" in label else ("ok" if t < TARGET_S else "MISSED")
            print(
                f"{label:58} {t:9.3f} {t / base.get('pass', t):7.1f} {t / base.get('typer', t):8.1f}  {verdict}"
            )
        shutil.rmtree(home, ignore_errors=True)
        in_process(db, args.repeat)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


NY = "America/New_York"

if __name__ == "__main__":
    main()
