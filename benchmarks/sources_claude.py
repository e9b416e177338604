"""MB/s of the Claude Code adapter on generated logs, beside a plain orjson line reader (same run).

Usage: python benchmarks/sources_claude.py [--size 200MB] [--dir /tmp/oaim-claude-bench]
The logs come from ../shared/tools/gen_claude_logs.py (generated once, reused when present). The
baseline reads every line with ``for line in file`` and parses the lines containing ``"usage"`` with
orjson, without de-duplication or records: the floor any Python reader pays.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import orjson

from openai_monitor.domain import ParseReport
from openai_monitor.sources.claude_code import ClaudeCodeAdapter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers_common import gen_claude_logs  # noqa: E402 - the tests' call of the shared log generator


def baseline(files: list[Path]) -> tuple[int, int]:
    nbytes = n = 0
    for f in files:
        with open(f, "rb") as fh:
            for line in fh:
                nbytes += len(line)
                if b'"usage"' in line:
                    orjson.loads(line)
                    n += 1
    return nbytes, n


def adapter_pass(files: list[Path]) -> tuple[int, int, dict]:
    a = ClaudeCodeAdapter()
    run: dict = {}
    report = ParseReport()
    nbytes = 0
    records = []
    for f in files:
        state: dict = {}
        records.extend(a.read(f, offset=0, state=state, run=run, report=report, options={}))
        nbytes += state["offset"]
    return nbytes, report.records, {"records": records, "report": report}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="200MB")
    ap.add_argument("--dir", default="/tmp/oaim-claude-bench")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    out = Path(args.dir)
    if not (out / "ground_truth.json").exists():
        gen_claude_logs(out, args.size)
    files = ClaudeCodeAdapter().discover(out)
    # Best of N, wall clock and CPU time: on a shared machine CPU time is the steadier figure.
    base = [float("inf"), float("inf")]
    adapt = [float("inf"), float("inf")]
    for _ in range(args.repeat):
        t, c = time.perf_counter(), time.process_time()
        nbytes, _ = baseline(files)
        base = [min(base[0], time.perf_counter() - t), min(base[1], time.process_time() - c)]
        t, c = time.perf_counter(), time.process_time()
        _, nrec, extra = adapter_pass(files)
        adapt = [min(adapt[0], time.perf_counter() - t), min(adapt[1], time.process_time() - c)]
    mb = nbytes / 1e6
    print(f"logs: {mb:.1f} MB in {len(files)} files, {nrec} records")
    print(f"{'':26}{'wall MB/s':>10}{'CPU MB/s':>10}")
    print(f"{'plain orjson line reader':26}{mb / base[0]:10.1f}{mb / base[1]:10.1f}")
    print(f"{'claude-code adapter':26}{mb / adapt[0]:10.1f}{mb / adapt[1]:10.1f}")
    print(f"adapter / baseline speed: wall {base[0] / adapt[0]:.2f}, CPU {base[1] / adapt[1]:.2f}")
    truth = json.loads((out / "ground_truth.json").read_text())
    agg: dict = defaultdict(lambda: [0, 0, 0, 0])
    for r in extra["records"]:
        day = datetime.fromtimestamp(r.ts, timezone.utc).strftime("%Y-%m-%d")
        t4 = agg[(day, r.model)]
        t4[0] += r.input_tokens - r.cached_input_tokens - r.cache_write_tokens
        t4[1] += r.output_tokens
        t4[2] += r.cache_write_tokens
        t4[3] += r.cached_input_tokens
    expected = {
        (row["date"], row["model"]): [
            row["inputTokens"],
            row["outputTokens"],
            row["cacheCreationTokens"],
            row["cacheReadTokens"],
        ]
        for row in truth["daily_by_model"]
    }
    print("token totals equal ground truth:", dict(agg) == expected)


if __name__ == "__main__":
    main()
