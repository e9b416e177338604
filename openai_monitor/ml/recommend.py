"""Cost-optimization recommendations from aggregated usage: pure arithmetic, every figure explained.

Inputs are plain aggregates read by the service layer (daily / hourly token sums, session sums, open
anomalies), the family/batch/cache data of ``openai_monitor/data/recommend.json`` and a Pricer (anything
with ``cost(UsageRecord) -> (usd | None, version)`` and ``lookup(provider, model, ts) -> ModelPrice |
None``). No I/O, no clock: the window length is passed in.

Monthly savings scale the window's saving to 30 days: ``saving * 30 / window_days``.

- Model what-if: the same tokens (input incl. cache reads/writes, output) of each day priced at that
  day's prices for every cheaper rung of the model's family. Saving = own repriced cost - alternative.
- Cache utilization: per (model, user), the highest daily cache-hit share reached is taken as the
  achievable repeat rate; saving per day = max(0, rate * input - cached) * (input rate - cache-read
  rate) / 1e6. The one-time cache-write premium is not subtracted (it is small at any useful repeat rate).
- Batch candidates: non-interactive traffic in the local night hours, active on at least half the days,
  would pay ``1 - discount`` of its cost through the provider's batch API.
- Expensive sessions: the costliest sessions, with the reasons (long context, cache misses, model);
  saving = cache misses beyond the median hit share of that model's sessions, priced as above.
- Anomaly impact: money lost to open anomalies in the window, as a monthly rate.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from openai_monitor.domain import UsageRecord

__all__ = [
    "TokenBucket",
    "SessionStats",
    "Recommendation",
    "model_whatif",
    "cache_utilization",
    "batch_candidates",
    "expensive_sessions",
    "anomaly_impact",
    "family_alternatives",
]

DAYS_PER_MONTH = 30


class PricerLike(Protocol):
    def cost(self, rec: UsageRecord) -> tuple[float | None, str | None]: ...

    def lookup(self, provider: str, model: str, ts: int) -> Any: ...


@dataclass(frozen=True)
class TokenBucket:
    """Token sums of one model (and optionally one user) over one bucket starting at ``ts`` (UTC)."""

    ts: int
    provider: str
    model: str
    requests: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    user: str = ""

    def record(self, model: str | None = None) -> UsageRecord:
        return UsageRecord(
            ts=self.ts,
            provider=self.provider,
            model=model or self.model,
            dedup_key="",
            requests=max(self.requests, 1),
            input_tokens=self.input_tokens,
            cached_input_tokens=self.cached_input_tokens,
            cache_write_tokens=self.cache_write_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens,
            output_tokens=self.output_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )


@dataclass(frozen=True)
class SessionStats:
    session_id: str
    provider: str
    model: str  # the model with the most cost in the session
    start_ts: int
    end_ts: int
    cost_usd: float
    requests: int
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    source: str = ""
    project: str = ""


@dataclass(frozen=True)
class Recommendation:
    kind: str  # model_whatif | cache | batch | session | anomaly
    title: str
    evidence: tuple[str, ...]
    monthly_saving_usd: float
    confidence: float
    confidence_label: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.title,
            "evidence": list(self.evidence),
            "monthly_saving_usd": round(self.monthly_saving_usd, 6),
            "confidence": self.confidence,
            "confidence_label": self.confidence_label,
            "details": dict(self.details),
        }


def _label(c: float) -> str:
    return "high" if c >= 0.75 else "medium" if c >= 0.45 else "low"


def _monthly(amount: float, window_days: float) -> float:
    return amount * DAYS_PER_MONTH / window_days if window_days > 0 else 0.0


def _usd(x: float) -> str:
    return f"${x:,.2f}" if abs(x) >= 0.01 or x == 0 else f"${x:,.4f}"


# ------------------------------------------------------------------------------------------ what-if


def family_alternatives(families: Sequence[Mapping[str, Any]], provider: str, model: str) -> list[str]:
    """``price_as`` ids of the cheaper rungs below the rung ``model`` matches (same provider + family)."""
    m = model.lower()
    for fam in families:
        if fam["provider"] != provider:
            continue
        rungs = fam["rungs"]
        for i, rung in enumerate(rungs):
            if re.fullmatch(rung["match"], m, flags=re.IGNORECASE):
                return [r["price_as"] for r in rungs[i + 1 :]]
    return []


def model_whatif(
    buckets: Iterable[TokenBucket],
    families: Sequence[Mapping[str, Any]],
    pricer: PricerLike,
    window_days: float,
    *,
    min_saving_usd: float = 0.01,
) -> list[Recommendation]:
    """For each used model, what the same tokens would have cost on each cheaper model of its family."""
    spent: dict[tuple[str, str], float] = defaultdict(float)
    own: dict[tuple[str, str], float] = defaultdict(float)
    alt: dict[tuple[str, str, str], float] = defaultdict(float)
    tokens: dict[tuple[str, str], int] = defaultdict(int)
    alts_of: dict[tuple[str, str], list[str]] = {}
    for b in buckets:
        key = (b.provider, b.model)
        if key not in alts_of:
            alts_of[key] = family_alternatives(families, b.provider, b.model)
        if not alts_of[key]:
            continue
        mine, _ = pricer.cost(b.record())
        if mine is None:
            continue
        costs = {a: pricer.cost(b.record(a))[0] for a in alts_of[key]}
        if any(c is None for c in costs.values()):
            # Compare like for like only: a day an alternative has no price is left out of both sides.
            costs = {a: c for a, c in costs.items() if c is not None}
            if not costs:
                continue
        spent[key] += b.cost_usd
        own[key] += mine
        tokens[key] += b.input_tokens + b.output_tokens
        for a, c in costs.items():
            alt[(b.provider, b.model, a)] += c  # type: ignore[operator]
    out = []
    for (prov, model, a), alt_cost in alt.items():
        mine = own[(prov, model)]
        saving = mine - alt_cost
        if saving < min_saving_usd:
            continue
        rank = alts_of[(prov, model)].index(a)
        conf = 0.5 if rank == 0 else 0.3  # arithmetic is exact; whether the cheaper model suffices is not
        out.append(
            Recommendation(
                kind="model_whatif",
                title=f"{model} -> {a}: save {_usd(_monthly(saving, window_days))}/month",
                evidence=(
                    f"you spent {_usd(spent[(prov, model)])} on {model} in the last {window_days:g} days "
                    f"({tokens[(prov, model)]:,} tokens; {_usd(mine)} at list prices)",
                    f"the same tokens on {a} at the same dates would have cost {_usd(alt_cost)}",
                    "a cheaper model is only a saving where it does the job: try it on a sample first",
                ),
                monthly_saving_usd=_monthly(saving, window_days),
                confidence=conf,
                confidence_label=_label(conf),
                details={
                    "provider": prov,
                    "model": model,
                    "alternative": a,
                    "spent_usd": spent[(prov, model)],
                    "repriced_usd": mine,
                    "alternative_usd": alt_cost,
                    "window_saving_usd": saving,
                },
            )
        )
    return sorted(out, key=lambda r: r.monthly_saving_usd, reverse=True)


# -------------------------------------------------------------------------------------------- cache


def cache_utilization(
    buckets: Iterable[TokenBucket],
    pricer: PricerLike,
    window_days: float,
    *,
    min_day_input_tokens: int = 100_000,
    min_gap: float = 0.05,
    min_saving_usd: float = 0.01,
) -> list[Recommendation]:
    """Cache-hit share per (model, user) and what reaching its own best daily share would save."""
    groups: dict[tuple[str, str, str], list[TokenBucket]] = defaultdict(list)
    for b in buckets:
        groups[(b.provider, b.model, b.user)].append(b)
    out = []
    for (prov, model, user), days in groups.items():
        inp = sum(b.input_tokens for b in days)
        cached = sum(b.cached_input_tokens for b in days)
        if inp <= 0:
            continue
        shares = [
            b.cached_input_tokens / b.input_tokens for b in days if b.input_tokens >= min_day_input_tokens
        ]
        if not shares:
            continue
        rate = max(shares)
        share = cached / inp
        if rate - share < min_gap:
            continue
        saving = 0.0
        missed_cost = 0.0
        for b in days:
            price = pricer.lookup(prov, model, b.ts)
            if price is None:
                continue
            extra = max(0.0, rate * b.input_tokens - b.cached_input_tokens)
            saving += extra * (price.input - price.cached_input) / 1_000_000
            uncached = b.input_tokens - b.cached_input_tokens - b.cache_write_tokens
            missed_cost += uncached * price.input / 1_000_000
        if saving < min_saving_usd:
            continue
        conf = min(0.8, 0.4 + 0.05 * len(shares))  # more qualifying days: a steadier repeat rate
        who = f" for {user}" if user else ""
        out.append(
            Recommendation(
                kind="cache",
                title=f"prompt caching on {model}{who}: save {_usd(_monthly(saving, window_days))}/month",
                evidence=(
                    f"cache-hit share {share:.0%} of {inp:,} input tokens over {len(days)} days",
                    f"best day reached {rate:.0%}: that repeat rate is achievable",
                    f"uncached input cost {_usd(missed_cost)}; at {rate:.0%} hits it would cost "
                    f"{_usd(saving)} less",
                ),
                monthly_saving_usd=_monthly(saving, window_days),
                confidence=round(conf, 3),
                confidence_label=_label(conf),
                details={
                    "provider": prov,
                    "model": model,
                    "user": user,
                    "cache_hit_share": share,
                    "repeat_rate": rate,
                    "daily_shares": [
                        (b.ts, b.cached_input_tokens / b.input_tokens if b.input_tokens else None)
                        for b in sorted(days, key=lambda b: b.ts)
                    ],
                    "window_saving_usd": saving,
                },
            )
        )
    return sorted(out, key=lambda r: r.monthly_saving_usd, reverse=True)


# -------------------------------------------------------------------------------------------- batch


def batch_candidates(
    hourly: Iterable[TokenBucket],
    pricer: PricerLike,
    window_days: float,
    tz: str,
    *,
    discount_by_provider: Mapping[str, float],
    night_hours: tuple[int, int] = (0, 6),
    min_active_day_share: float = 0.5,
    min_saving_usd: float = 0.01,
) -> list[Recommendation]:
    """Steady night-time traffic of non-interactive sources, priced through the batch API.

    ``hourly`` must already exclude interactive sources and traffic already sent as batch."""
    from zoneinfo import ZoneInfo

    z = ZoneInfo(tz)
    lo, hi = night_hours
    night_cost: dict[tuple[str, str], float] = defaultdict(float)
    total_cost: dict[tuple[str, str], float] = defaultdict(float)
    night_days: dict[tuple[str, str], set] = defaultdict(set)
    sample_ts: dict[tuple[str, str], int] = {}
    for b in hourly:
        key = (b.provider, b.model)
        total_cost[key] += b.cost_usd
        local = datetime.fromtimestamp(b.ts, timezone.utc).astimezone(z)
        if lo <= local.hour < hi and b.cost_usd > 0:
            night_cost[key] += b.cost_usd
            night_days[key].add(local.date())
            sample_ts[key] = b.ts
    out = []
    for key, cost in night_cost.items():
        prov, model = key
        active = len(night_days[key]) / window_days if window_days > 0 else 0.0
        if active < min_active_day_share:
            continue
        discount = discount_by_provider.get(prov)
        price = pricer.lookup(prov, model, sample_ts[key])
        if price is not None:
            batch = price.for_service_tier("batch")
            if batch is not price and price.input > 0:
                discount = 1.0 - batch.input / price.input  # the price data's own batch rate wins
        if not discount:
            continue
        saving = cost * discount
        if saving < min_saving_usd:
            continue
        conf = 0.4 + 0.4 * min(1.0, active)
        out.append(
            Recommendation(
                kind="batch",
                title=f"batch API for night traffic on {model}: save {_usd(_monthly(saving, window_days))}/month",
                evidence=(
                    f"{_usd(cost)} of {_usd(total_cost[key])} on {model} ran between {lo:02d}:00 and "
                    f"{hi:02d}:00 local time, on {len(night_days[key])} of {window_days:g} days",
                    f"the batch API costs {discount:.0%} less and answers within 24 hours",
                ),
                monthly_saving_usd=_monthly(saving, window_days),
                confidence=round(conf, 3),
                confidence_label=_label(conf),
                details={
                    "provider": prov,
                    "model": model,
                    "night_cost_usd": cost,
                    "total_cost_usd": total_cost[key],
                    "active_day_share": active,
                    "discount": discount,
                    "window_saving_usd": saving,
                },
            )
        )
    return sorted(out, key=lambda r: r.monthly_saving_usd, reverse=True)


# ----------------------------------------------------------------------------------------- sessions


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return 0.0
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def expensive_sessions(
    sessions: Sequence[SessionStats],
    pricer: PricerLike,
    families: Sequence[Mapping[str, Any]],
    window_days: float,
    *,
    top: int = 5,
    long_context_tokens: int = 50_000,
) -> list[Recommendation]:
    """The costliest sessions and why; saving = their cache misses beyond the model's median hit share."""
    by_model: dict[str, list[float]] = defaultdict(list)
    for s in sessions:
        if s.input_tokens > 0:
            by_model[s.model].append(s.cached_input_tokens / s.input_tokens)
    out = []
    for s in sorted(sessions, key=lambda s: s.cost_usd, reverse=True)[:top]:
        reasons = []
        per_req = s.input_tokens / max(s.requests, 1)
        if per_req > long_context_tokens:
            reasons.append(f"long context: {per_req:,.0f} input tokens per request")
        share = s.cached_input_tokens / s.input_tokens if s.input_tokens else 0.0
        typical = _median(by_model[s.model])
        saving = 0.0
        if typical > share:
            price = pricer.lookup(s.provider, s.model, s.start_ts)
            if price is not None:
                extra = (typical - share) * s.input_tokens
                saving = extra * (price.input - price.cached_input) / 1_000_000
                reasons.append(f"cache misses: {share:.0%} hits vs {typical:.0%} typical for {s.model}")
        alts = family_alternatives(families, s.provider, s.model)
        if alts:
            reasons.append(f"model: {s.model} (cheaper in its family: {', '.join(alts)})")
        if not reasons:
            reasons.append(f"volume: {s.requests:,} requests, {s.input_tokens + s.output_tokens:,} tokens")
        minutes = (s.end_ts - s.start_ts) / 60
        conf = 0.5 if saving > 0 else 0.3
        out.append(
            Recommendation(
                kind="session",
                title=f"session {s.session_id[:12]} cost {_usd(s.cost_usd)}",
                evidence=(
                    f"{s.source or 'session'} {s.project or ''} on {s.model}, "
                    f"{minutes:,.0f} min, {s.requests:,} requests".replace("  ", " "),
                    *reasons,
                ),
                monthly_saving_usd=_monthly(saving, window_days),
                confidence=conf,
                confidence_label=_label(conf),
                details={
                    "session_id": s.session_id,
                    "model": s.model,
                    "cost_usd": s.cost_usd,
                    "cache_hit_share": share,
                    "typical_cache_hit_share": typical,
                    "input_tokens_per_request": per_req,
                    "window_saving_usd": saving,
                },
            )
        )
    return out


# --------------------------------------------------------------------------------------- anomalies


def anomaly_impact(anomalies: Sequence[Mapping[str, Any]], window_days: float) -> list[Recommendation]:
    """Money lost to open anomalies in the window (one recommendation summing them)."""
    if not anomalies:
        return []
    lost = sum(float(a.get("impact_usd") or 0.0) for a in anomalies)
    if lost <= 0:
        return []
    worst = sorted(anomalies, key=lambda a: float(a.get("impact_usd") or 0.0), reverse=True)[:3]
    evidence = [f"{len(anomalies)} open anomalies cost {_usd(lost)} above the usual in {window_days:g} days"]
    for a in worst:
        evidence.append(
            f"{a.get('scope', '')}: {_usd(float(a.get('impact_usd') or 0.0))} ({a.get('severity', '')}) "
            f"{a.get('explanation', '')}".strip()
        )
    sev = {str(a.get("severity", "")) for a in anomalies}
    conf = 0.7 if sev & {"high", "critical"} else 0.5
    return [
        Recommendation(
            kind="anomaly",
            title=f"open anomalies: {_usd(lost)} lost",
            evidence=tuple(evidence),
            monthly_saving_usd=_monthly(lost, window_days),
            confidence=conf,
            confidence_label=_label(conf),
            details={"lost_usd": lost, "count": len(anomalies)},
        )
    ]


def with_rank(recs: Iterable[Recommendation]) -> list[Recommendation]:
    """All recommendations, largest monthly saving first (stable for equal savings)."""
    return sorted(recs, key=lambda r: r.monthly_saving_usd, reverse=True)
