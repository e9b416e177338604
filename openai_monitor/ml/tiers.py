"""OpenAI usage tiers: which tier an account is in, what it takes to reach the next, and which tier the
account's usage actually needs.

Pure: the tier table is passed in (parsed from ``openai_monitor/data/tiers.json`` plus config overrides by
the service layer) and so is ``today``. No I/O, no clock.

Classification rule. A tier *fits* when (a) the projected month-end spend stays under its monthly usage
limit with probability >= ``spend_confidence`` (0.9 by default: the share of forecast sample paths under
the limit, or the 80% interval's upper bound when no samples are given) and (b) the observed peak
requests and tokens per minute stay under ``rate_margin`` (80%) of the tier's default per-model limits.
The recommended tier is the lowest one that fits; the confidence is the probability that its limit holds
(times a penalty when the rate-limit check could only use a stand-in model's limits, or when the usage
history is short).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from openai_monitor.errors import ConfigError

__all__ = [
    "Tier",
    "TierTable",
    "TierStatus",
    "TierClassification",
    "parse_tiers",
    "current_tier",
    "classify_usage",
    "monthly_limit",
]


@dataclass(frozen=True)
class Tier:
    id: str
    name: str
    min_paid_usd: float
    min_days_since_first_payment: int
    monthly_limit_usd: float
    qualification: str = ""
    # model -> {"rpm": int, "tpm": int, ...}; empty for tiers the model pages mark "Not supported".
    rate_limits: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    history: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class TierTable:
    tiers: tuple[Tier, ...]  # ascending
    as_of: str
    source: str
    default_model: str

    def get(self, tier_id: str) -> Tier:
        for t in self.tiers:
            if t.id == tier_id:
                return t
        raise ConfigError(f"unknown plan {tier_id!r}; use one of {', '.join(t.id for t in self.tiers)}")

    def index(self, tier_id: str) -> int:
        return [t.id for t in self.tiers].index(self.get(tier_id).id)


@dataclass(frozen=True)
class TierStatus:
    tier: Tier
    next_tier: Tier | None
    total_paid_usd: float
    days_since_first_payment: int | None
    paid_needed_usd: float  # still to pay for the next tier (0 when met)
    days_needed: int  # still to wait for the next tier (0 when met)
    next_eligible_date: date | None  # earliest date the waiting condition is met, None without a date


@dataclass(frozen=True)
class TierClassification:
    tier: Tier
    confidence: float  # 0..1
    confidence_label: str  # high / medium / low
    evidence: tuple[str, ...]
    spend_tier: Tier  # lowest tier whose monthly limit the projected spend fits
    rate_tier: Tier | None  # lowest tier whose rate limits fit the peaks; None when no tier does
    rate_model: str  # model whose per-tier limits were used


def parse_tiers(raw: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> TierTable:
    """Build the table from the tier data file's content; ``overrides`` is the config's ``tiers`` section
    (``{tier_id: {monthly_limit_usd: ..., min_paid_usd: ..., rate_limits: {model: {rpm, tpm}}}}``)."""
    overrides = overrides or {}
    try:
        per_model = raw.get("rate_limits", {}).get("models", {})
        tiers = []
        for t in raw["tiers"]:
            tid = t["id"]
            ov = dict(overrides.get(tid) or {})
            limits = {m: dict(v[tid]) for m, v in per_model.items() if tid in v}
            for m, v in (ov.pop("rate_limits", None) or {}).items():
                limits[m] = {**limits.get(m, {}), **v}
            tiers.append(
                Tier(
                    id=tid,
                    name=t.get("name", tid),
                    min_paid_usd=float(ov.get("min_paid_usd", t["min_paid_usd"])),
                    min_days_since_first_payment=int(
                        ov.get("min_days_since_first_payment", t["min_days_since_first_payment"])
                    ),
                    monthly_limit_usd=float(ov.get("monthly_limit_usd", t["monthly_limit_usd"])),
                    qualification=t.get("qualification", ""),
                    rate_limits=limits,
                    history=tuple(t.get("history", ())),
                )
            )
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(
            f"tier data is malformed ({type(e).__name__}: {e}); check the [tiers] section of the config"
        ) from e
    unknown = set(overrides) - {t.id for t in tiers}
    if unknown:
        raise ConfigError(
            f"config [tiers] names unknown tier(s) {', '.join(sorted(unknown))}; "
            f"use {', '.join(t.id for t in tiers)}"
        )
    return TierTable(
        tiers=tuple(tiers),
        as_of=str(raw.get("as_of", "")),
        source=str(raw.get("source", "")),
        default_model=str(raw.get("rate_limits", {}).get("default_model", "gpt-4o")),
    )


def monthly_limit(table: TierTable, plan: str, custom_limit_usd: float | None = None) -> float | None:
    """The monthly usage limit of a plan; a custom limit wins. None for ``custom`` without a limit."""
    if custom_limit_usd is not None:
        return float(custom_limit_usd)
    if plan in ("custom", "auto"):
        return None
    return table.get(plan).monthly_limit_usd


def current_tier(
    table: TierTable, total_paid_usd: float, first_payment: date | None, today: date
) -> TierStatus:
    """The highest tier whose qualification (amount paid and days since first payment) is met.

    Without a first-payment date only tiers with no waiting period can be proven; the free tier needs
    nothing paid."""
    days = (today - first_payment).days if first_payment is not None else None
    reached = table.tiers[0]
    for t in table.tiers:
        paid_ok = total_paid_usd >= t.min_paid_usd
        days_ok = t.min_days_since_first_payment == 0 or (
            days is not None and days >= t.min_days_since_first_payment
        )
        if paid_ok and days_ok:
            reached = t
    idx = table.tiers.index(reached)
    nxt = table.tiers[idx + 1] if idx + 1 < len(table.tiers) else None
    paid_needed = max(0.0, nxt.min_paid_usd - total_paid_usd) if nxt else 0.0
    days_needed = 0
    eligible: date | None = None
    if nxt is not None:
        if days is None:
            days_needed = nxt.min_days_since_first_payment
        else:
            days_needed = max(0, nxt.min_days_since_first_payment - days)
            from datetime import timedelta

            eligible = first_payment + timedelta(days=nxt.min_days_since_first_payment)  # type: ignore[operator]
    return TierStatus(reached, nxt, float(total_paid_usd), days, paid_needed, days_needed, eligible)


def _rate_model(table: TierTable, model: str | None) -> str:
    if model:
        known = {m for t in table.tiers for m in t.rate_limits}
        # Longest known name that prefixes the model id, so dated snapshots map to their family.
        hits = sorted((m for m in known if model == m or model.startswith(m + "-")), key=len, reverse=True)
        if hits:
            return hits[0]
    return table.default_model


def _label(p: float) -> str:
    return "high" if p >= 0.85 else "medium" if p >= 0.6 else "low"


def classify_usage(
    table: TierTable,
    *,
    month_end_mean: float,
    month_end_upper_80: float | None = None,
    samples: Sequence[float] | None = None,
    peak_rpm: float = 0.0,
    peak_tpm: float = 0.0,
    model: str | None = None,
    history_days: int | None = None,
    spend_confidence: float = 0.9,
    rate_margin: float = 0.8,
) -> TierClassification:
    """The lowest tier whose monthly limit and default rate limits fit this usage, with the evidence."""
    samples = list(samples or [])

    def p_fits(limit: float) -> float:
        if samples:
            return sum(1 for s in samples if s <= limit) / len(samples)
        hi = month_end_upper_80 if month_end_upper_80 is not None else month_end_mean
        # Only the interval is known: under its 90th percentile -> 0.9; under the mean -> 0.5.
        return 0.9 if hi <= limit else 0.5 if month_end_mean <= limit else 0.1

    rate_model = _rate_model(table, model)
    stand_in = model is not None and rate_model != model and not model.startswith(rate_model + "-")
    evidence = [f"projected month-end spend ${month_end_mean:,.2f}"]
    if month_end_upper_80 is not None:
        evidence[0] += f" (80% up to ${month_end_upper_80:,.2f})"

    spend_tier = table.tiers[-1]
    for t in table.tiers:
        if p_fits(t.monthly_limit_usd) >= spend_confidence:
            spend_tier = t
            break
    evidence.append(
        f"{spend_tier.name} limit ${spend_tier.monthly_limit_usd:,.0f}/month holds with "
        f"{p_fits(spend_tier.monthly_limit_usd):.0%} probability"
    )

    rate_tier: Tier | None = None
    if peak_rpm <= 0 and peak_tpm <= 0:
        rate_tier = table.tiers[0]
        evidence.append("no requests observed: rate limits do not constrain the tier")
    else:
        for t in table.tiers:
            lim = t.rate_limits.get(rate_model)
            if not lim:
                continue  # the model is not available on this tier
            if peak_rpm <= rate_margin * lim.get("rpm", float("inf")) and peak_tpm <= rate_margin * lim.get(
                "tpm", float("inf")
            ):
                rate_tier = t
                break
        how = f"{rate_model} limits" + (f" (stand-in for {model})" if stand_in else "")
        if rate_tier is None:
            evidence.append(
                f"peak {peak_rpm:,.0f} RPM / {peak_tpm:,.0f} TPM exceeds {rate_margin:.0%} of every tier's {how}"
            )
        else:
            lim = rate_tier.rate_limits.get(rate_model, {})
            evidence.append(
                f"peak {peak_rpm:,.0f} RPM / {peak_tpm:,.0f} TPM fits {rate_tier.name} "
                f"({lim.get('rpm', 0):,.0f} RPM / {lim.get('tpm', 0):,.0f} TPM, {how})"
            )

    candidates = [spend_tier] + ([rate_tier] if rate_tier else [table.tiers[-1]])
    chosen = max(candidates, key=table.tiers.index)
    confidence = p_fits(chosen.monthly_limit_usd)
    if rate_tier is None:
        confidence *= 0.5
    if stand_in:
        confidence *= 0.9
    if history_days is not None and history_days < 14:
        confidence *= 0.7
        evidence.append(f"only {history_days} days of history: the projection is uncertain")
    return TierClassification(
        tier=chosen,
        confidence=round(confidence, 3),
        confidence_label=_label(confidence),
        evidence=tuple(evidence),
        spend_tier=spend_tier,
        rate_tier=rate_tier,
        rate_model=rate_model,
    )
