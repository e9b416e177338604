"""Spend over calendar periods in the user's time zone, read from the rollups (stdlib + FastReader only).

``Db`` wraps either a ``FastReader`` (read commands: no SQLAlchemy import) or a ``Store`` (the daemon, and
commands that write) behind one ``query(sql, params)`` with ``?`` placeholders and an ``execute`` for writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from ..config import WEEKDAYS
from ..errors import InputError
from ..timeutil import zone

PERIODS = ("daily", "weekly", "monthly")
SCOPE_COLUMNS = {"user": "user_name", "model": "model", "project": "project"}


class Db:
    """One query interface over a FastReader or a Store."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.is_store = hasattr(handle, "engine")

    @property
    def exists(self) -> bool:
        return True if self.is_store else self.handle.exists

    @property
    def url(self) -> str:
        return self.handle.url

    def query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        if not self.is_store:
            return self.handle.query(sql, params)
        from ..store.db import placeholder_sql

        eng = self.handle.engine
        with eng.connect() as conn:
            return [
                tuple(r)
                for r in conn.exec_driver_sql(placeholder_sql(sql, eng.dialect.paramstyle), tuple(params))
            ]

    def execute(self, sql: str, params: tuple | list = ()) -> int:
        """Run one write statement in its own transaction; returns the affected row count."""
        if not self.is_store:
            raise InputError("this operation writes to the database; open it with the full store")
        from ..store.db import placeholder_sql

        eng = self.handle.engine
        with eng.begin() as conn:
            return conn.exec_driver_sql(placeholder_sql(sql, eng.dialect.paramstyle), tuple(params)).rowcount

    def table_exists(self, name: str) -> bool:
        if not self.is_store:
            return self.handle.table_exists(name)
        from sqlalchemy import inspect

        return inspect(self.handle.engine).has_table(name)


def _local_midnight(d: date, tz: str) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=zone(tz))


def period_bounds(
    period: str, now: datetime, tz: str, week_start: str = "monday"
) -> tuple[datetime, datetime]:
    """(start, end) as aware local datetimes of the daily / weekly / monthly period containing ``now``.

    Periods follow the user's calendar: a day is local midnight to local midnight (23 or 25 hours on a
    DST change), weeks start on ``week_start``, months on the 1st."""
    if now.tzinfo is None:
        raise InputError("now must be timezone-aware")
    if period not in PERIODS:
        raise InputError(f"unknown period {period!r}; use daily, weekly or monthly")
    today = now.astimezone(zone(tz)).date()
    if period == "daily":
        first, nxt = today, today + timedelta(days=1)
    elif period == "weekly":
        ws = week_start.lower()
        if ws not in WEEKDAYS:
            raise InputError(f"unknown week start {week_start!r}; use one of {', '.join(WEEKDAYS)}")
        first = today - timedelta(days=(today.weekday() - WEEKDAYS.index(ws)) % 7)
        nxt = first + timedelta(days=7)
    else:
        first = today.replace(day=1)
        nxt = (first + timedelta(days=32)).replace(day=1)
    return _local_midnight(first, tz), _local_midnight(nxt, tz)


@dataclass(frozen=True)
class Spend:
    total_usd: float  # billed + estimated
    billed_usd: float  # reported by the provider
    unpriced_records: int = 0

    @property
    def estimated_usd(self) -> float:
        return self.total_usd - self.billed_usd


def spend_between(db: Db, start_ts: int, end_ts: int, scope_dim: str = "all", scope_key: str = "") -> Spend:
    """Spend in [start_ts, end_ts). Hour-aligned bounds read the hourly rollup; others (zones with
    half-hour offsets) sum the raw records so the boundary hour is split exactly."""
    if scope_dim != "all" and scope_dim not in SCOPE_COLUMNS:
        raise InputError(f"unknown scope {scope_dim!r}; use user, model or project")
    if start_ts % 3600 == 0 and end_ts % 3600 == 0:
        dim = "model" if scope_dim == "all" else scope_dim
        sql = (
            "SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(cost_reported_usd), 0), "
            "COALESCE(SUM(unpriced_records), 0) FROM rollup "
            "WHERE grain = 'h' AND dim = ? AND bucket_ts >= ? AND bucket_ts < ?"
        )
        params: list[Any] = [dim, start_ts, end_ts]
        if scope_dim != "all":
            sql += " AND key = ?"
            params.append(scope_key)
    else:
        sql = (
            "SELECT COALESCE(SUM(COALESCE(cost_usd, 0)), 0), "
            "COALESCE(SUM(CASE WHEN cost_reported = 1 THEN COALESCE(cost_usd, 0) ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END), 0) "
            "FROM usage_records WHERE ts >= ? AND ts < ? AND shadowed = 0"
        )
        params = [start_ts, end_ts]
        if scope_dim != "all":
            sql += f" AND {SCOPE_COLUMNS[scope_dim]} = ?"
            params.append(scope_key)
    rows = db.query(sql, params)
    if not rows:
        return Spend(0.0, 0.0, 0)
    total, billed, unpriced = rows[0]
    return Spend(float(total or 0), float(billed or 0), int(unpriced or 0))
