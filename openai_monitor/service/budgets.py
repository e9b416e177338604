"""Budgets: storage, status in the user's calendar, threshold crossings and forecast-based warnings.

A budget is an amount per daily / weekly / monthly period, for all usage or one user, model or project.
Periods are the user's local calendar (``settings.timezone``, weeks from ``settings.week_start``), so a
period rolls over at local midnight whatever the UTC offset or DST state. Warning thresholds are
percentages of the amount (``[budgets] thresholds = [50, 80, 100]`` in config). ``check_budgets`` records
each threshold crossing once per period in ``budget_events`` so the daemon never reports it twice.

The forecast warning for monthly budgets uses the stored daily forecast of the budget's scope
(``service.ml_read``): the expected crossing date and the probability of crossing. Other budgets, or a
scope without a trained forecast, get a pace warning: spend so far extrapolated linearly over the period.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from ..errors import InputError
from .spend import PERIODS, SCOPE_COLUMNS, Db, Spend, period_bounds, spend_between

DEFAULT_THRESHOLDS = (50, 80, 100)


@dataclass(frozen=True)
class Budget:
    id: int
    amount_usd: float
    period: str
    scope_dim: str  # all | user | model | project
    scope_key: str
    created_at: int

    @property
    def scope(self) -> str:
        return "all usage" if self.scope_dim == "all" else f"{self.scope_dim} {self.scope_key}"


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    period_start: datetime
    period_end: datetime
    spend: Spend
    pct: float  # spent / amount * 100
    thresholds_crossed: tuple[int, ...]
    pace_end_usd: float  # spend at period end if the pace so far continues
    warning: dict[str, Any] | None  # {"date", "probability" | None, "basis", "message"}

    def as_dict(self) -> dict[str, Any]:
        return {
            "budget": asdict(self.budget),
            "scope": self.budget.scope,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "spent_usd": round(self.spend.total_usd, 6),
            "billed_usd": round(self.spend.billed_usd, 6),
            "estimated_usd": round(self.spend.estimated_usd, 6),
            "unpriced_records": self.spend.unpriced_records,
            "pct": round(self.pct, 2),
            "thresholds_crossed": list(self.thresholds_crossed),
            "pace_end_usd": round(self.pace_end_usd, 6),
            "warning": self.warning,
        }


@dataclass(frozen=True)
class BudgetEvent:
    """A threshold crossing not reported before."""

    budget: Budget
    threshold_pct: int
    spent_usd: float
    period_start: datetime
    crossed_at: int
    warning: dict[str, Any] | None

    @property
    def message(self) -> str:
        return (
            f"{self.budget.period} budget for {self.budget.scope} passed {self.threshold_pct}%: "
            f"${self.spent_usd:,.2f} of ${self.budget.amount_usd:,.2f}"
        )

    @property
    def dedup_key(self) -> str:
        return f"{self.budget.id}:{int(self.period_start.timestamp())}:{self.threshold_pct}"

    def as_dict(self) -> dict[str, Any]:
        """Flat, JSON-able form for alerts (dedup_key, severity, title, body)."""
        body = self.message + (f"; {self.warning['message']}" if self.warning else "")
        return {
            "dedup_key": self.dedup_key,
            "severity": "high" if self.threshold_pct >= 100 else "medium",
            "title": self.message,
            "message": self.message,
            "body": body,
            "budget": asdict(self.budget),
            "threshold_pct": self.threshold_pct,
            "spent_usd": self.spent_usd,
            "period_start": self.period_start.isoformat(),
            "crossed_at": self.crossed_at,
            "warning": self.warning,
        }


def thresholds(settings: Any) -> tuple[int, ...]:
    raw = (getattr(settings, "budgets", None) or {}).get("thresholds", DEFAULT_THRESHOLDS)
    try:
        vals = tuple(sorted({int(x) for x in raw}))
    except (TypeError, ValueError) as e:
        raise InputError(
            "budgets.thresholds must be a list of percentages; fix it with "
            "`oaim config set budgets.thresholds [50,80,100]`"
        ) from e
    if not vals or any(v <= 0 for v in vals):
        raise InputError("budgets.thresholds must be positive percentages such as [50, 80, 100]")
    return vals


# ------------------------------------------------------------------------------------------ storage


def add_budget(
    db: Db,
    amount_usd: float,
    period: str,
    scope_dim: str = "all",
    scope_key: str = "",
    now: int | None = None,
) -> int:
    if not amount_usd or amount_usd <= 0:
        raise InputError(f"budget amount must be a positive number of USD, got {amount_usd!r}")
    if period not in PERIODS:
        raise InputError(f"unknown period {period!r}; use --period daily, weekly or monthly")
    if scope_dim != "all" and scope_dim not in SCOPE_COLUMNS:
        raise InputError(f"unknown scope {scope_dim!r}; use --user, --model or --project")
    if scope_dim != "all" and not scope_key:
        raise InputError(f"--{scope_dim} needs a name")
    now = int(time.time()) if now is None else now
    db.execute(
        "INSERT INTO budgets (amount_usd, period, scope_dim, scope_key, created_at) VALUES (?, ?, ?, ?, ?)",
        (float(amount_usd), period, scope_dim, scope_key if scope_dim != "all" else "", now),
    )
    return int(db.query("SELECT MAX(id) FROM budgets")[0][0])


def list_budgets(db: Db) -> list[Budget]:
    if not db.table_exists("budgets"):
        return []
    rows = db.query(
        "SELECT id, amount_usd, period, scope_dim, scope_key, created_at FROM budgets ORDER BY id"
    )
    return [Budget(int(r[0]), float(r[1]), r[2], r[3], r[4], int(r[5])) for r in rows]


def remove_budget(db: Db, budget_id: int) -> None:
    if db.execute("DELETE FROM budgets WHERE id = ?", (budget_id,)) == 0:
        raise InputError(f"no budget with id {budget_id}; see `oaim budget list`")
    db.execute("DELETE FROM budget_events WHERE budget_id = ?", (budget_id,))


# ------------------------------------------------------------------------------------------- status


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _forecast_warning(db: Db, b: Budget, spent: float, now: datetime) -> dict[str, Any] | None:
    """Expected crossing of a monthly budget from the stored forecast of its scope, or None."""
    from .monitor import ml_read_module

    ml_read = ml_read_module()
    fc = ml_read.latest_forecast(db, scope_dim=b.scope_dim, scope_key=b.scope_key, metric="cost", freq="d")
    if not fc or not fc.get("summary"):
        return None
    summary = fc["summary"]
    now_ts = int(now.timestamp())
    hit = ml_read.limit_hit(summary, spent, b.amount_usd, now_ts)
    p = ml_read.prob_exceed(summary, spent, b.amount_usd, now_ts)
    if p is None:
        return None  # the stored forecast is from another month
    if not hit:
        return {
            "date": None,
            "probability": p,
            "basis": "forecast",
            "message": f"forecast: {p:.0%} likely to pass the monthly budget this month",
        }
    when = hit.get("expected")
    d = datetime.fromisoformat(str(when)).date() if when else None
    prob = float(hit.get("probability", p))
    msg = (
        f"at this pace you will pass the monthly budget on the {_ordinal(d.day)}, {prob:.0%} likely"
        if d
        else f"{prob:.0%} likely to pass the monthly budget"
    )
    return {"date": d.isoformat() if d else None, "probability": prob, "basis": "forecast", "message": msg}


def _pace_warning(
    b: Budget, spent: float, start: datetime, end: datetime, now: datetime
) -> tuple[float, dict | None]:
    # Epoch seconds, not datetime arithmetic: two datetimes in the same zone subtract as wall-clock
    # times, which is an hour off across a DST change.
    t0, t1, tn = start.timestamp(), end.timestamp(), now.timestamp()
    elapsed, length = tn - t0, t1 - t0
    if elapsed <= 0 or spent <= 0:
        return 0.0, None
    rate = spent / elapsed
    pace_end = rate * length
    if spent >= b.amount_usd:
        return pace_end, {
            "date": now.astimezone(start.tzinfo).date().isoformat(),
            "probability": 1.0,
            "basis": "actual",
            "message": f"{b.period} budget already passed",
        }
    cross_ts = t0 + b.amount_usd / rate
    if cross_ts >= t1:
        return pace_end, None
    cross = datetime.fromtimestamp(cross_ts, timezone.utc)
    cross_local = cross.astimezone(start.tzinfo)
    when = cross_local.strftime("%H:%M") if b.period == "daily" else f"the {_ordinal(cross_local.day)}"
    return pace_end, {
        "date": cross_local.date().isoformat(),
        "probability": None,
        "basis": "pace",
        "message": f"at this pace you will pass the {b.period} budget on {when}"
        if b.period != "daily"
        else f"at this pace you will pass the daily budget at {when}",
    }


def budget_status(db: Db, settings: Any, now: datetime, tz: str | None = None) -> list[BudgetStatus]:
    """Status of every budget in its current period at ``now`` (aware)."""
    tz = tz or settings.timezone
    levels = thresholds(settings)
    out = []
    for b in list_budgets(db):
        start, end = period_bounds(b.period, now, tz, settings.week_start)
        spend = spend_between(db, int(start.timestamp()), int(end.timestamp()), b.scope_dim, b.scope_key)
        pct = spend.total_usd / b.amount_usd * 100 if b.amount_usd else 0.0
        pace_end, warning = _pace_warning(b, spend.total_usd, start, end, now)
        if b.period == "monthly" and spend.total_usd < b.amount_usd and db.table_exists("forecasts"):
            warning = _forecast_warning(db, b, spend.total_usd, now) or warning
        out.append(
            BudgetStatus(
                budget=b,
                period_start=start,
                period_end=end,
                spend=spend,
                pct=pct,
                thresholds_crossed=tuple(t for t in levels if pct >= t),
                pace_end_usd=pace_end,
                warning=warning,
            )
        )
    return out


def as_datetime(now: datetime | int | float | None) -> datetime:
    """An aware datetime from a datetime, Unix seconds or None (the wall clock)."""
    if now is None:
        return datetime.now(timezone.utc)
    if isinstance(now, (int, float)):
        return datetime.fromtimestamp(now, timezone.utc)
    if now.tzinfo is None:
        raise InputError("now must be timezone-aware")
    return now


def check_budgets(
    store_or_reader: Any, settings: Any, now: datetime | int | None = None
) -> list[BudgetEvent]:
    """New threshold crossings at ``now`` (aware datetime or Unix seconds), recorded so the same crossing
    is not reported twice. Takes a ``Store`` (or a FastReader: a Store is opened on its URL to record)."""
    now = as_datetime(now)
    handle = store_or_reader
    if not hasattr(handle, "engine"):
        from ..store import Store

        handle = Store(store_or_reader.url)
    db = Db(handle)
    events = []
    for st in budget_status(db, settings, now):
        start_ts = int(st.period_start.timestamp())
        for level in st.thresholds_crossed:
            inserted = db.execute(
                "INSERT INTO budget_events (budget_id, period_start, threshold_pct, spent_usd, crossed_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (budget_id, period_start, threshold_pct) DO NOTHING",
                (st.budget.id, start_ts, level, st.spend.total_usd, int(now.timestamp())),
            )
            if inserted:
                events.append(
                    BudgetEvent(
                        st.budget,
                        level,
                        st.spend.total_usd,
                        st.period_start,
                        int(now.timestamp()),
                        st.warning,
                    )
                )
    return events
