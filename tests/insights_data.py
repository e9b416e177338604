"""Synthetic usage for the patterns, export and HTML report tests: four weeks from Monday 2025-01-06 UTC.

* ``batchbot`` (gpt-4o-mini, API): 20 calls between 02:00 and 03:00 UTC on every weekday, nothing else;
* ``ann`` and ``ben`` (claude-sonnet-4, Claude Code): interactive calls 09:00-17:00 UTC on weekdays, in a
  morning and an afternoon session per day (session ids ``<user>-<day>-am|pm``).
"""

from __future__ import annotations

import numpy as np

from openai_monitor.domain import UsageRecord

START = 1736121600  # Monday 2025-01-06 00:00 UTC
H, DAY = 3600, 86400
WEEKS = 4
BATCH_CALLS = 20


def records(weeks: int = WEEKS, seed: int = 1) -> list[UsageRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for d in range(weeks * 7):
        day0 = START + d * DAY
        if d % 7 >= 5:
            continue
        for i in range(BATCH_CALLS):
            ts = day0 + 2 * H + int(rng.integers(0, 3000))
            out.append(
                UsageRecord(
                    ts=ts,
                    provider="openai",
                    model="gpt-4o-mini",
                    dedup_key=f"b{d}-{i}",
                    source="api",
                    user="batchbot",
                    project="etl",
                    requests=1,
                    input_tokens=2000,
                    output_tokens=500,
                    cost_usd=0.05,
                )
            )
        for u in ("ann", "ben"):
            for h in range(9, 17):
                for i in range(1 + int(rng.poisson(3))):
                    ts = day0 + h * H + int(rng.integers(0, 3600))
                    out.append(
                        UsageRecord(
                            ts=ts,
                            provider="anthropic",
                            model="claude-sonnet-4",
                            dedup_key=f"{u}{d}-{h}-{i}",
                            source="claude-code",
                            user=u,
                            project="app",
                            session_id=f"{u}-{d}-{'am' if h < 12 else 'pm'}",
                            requests=1,
                            input_tokens=5000,
                            cached_input_tokens=int(rng.integers(0, 4000)),
                            output_tokens=300,
                            cost_usd=0.02,
                        )
                    )
    return out


def make_db(url: str, recs: list[UsageRecord] | None = None):
    from openai_monitor.store import Store

    store = Store(url)
    store.ingest(records() if recs is None else recs)
    return store
