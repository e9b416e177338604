"""Build the bundled demo data set (openai_monitor/data/demo_usage.csv) from real public traces.

What is REAL:
* hourly request arrivals: BurstGPT_1 days 0-41 (``../shared/data/burstgpt/burstgpt1_hourly_days00-41.csv``,
  real Azure OpenAI traffic of one organisation; CC BY 4.0, Wang et al., KDD 2025), split into its two real
  populations: "Conversation log" (interactive, weekly shape) and "API log" (bursty, scripted);
* tokens per request: drawn with replacement from BurstGPT's real per-request rows
  (``burstgpt1_first400_rows.csv``: Request/Response tokens of ChatGPT and GPT-4 calls).

What is SYNTHETIC (documented in data/README.md):
* the volume is scaled down (requests / SCALE, stochastic rounding) to a small team's size;
* users, projects and the model mix (which model each request went to) are assigned at random with fixed
  weights and a fixed seed; cached-input shares are synthetic;
* the calendar: BurstGPT publishes no dates; day 0 is placed on a Monday (2025-09-01). `oaim demo` shifts
  the whole set by whole weeks so that it ends yesterday, keeping weekdays.

Run from the repository root: ``python data/build_demo.py`` (standard library only, deterministic).
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "burstgpt"
OUT = REPO / "openai_monitor" / "data" / "demo_usage.csv"  # package data: `pip install .` ships it
SCALE = 10
SEED = 20250901
DAY0 = dt.datetime(2025, 9, 1, tzinfo=dt.timezone.utc)  # a Monday

# population -> [(user, project, weight)]
USERS = {
    "conversation": [
        ("alice", "support-bot", 0.40),
        ("bob", "docs-assistant", 0.35),
        ("carol", "research", 0.25),
    ],
    "api": [
        ("etl-service", "data-pipeline", 0.7),
        ("ci-bot", "code-review", 0.3),
    ],
}
# population -> [(provider, model, token profile from the real rows, cached share, weight)]
MODELS = {
    "conversation": [
        ("openai", "gpt-4o-mini", "ChatGPT", 0.30, 0.55),
        ("openai", "gpt-4o", "GPT-4", 0.20, 0.25),
        ("anthropic", "claude-sonnet-4-5", "GPT-4", 0.50, 0.20),
    ],
    "api": [
        ("openai", "gpt-4o-mini", "ChatGPT", 0.05, 0.80),
        ("openai", "gpt-4.1", "GPT-4", 0.05, 0.20),
    ],
}


def _load_token_rows() -> dict[str, list[tuple[int, int]]]:
    rows: dict[str, list[tuple[int, int]]] = defaultdict(list)
    with open(SHARED / "burstgpt1_first400_rows.csv", newline="") as f:
        for r in csv.DictReader(f):
            req, resp = int(r["Request tokens"]), int(r["Response tokens"])
            if req > 0 and resp > 0:  # failed requests (0/0) carry no tokens
                rows[r["Model"]].append((req, resp))
    return rows


def _pick(rng: random.Random, items: list[tuple]) -> tuple:
    return rng.choices(items, weights=[it[-1] for it in items])[0]


def build() -> int:
    rng = random.Random(SEED)
    tokens = _load_token_rows()
    buckets: dict[tuple, list[int]] = {}
    with open(SHARED / "burstgpt1_hourly_days00-41.csv", newline="") as f:
        for r in csv.DictReader(f):
            start = DAY0 + dt.timedelta(days=int(r["day"]), hours=int(r["hour"]))
            for population in ("conversation", "api"):
                real = int(r[population]) / SCALE
                n = int(real) + (1 if rng.random() < real - int(real) else 0)
                for _ in range(n):
                    user, project, _w = _pick(rng, USERS[population])
                    provider, model, profile, cached_share, _w2 = _pick(rng, MODELS[population])
                    inp, out = rng.choice(tokens[profile])
                    cached = int(inp * cached_share * rng.random() * 2) if inp >= 1024 else 0
                    key = (start, provider, model, user, project)
                    acc = buckets.setdefault(key, [0, 0, 0, 0])
                    acc[0] += 1
                    acc[1] += inp
                    acc[2] += min(cached, inp)
                    acc[3] += out
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(
            [
                "timestamp",
                "bucket_seconds",
                "provider",
                "model",
                "user",
                "project",
                "requests",
                "input_tokens",
                "cached_tokens",
                "output_tokens",
            ]
        )
        for (start, provider, model, user, project), (n, inp, cached, out) in sorted(buckets.items()):
            w.writerow(
                [
                    start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    3600,
                    provider,
                    model,
                    user,
                    project,
                    n,
                    inp,
                    cached,
                    out,
                ]
            )
    return len(buckets)


if __name__ == "__main__":
    print(f"{build()} hourly bucket rows written to {OUT}")
