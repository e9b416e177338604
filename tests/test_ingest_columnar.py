"""A parsing process reads a CSV as columns (RecordColumns) instead of UsageRecord objects, and prices
them with ``Pricer.apply_columns``. Batch by batch, it must give exactly what the record path gives:
the same batch sizes, values (prices included: cached, cache-write, reasoning and long-context rates,
unknown models, billed costs), unpriced counts, progress and malformed-line reports."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from openai_monitor.config import load_settings
from openai_monitor.domain import COLUMNS_OPTION, ParseReport, RecordColumns
from openai_monitor.service.ingest import as_columns, produce_batches
from openai_monitor.service.pricing import make_pricer
from openai_monitor.sources import get_adapter

HEADER = (
    "timestamp,provider,model,user,project,requests,input_tokens,cached_tokens,cache_write_tokens,"
    "output_tokens,reasoning_tokens,cost_usd\n"
)
MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "o3"),
    ("anthropic", "claude-sonnet-4-20250514"),
    ("google", "gemini-2.5-pro"),  # prompts over 200k tokens pay its long-context rates
    ("mistral", "mistral-large-latest"),
    ("openai", "no-such-model-x"),
]


def _csv(path: Path, n: int, seed: int = 4) -> Path:
    """N varied rows over 2025 (o3's price cut on 2025-06-10 included), a malformed row every 4001st,
    and a quoted cell near the end (the rest of the file then goes through csv.reader)."""
    rng = random.Random(seed)
    start = 1_735_689_600  # 2025-01-01
    lines = []
    for i in range(n):
        prov, model = rng.choice(MODELS)
        inp = rng.choice([rng.randrange(1, 5_000), rng.randrange(200_001, 400_000)])
        cached = rng.randrange(0, inp // 3 + 1)
        write = rng.randrange(0, (inp - cached) // 3 + 1) if prov == "anthropic" else 0
        out = rng.randrange(0, 4_000)
        reasoning = rng.randrange(0, out + 1) if model == "o3" else 0
        cost = f"{rng.random() / 10:.6f}" if i % 9 == 0 else ""
        user = f'"user, {i % 4}"' if i > n - 50 else f"u{i % 4}"
        ts = start + i * (300 * 86400 // n)
        lines.append(
            f"{ts},{prov},{model},{user},p{i % 3},{1 + i % 3},{inp},{cached},{write},{out},{reasoning},{cost}\n"
        )
        if i % 4001 == 5:
            lines.append(f"{ts},openai,gpt-4o,u1,p1,1,-5,0,0,1,0,\n")  # negative tokens: reported, skipped
    path.write_text(HEADER + "".join(lines))
    return path


def _batches(path: Path, columnar: bool) -> list:
    adapter = get_adapter("csv")
    out = []
    for b in produce_batches(
        adapter,
        [(path, 0, {})],
        {path: path.stat()},
        {"format": "generic"},
        make_pricer(load_settings()),
        batch_records=3000,
        ramp_from=700,
        columnar=columnar,
    ):
        cols = b.columns if columnar else as_columns(b.records)
        out.append((cols, b.unpriced, b.progress, b.report.errors, b.report.records, b.error))
    return out


@pytest.mark.parametrize("n", [9000, 5000])
def test_columnar_batches_equal_record_batches(tmp_path: Path, n: int) -> None:
    path = _csv(tmp_path / "usage.csv", n)
    # The adapter does yield column chunks when asked (else this test would compare records twice).
    report = ParseReport()
    items = list(
        get_adapter("csv").read(
            path,
            offset=0,
            state={},
            run={},
            report=report,
            options={"format": "generic", COLUMNS_OPTION: True},
        )
    )
    assert any(type(i) is RecordColumns for i in items) and any(type(i) is not RecordColumns for i in items)
    columnar, records = _batches(path, True), _batches(path, False)
    assert [len(c[0][0]) for c in columnar] == [len(r[0][0]) for r in records]
    assert columnar == records
    # The input has what the comparison must cover: unpriced and billed rows, tiers, errors.
    cols = [sum((b[0][i] for b in records), []) for i in range(len(records[0][0]))]
    assert sum(b[1] for b in records) > 0 and any(cols[18])
    assert any(err for b in records for err in b[3])
    assert sum(b[4] for b in records) == len(cols[0])


def test_apply_columns_prices_like_apply() -> None:
    """Direct check of the two pricing paths on the same records, field by field, with a user price that
    has every rate (reasoning and 1-hour cache writes too: no bundled model prices those separately)."""
    from store_helpers import make_records

    from openai_monitor.pricing.engine import Pricer
    from openai_monitor.store.repo import record_rows

    pricer = Pricer(
        overrides={
            "my-model": {
                "input": 1.5,
                "output": 6,
                "cached_input": 0.3,
                "cache_write_5m": 2,
                "cache_write_1h": 4,
                "reasoning": 2.5,
            }
        }
    )
    recs = make_records(600, seed=11)
    for i, (r, (prov, model)) in enumerate(zip(recs, [*MODELS, ("openai", "my-model")] * 100)):
        r.provider, r.model = prov, model
        r.cost_reported = i % 10 == 0
        r.cache_write_1h_tokens = r.cache_write_tokens // 2
        r.reasoning_tokens = r.output_tokens // 3
    cols = [list(c) for c in zip(*record_rows(recs))]
    pricer.apply_columns(cols)
    priced = list(pricer.apply(recs))
    assert [list(c) for c in zip(*record_rows(priced))] == cols
    assert any(c is None for c in cols[17]) and any(isinstance(c, float) and c > 0 for c in cols[17])
