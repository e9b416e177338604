"""Synthetic usage for the pipeline tests: 6 weeks of hourly buckets, 3 users, 2 models, a runaway loop.

Also two short-lived users: ``dave`` (5 days: too short for Prophet, so a labelled fallback) and ``erin``
(one complete day: too short to forecast at all, so a recorded failure). The trained database is built
once per test process and copied into each test's directory.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from openai_monitor.domain import UsageRecord

H = 3600
DAY = 86400
START = 1736121600  # 2025-01-06 00:00 UTC, a Monday
WEEKS = 6
NOW_TS = START + WEEKS * 7 * DAY + 5 * H  # Monday 2025-02-17 05:00 UTC
NOW = datetime.fromtimestamp(NOW_TS, timezone.utc)
LOOP_USER = "alice"
LOOP_START = START + 38 * DAY + 11 * H  # Thursday 2025-02-13 11:00-15:00 UTC: requests x15
LOOP_END = LOOP_START + 4 * H
# Illustrative USD per 1M tokens (input, output) for synthetic data only; not product prices.
PRICES = {"gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00)}
USERS = {
    "alice": ("gpt-4o-mini", 40.0, START),
    "bob": ("gpt-4o-mini", 30.0, START),
    "carol": ("gpt-4o", 8.0, START),
    "dave": ("gpt-4o-mini", 5.0, NOW_TS - 5 * DAY - 5 * H),
    "erin": ("gpt-4o-mini", 5.0, NOW_TS - DAY - 5 * H),
}
CONFIG = """
timezone = "UTC"
plan = "tier1"
[forecast]
horizon_days = 30
hourly_top_n = 1
backtest_origins = 1
[anomaly]
detector_top_n = 3
"""


def _level(ts: int) -> float:
    day = (ts - START) // DAY % 7
    hour = ts % DAY // H
    if day >= 5:
        return 0.15
    if 8 <= hour < 18:
        return 1.0
    if 6 <= hour < 20:
        return 0.4
    return 0.03


def records(seed: int = 42) -> list[UsageRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for ts in range(START, NOW_TS + H, H):
        for user, (model, base, first) in USERS.items():
            if ts < first:
                continue
            lam = base * _level(ts) * (15 if user == LOOP_USER and LOOP_START <= ts < LOOP_END else 1)
            req = int(rng.poisson(lam))
            if req == 0:
                continue
            inp = int(req * 1500 * rng.lognormal(0, 0.1))
            outp = int(req * 300 * rng.lognormal(0, 0.1))
            pin, pout = PRICES[model]
            out.append(
                UsageRecord(
                    ts=ts,
                    provider="openai",
                    model=model,
                    dedup_key=f"{user}-{ts}",
                    source="test",
                    user=user,
                    project="batch" if user == "carol" else "web",
                    api_key_id=f"key-{user}",
                    bucket_seconds=3600,
                    requests=req,
                    input_tokens=inp,
                    cached_input_tokens=int(inp * 0.3),
                    output_tokens=outp,
                    cost_usd=(inp * pin + outp * pout) / 1e6,
                    cost_reported=True,
                )
            )
    return out


def settings():
    import tomllib

    from openai_monitor.config import Settings

    return Settings.model_validate(tomllib.loads(CONFIG))


@functools.lru_cache(maxsize=1)
def _trained() -> tuple[Path, dict]:
    from openai_monitor.service.modelstore import ModelStore
    from openai_monitor.service.train import train
    from openai_monitor.store import Store

    base = Path(tempfile.mkdtemp(prefix="oaim-ml-"))
    atexit.register(shutil.rmtree, base, True)
    store = Store(f"sqlite:///{base / 'usage.db'}")
    store.ingest(records(), now=NOW_TS)
    res = train(store, settings(), now=NOW, model_store=ModelStore(base / "models"))
    store.dispose()
    return base, res.as_dict()


def trained_copy(dest: Path) -> tuple[str, Path, dict]:
    """(database URL, models dir, first training result) of a fresh copy of the trained home."""
    base, result = _trained()
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("usage.db", "usage.db-wal", "usage.db-shm"):
        if (base / name).exists():
            shutil.copy2(base / name, dest / name)
    shutil.copytree(base / "models", dest / "models", dirs_exist_ok=True)
    return f"sqlite:///{dest / 'usage.db'}", dest / "models", result
