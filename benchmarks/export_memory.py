"""Streaming export: peak RSS exporting a 1,000,000-row database against a 100,000-row one, and rows/s.

Each export runs in a fresh child process that reports its own peak RSS (``ru_maxrss``), so the import
cost is the same on both sides and the ratio shows whether memory grows with the row count (constant
memory: ratio near 1.0; loading everything: ratio near 10). Databases are built with the real schema
(``Store``) and filled with raw ``executemany`` (fast; rollups are not needed for record exports).

    python benchmarks/export_memory.py [--small 100000] [--big 1000000] [--formats csv,json,jsonl,parquet]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from openai_monitor.service.export import export
url, fmt, out = sys.argv[1:4]
t0 = time.perf_counter()
res = export(url, fmt=fmt, output=out)
dt = time.perf_counter() - t0
print(json.dumps({"rows": res.rows, "seconds": dt, "bytes": res.bytes,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build_db(path: Path, n: int) -> str:
    from openai_monitor.store import Store

    url = f"sqlite:///{path}"
    Store(url).dispose()
    start = 1_735_689_600  # 2025-01-01 UTC
    models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "gemini-2.5-pro", "o3"]
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA synchronous=OFF")
        rows = (
            (
                start + i * 3,
                "openai",
                models[i % 5],
                f"user{i % 37}",
                f"proj{i % 7}",
                "",
                "bench",
                f"s{i // 50}",
                f"k{i}",
                1,
                1000 + i % 997,
                i % 500,
                0,
                0,
                200 + i % 311,
                0,
                0.0001 * (i % 101),
                0,
                "2025-01-01",
                "",
                0,
                start,
            )
            for i in range(n)
        )
        c.executemany(
            "INSERT INTO usage_records (ts, provider, model, user_name, project, api_key_id, source, session_id, "
            "dedup_key, requests, input_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, "
            "output_tokens, reasoning_tokens, cost_usd, cost_reported, price_version, service_tier, "
            "tokens_estimated, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return url


def run_child(url: str, fmt: str, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, url, fmt, str(out)], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--big", type=int, default=1_000_000)
    ap.add_argument("--formats", default="csv,json,jsonl,parquet")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="oaim-export-bench-") as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        small = build_db(d / "small.db", args.small)
        big = build_db(d / "big.db", args.big)
        print(f"built {args.small:,} + {args.big:,} row databases in {time.perf_counter() - t0:.1f} s")
        print(
            f"{'format':8} {'rows':>10} {'peak RSS MB':>12} {'rows/s':>10} {'file MB':>9}   RSS ratio big/small"
        )
        for fmt in args.formats.split(","):
            res = {}
            for name, url, n in (("small", small, args.small), ("big", big, args.big)):
                out = d / f"{name}.{fmt}"
                r = run_child(url, fmt, out)
                assert r["rows"] == n, (r, n)
                res[name] = r
                out.unlink()
            for name in ("small", "big"):
                r = res[name]
                ratio = (
                    f"{res['big']['peak_rss_mb'] / res['small']['peak_rss_mb']:.2f}" if name == "big" else ""
                )
                print(
                    f"{fmt:8} {r['rows']:>10,} {r['peak_rss_mb']:>12.1f} {r['rows'] / r['seconds']:>10,.0f} "
                    f"{r['bytes'] / 1e6:>9.1f}   {ratio}"
                )


if __name__ == "__main__":
    main()
