"""Tables of the monitor feature area: budgets and the threshold crossings already reported.

Timestamps are integer Unix seconds (UTC). A budget's scope is ``all`` or one rollup dimension
(``user`` / ``model`` / ``project``) with its key. A crossing is unique per (budget, period start,
threshold), so the daemon reports each crossing once per period."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Integer, String, Table, UniqueConstraint

from .schema import metadata

budgets = Table(
    "budgets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("amount_usd", Float, nullable=False),
    Column("period", String(16), nullable=False),  # daily | weekly | monthly
    Column("scope_dim", String(16), nullable=False, server_default="all"),  # all | user | model | project
    Column("scope_key", String(200), nullable=False, server_default=""),
    Column("created_at", BigInteger, nullable=False),
)

budget_events = Table(
    "budget_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("budget_id", Integer, nullable=False),
    Column("period_start", BigInteger, nullable=False),
    Column("threshold_pct", Integer, nullable=False),
    Column("spent_usd", Float, nullable=False),
    Column("crossed_at", BigInteger, nullable=False),
    UniqueConstraint("budget_id", "period_start", "threshold_pct", name="uq_budget_events_crossing"),
)

MONITOR_TABLES = (budgets, budget_events)
