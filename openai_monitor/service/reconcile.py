"""Reconciliation: estimated cost (tokens x prices) against billed cost (provider cost APIs), per UTC day
and per model, with the drift in dollars and percent.

Estimate basis: the provider's usage-API records (``source = openai-usage-api`` / ``anthropic-usage-report``)
when the month has any, because they cover the same organisation as the bill; otherwise the day rollups
of every source of that provider (local logs, proxy), labelled as such, since local logs may see only part
of the organisation. Billed days are UTC days (the cost APIs bucket by UTC day), so both sides use UTC.

Models are matched after dropping a date suffix ("gpt-4o-2024-08-06" and "gpt-4o" are one row;
"claude-sonnet-4-20250514" -> "claude-sonnet-4"): the Costs API names line items by either form.

Read-only, through ``FastReader`` (no SQLAlchemy import).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..errors import InputError
from ..sources import anthropic_usage as au
from ..sources import openai_usage as ou

USAGE_SOURCE = {"openai": ou.SOURCE, "anthropic": au.SOURCE}
_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|20\d{6})$")
OTHER = "(not a model)"


def model_key(model: str) -> str:
    """The model name used to match usage rows with billed line items."""
    return _DATE_SUFFIX.sub("", model) if model else OTHER


def month_bounds(month: str | None, now: int) -> tuple[int, int, str]:
    """[start, end) Unix seconds of a UTC month "YYYY-MM" (default: the month of ``now``)."""
    if month is None:
        d = datetime.fromtimestamp(now, tz=timezone.utc)
        y, m = d.year, d.month
    else:
        mm = re.fullmatch(r"(\d{4})-(\d{2})", month.strip())
        if not mm or not 1 <= int(mm.group(2)) <= 12:
            raise InputError(f"--month {month!r} is not YYYY-MM; for example --month 2026-11")
        y, m = int(mm.group(1)), int(mm.group(2))
    start = datetime(y, m, 1, tzinfo=timezone.utc)
    end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=timezone.utc)
    return int(start.timestamp()), int(end.timestamp()), f"{y:04d}-{m:02d}"


@dataclass
class DriftRow:
    key: str  # ISO day or model
    estimated_usd: float
    billed_usd: float | None
    unpriced_records: int = 0

    @property
    def drift_usd(self) -> float | None:
        return None if self.billed_usd is None else self.estimated_usd - self.billed_usd

    @property
    def drift_pct(self) -> float | None:
        if self.billed_usd is None or self.billed_usd == 0:
            return None
        return (self.estimated_usd - self.billed_usd) / self.billed_usd * 100.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "estimated_usd": round(self.estimated_usd, 6),
            "billed_usd": None if self.billed_usd is None else round(self.billed_usd, 6),
            "drift_usd": None if self.drift_usd is None else round(self.drift_usd, 6),
            "drift_pct": None if self.drift_pct is None else round(self.drift_pct, 3),
            "unpriced_records": self.unpriced_records,
        }


@dataclass
class Reconciliation:
    provider: str
    month: str
    basis: str  # "usage-api" | "rollups (all sources)" | "none"
    days: list[DriftRow] = field(default_factory=list)
    models: list[DriftRow] = field(default_factory=list)

    @property
    def total(self) -> DriftRow:
        billed = [d.billed_usd for d in self.days if d.billed_usd is not None]
        return DriftRow(
            "total",
            sum(d.estimated_usd for d in self.days),
            sum(billed) if billed else None,
            sum(d.unpriced_records for d in self.days),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "month": self.month,
            "basis": self.basis,
            "total": self.total.as_dict(),
            "days": [d.as_dict() for d in self.days],
            "models": [m.as_dict() for m in self.models],
        }


def _iso_day(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d")


def _estimates(
    reader: Any, provider: str, start: int, end: int
) -> tuple[str, list[tuple[int, str, float, int]]]:
    """(basis, [(day, model, estimated usd, unpriced records)])."""
    source = USAGE_SOURCE.get(provider, "")
    rows = reader.query(
        "SELECT ts - (ts % 86400), model, SUM(COALESCE(cost_usd, 0)), "
        "SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END) FROM usage_records "
        "WHERE provider = ? AND source = ? AND ts >= ? AND ts < ? GROUP BY ts - (ts % 86400), model",
        (provider, source, start, end),
    )
    if rows:
        return "usage-api", [(int(d), m, float(c), int(u)) for d, m, c, u in rows]
    rows = reader.query(
        "SELECT bucket_ts, key, cost_usd, unpriced_records FROM rollup "
        "WHERE grain = 'd' AND dim = 'model' AND provider = ? AND bucket_ts >= ? AND bucket_ts < ?",
        (provider, start, end),
    )
    if rows:
        return "rollups (all sources)", [(int(d), m, float(c), int(u)) for d, m, c, u in rows]
    return "none", []


def _billed(reader: Any, provider: str | None, start: int, end: int) -> list[tuple[int, str, float]]:
    if not reader.exists or not reader.table_exists("billed_costs"):
        return []
    where = "amount_usd IS NOT NULL AND day >= ? AND day < ?"
    params: list[Any] = [start, end]
    if provider:
        where += " AND provider = ?"
        params.append(provider)
    rows = reader.query(
        f"SELECT day, model, SUM(amount_usd) FROM billed_costs WHERE {where} GROUP BY day, model", params
    )
    return [(int(d), m or "", float(a)) for d, m, a in rows]


def reconcile(reader: Any, *, provider: str = "openai", month: str | None = None, now: int) -> Reconciliation:
    """Estimated vs billed cost of one UTC month, per day and per model."""
    start, end, label = month_bounds(month, now)
    basis, est = _estimates(reader, provider, start, end)
    billed = _billed(reader, provider, start, end)
    out = Reconciliation(provider=provider, month=label, basis=basis)

    days: dict[int, DriftRow] = {}
    models: dict[str, DriftRow] = {}
    for day, model, cost, unpriced in est:
        d = days.setdefault(day, DriftRow(_iso_day(day), 0.0, None))
        d.estimated_usd += cost
        d.unpriced_records += unpriced
        m = models.setdefault(model_key(model), DriftRow(model_key(model), 0.0, None))
        m.estimated_usd += cost
        m.unpriced_records += unpriced
    for day, model, amount in billed:
        d = days.setdefault(day, DriftRow(_iso_day(day), 0.0, None))
        d.billed_usd = (d.billed_usd or 0.0) + amount
        m = models.setdefault(model_key(model), DriftRow(model_key(model), 0.0, None))
        m.billed_usd = (m.billed_usd or 0.0) + amount
    out.days = [days[k] for k in sorted(days)]
    out.models = sorted(models.values(), key=lambda r: -(r.billed_usd or r.estimated_usd))
    return out


def billed_total(reader: Any, since: int, until: int, provider: str | None = None) -> float | None:
    """Billed USD of the UTC days starting in [since, until), or None when no billed day is stored there.

    Billed figures win in reports: for a period, use this for the days it covers (see ``billed_days`` /
    ``billed_until``) and the estimated cost only for the days after (the cost APIs lag by up to a day).
    """
    rows = _billed(reader, provider, since, until)
    if not rows:
        return None
    return sum(a for _, _, a in rows)


def billed_days(reader: Any, since: int, until: int, provider: str | None = None) -> dict[int, float]:
    """Billed USD per UTC day (day start -> amount) of the days starting in [since, until)."""
    out: dict[int, float] = {}
    for day, _, amount in _billed(reader, provider, since, until):
        out[day] = out.get(day, 0.0) + amount
    return out


def billed_until(reader: Any, provider: str | None = None) -> int | None:
    """End (exclusive, Unix seconds) of the last COMPLETE billed day, from the cost sync's resume point, or
    None when costs were never synced. Reports use billed figures before it and estimates after it."""
    if not reader.exists or not reader.table_exists("sync_state"):
        return None
    where = "endpoint IN ('costs', 'cost_report')"
    params: list[Any] = []
    if provider:
        where += " AND provider = ?"
        params.append(provider)
    rows = reader.query(f"SELECT MIN(resume_ts) FROM sync_state WHERE {where}", params)
    return None if not rows or rows[0][0] is None else int(rows[0][0])
