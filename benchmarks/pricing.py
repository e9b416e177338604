"""Pricing benchmark and parity check.

Run: ``python benchmarks/pricing.py [N]`` (default N = 1,000,000 records).

1. Speed: ``Pricer.apply`` over N generated records (mixed models, cache tokens, tiers, unknown models),
   beside a baseline measured in the same run: a bare loop that computes ``input * a + output * b`` for
   the same records (the floor for any per-record Python pricing), and genai-prices ``calc_price`` on a
   sample when it is installed (Python >= 3.11).
2. Parity: where genai-prices is installed, prices every model of the main providers with several
   usages, dates and service tiers through both engines and reports the largest relative difference.
"""

from __future__ import annotations

import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openai_monitor.domain import UsageRecord  # noqa: E402
from openai_monitor.pricing.engine import Pricer, utc_ts  # noqa: E402

MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini-2024-07-18"),
    ("openai", "o3"),
    ("", "gpt-5"),
    ("anthropic", "claude-sonnet-4-5-20250929"),
    ("anthropic", "claude-opus-4-1"),
    ("google", "gemini-2.5-pro"),
    ("", "gemini/gemini-2.5-flash"),
    ("mistral", "mistral-large-latest"),
    ("mistral", "codestral-latest"),
    ("", "deepseek-chat"),
    ("openai", "my-finetune-unknown"),
]


def make_records(n: int, seed: int = 7) -> list[UsageRecord]:
    rng = random.Random(seed)
    start = utc_ts(2025, 1, 1)
    out = []
    for i in range(n):
        provider, model = MODELS[i % len(MODELS)]
        inp = rng.choice((800, 5_000, 40_000, 250_000))
        cached = inp // 4
        cw = inp // 10
        out.append(
            UsageRecord(
                ts=start + rng.randrange(0, 600 * 86400),
                provider=provider,
                model=model,
                dedup_key=str(i),
                input_tokens=inp,
                cached_input_tokens=cached,
                cache_write_tokens=cw,
                cache_write_1h_tokens=cw // 2,
                output_tokens=rng.randrange(10, 4000),
                reasoning_tokens=rng.randrange(0, 10),
                service_tier="batch" if i % 17 == 0 else "",
            )
        )
    return out


def bench(n: int) -> None:
    t = time.perf_counter()
    records = make_records(n)
    print(f"generated {n:,} records in {time.perf_counter() - t:.2f} s")
    pricer = Pricer()

    t = time.perf_counter()
    total = 0.0
    for rec in records:
        total += (rec.input_tokens * 2.5 + rec.output_tokens * 10.0) / 1_000_000
    baseline = time.perf_counter() - t

    t = time.perf_counter()
    priced = unknown = 0
    for rec in pricer.apply(records):
        if rec.cost_usd is None:
            unknown += 1
        else:
            priced += 1
    elapsed = time.perf_counter() - t
    print(
        f"Pricer.apply: {n:,} records in {elapsed:.2f} s = {n / elapsed:,.0f} records/s "
        f"({priced:,} priced, {unknown:,} unknown)"
    )
    print(
        f"baseline flat-rate loop: {baseline:.2f} s = {n / baseline:,.0f} records/s; apply/baseline = {elapsed / baseline:.1f}x"
    )

    t = time.perf_counter()
    for _rec in pricer.apply(records):
        pass
    print(f"Pricer.apply again (warm cache): {time.perf_counter() - t:.2f} s")

    try:
        import genai_prices
    except ImportError:
        print("genai-prices not installed: skipping its speed column and the parity check")
        return
    # genai-prices resolves neither `gemini/...` without a provider nor our unknown model: leave them out.
    sample = [r for r in records[:20_000] if "/" not in r.model and r.model != "my-finetune-unknown"]
    t = time.perf_counter()
    for rec in sample:
        genai_prices.calc_price(
            _gp_usage(rec),
            rec.model,
            provider_id=rec.provider or None,
            genai_request_timestamp=datetime.fromtimestamp(rec.ts, timezone.utc),
            price_context={"processing": "batch"} if rec.service_tier == "batch" else None,
        )
    gp = time.perf_counter() - t
    print(
        f"genai-prices calc_price: {len(sample):,} records in {gp:.2f} s = {len(sample) / gp:,.0f} records/s "
        f"(apply is {(len(sample) / gp) and (n / elapsed) / (len(sample) / gp):.0f}x faster)"
    )


def _gp_usage(rec: UsageRecord):
    from genai_prices import Usage

    return Usage(
        input_tokens=rec.input_tokens,
        cache_read_tokens=rec.cached_input_tokens,
        cache_write_tokens=rec.cache_write_tokens,
        cache_write_1h_tokens=rec.cache_write_1h_tokens,
        output_tokens=rec.output_tokens,
    )


def parity() -> None:
    """Every model of every provider, 3 dates x 4 service tiers x 4 usages, ours vs genai-prices."""
    try:
        import genai_prices
        from genai_prices.data import providers
    except ImportError:
        return
    pricer = Pricer()
    dates = [utc_ts(2024, 6, 1), utc_ts(2025, 6, 10), utc_ts(2026, 11, 1)]
    usages = [
        (1_000, 0, 0, 0, 500, 0),
        (10_000, 4_000, 0, 0, 2_000, 500),
        (10_000, 2_000, 3_000, 1_000, 2_000, 0),
        (300_000, 100_000, 20_000, 5_000, 8_000, 0),
    ]
    contexts = {
        "": None,
        "batch": {"processing": "batch"},
        "flex": {"service_tier": "flex"},
        "priority": {"service_tier": "priority"},
    }
    same = fallback = unpriced_zero = other = 0
    examples: list[str] = []
    for prov in providers:
        for model in prov.models:
            for ts in dates:
                when = datetime.fromtimestamp(ts, timezone.utc)
                for tier, context in contexts.items():
                    for inp, cr, cw, cw1, out, rs in usages:
                        rec = UsageRecord(
                            ts=ts,
                            provider=prov.id,
                            model=model.id,
                            dedup_key="x",
                            input_tokens=inp,
                            cached_input_tokens=cr,
                            cache_write_tokens=cw,
                            cache_write_1h_tokens=cw1,
                            output_tokens=out,
                            reasoning_tokens=rs,
                            service_tier=tier,
                        )
                        try:
                            theirs = float(
                                genai_prices.calc_price(
                                    _gp_usage(rec),
                                    model.id,
                                    provider_id=prov.id,
                                    genai_request_timestamp=when,
                                    price_context=context,
                                ).total_price
                            )
                        except Exception:
                            continue  # models genai-prices cannot price from token counts either
                        ours, _ = pricer.cost(rec)
                        if ours is not None and abs(ours - theirs) <= 1e-9 * max(1.0, theirs):
                            same += 1
                        elif ours is None and theirs == 0:
                            unpriced_zero += 1
                        elif (
                            ours is not None
                            and (price := pricer.lookup(prov.id, model.id, ts))
                            and price.estimated
                        ):
                            fallback += 1
                        else:
                            other += 1
                            if len(examples) < 5:
                                examples.append(f"{prov.id}/{model.id} {tier=} {ts=} ours={ours} gp={theirs}")
    print(
        f"parity with genai-prices {genai_prices.__version__}: {same:,} identical; "
        f"{fallback:,} differ only by our documented cache-rate fallback (Anthropic 0.1x/1.25x/2x where the "
        f"data has no cache figure); {unpriced_zero:,} unpriced by us where genai-prices says $0 (no token "
        f"price in the data); {other:,} other differences"
    )
    for line in examples:
        print("  ", line)


if __name__ == "__main__":
    bench(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
    parity()
