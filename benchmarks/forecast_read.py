"""Wall time of `oaim forecast --days 30` (fresh process, reading stored forecasts) on a 1M-row database.

Usage: python benchmarks/forecast_read.py [--db PATH] [--rows 1000000] [--repeat 7]

The database comes from ``benchmarks/read_speed.py``'s builder (one year of generated usage through the
project's ingest path); ``--db PATH`` reuses an existing one. It is then trained once with ``oaim train``
(timed too, for information) and each read command runs ``--repeat`` times after a warm-up; the median is
printed beside ``python -c pass`` measured in the same run. Target: under 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from read_speed import END, build, oaim_command, record_count, timed  # noqa: E402

TARGET_S = 0.5
CONFIG = """
timezone = "UTC"
plan = "tier4"
[anomaly]
detector_top_n = 5
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", type=Path, help="SQLite file to reuse (built there when missing or empty).")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="oaim-forecast-read-"))
    db = args.db.resolve() if args.db else tmp / "usage.db"
    if record_count(db) == 0:
        print(f"building {args.rows:,} records into {db} ...")
        build(db, args.rows)
    n = record_count(db)
    with sqlite3.connect(db) as conn:
        rollup_rows = conn.execute("SELECT COUNT(*) FROM rollup").fetchone()[0]
    print(f"database: {n:,} usage records, {rollup_rows:,} rollup rows")
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(CONFIG)
    env = {
        **os.environ,
        "OAIM_HOME": str(home),
        "OAIM_DATABASE_URL": f"sqlite:///{db}",
        "TZ": "UTC",
        # The generated year ends at END: pin the clock a few hours after it so the forecast is current.
        "OAIM_NOW": str(int(END.timestamp()) - 86400 + 5 * 3600),
    }
    env.pop("OAIM_DEBUG", None)
    oaim = oaim_command()
    t0 = time.perf_counter()
    out = subprocess.run([*oaim, "train", "--json"], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"oaim train failed: {out.stderr.strip()}")
    print(f"oaim train: {time.perf_counter() - t0:.1f} s -> {out.stdout.strip().splitlines()[-3:]}")
    cases = [
        ("python -c pass (baseline)", [sys.executable, "-c", "pass"]),
        ("oaim forecast --days 30", [*oaim, "forecast", "--days", "30"]),
        ("oaim forecast --days 30 --json", [*oaim, "forecast", "--days", "30", "--json"]),
        ("oaim forecast --days 30 --by model", [*oaim, "forecast", "--days", "30", "--by", "model"]),
        ("oaim forecast --hourly --days 7", [*oaim, "forecast", "--hourly", "--days", "7"]),
        ("oaim anomalies", [*oaim, "anomalies"]),
    ]
    print(f"\nmedian of {args.repeat} fresh processes (after one warm-up); target {TARGET_S} s\n")
    print(f"{'command':42} {'median s':>9} {'x pass':>7}  target")
    base = None
    for label, cmd in cases:
        t, _ = timed(cmd, env, args.repeat)
        if base is None:
            base = t
        verdict = "" if "baseline" in label else ("ok" if t < TARGET_S else "MISSED")
        print(f"{label:42} {t:9.3f} {t / base:7.1f}  {verdict}")


if __name__ == "__main__":
    main()
