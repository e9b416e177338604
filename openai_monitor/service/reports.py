"""Usage reports (summary, daily, weekly, monthly) computed from the rollup table only.

Read path: a :class:`~openai_monitor.store.db.FastReader` (stdlib sqlite3 on SQLite), no SQLAlchemy or pandas.
The raw ``usage_records`` table is touched only for the first/last timestamp, through an
``ORDER BY ts LIMIT 1`` on its ``ts`` index (O(log n)).

Local periods. The rollup stores UTC hour buckets (grain ``'h'``) and UTC day buckets (``'d'``). A local day
is built from hour buckets: the requested range is split into segments of constant UTC offset (the zone's
transitions, found with zoneinfo), and each segment is grouped in SQL by ``(bucket_ts + offset) / 86400``
(integer epoch arithmetic, portable to PostgreSQL); the segments are merged here. The day grain is used
when no local boundary is needed: for a summary, or for UTC, when both bounds fall on UTC midnights.

Precision is one hour, the rollup's grain: a bucket is counted when its START lies in ``[since, until)``,
and it belongs to the local day of its start. In zones with a half-hour or 45-minute offset (Asia/Kolkata,
Australia/Adelaide, Asia/Kathmandu) an hour straddling local midnight therefore counts entirely towards the
day on which it starts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..timeutil import zone

GROUPS = ("model", "user", "project", "provider", "api_key")
PERIODS = ("day", "week", "month")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# Rollup sums read by reports, in query order.
SUMS = (
    "records",
    "requests",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cost_reported_usd",
    "unpriced_records",
)
_FLOAT_SUMS = frozenset({"cost_usd", "cost_reported_usd"})

HOUR = 3600
DAY = 86400
_EPOCH = dt.date(1970, 1, 1)
_UTC = dt.timezone.utc
# Zone transitions are months apart; probing once a day and bisecting to the hour finds every one that
# matters for hour buckets (two transitions within one day do not occur in the tz database since 1970).
_PROBE_STEP = DAY

# The rollup dim and the SQL group columns for each --by value; provider is a column of every rollup row,
# so it is read from the model rollup.
_GROUP_SQL: dict[str | None, tuple[str, tuple[str, ...]]] = {
    None: ("model", ()),
    "provider": ("model", ("provider",)),
    "model": ("model", ("provider", "key")),
    "user": ("user", ("key",)),
    "project": ("project", ("key",)),
    "api_key": ("api_key", ("key",)),
}


@dataclass
class Totals:
    """Summed usage; ``cost_usd`` is every known cost, ``cost_reported_usd`` its billed (source-reported)
    part, the rest was estimated here from prices."""

    records: int = 0
    requests: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    cost_reported_usd: float = 0.0
    unpriced_records: int = 0

    def add_values(self, values: tuple | list) -> None:
        """Add a row of sums given in :data:`SUMS` order (SQL NULLs count as 0)."""
        for name, v in zip(SUMS, values):
            if v:
                setattr(self, name, getattr(self, name) + v)

    def add(self, other: Totals) -> None:
        for name in SUMS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def cost_estimated_usd(self) -> float:
        return max(self.cost_usd - self.cost_reported_usd, 0.0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "cost_billed_usd": round(self.cost_reported_usd, 6),
            "cost_estimated_usd": round(self.cost_estimated_usd, 6),
            "unpriced_records": self.unpriced_records,
        }


@dataclass
class ReportRow:
    period: str | None  # local period start: "2025-03-09" (day, week) or "2025-03" (month); None: summary
    group: str | None  # the --by key (model, user, ...); None without --by
    provider: str | None  # set when grouping by model (the same model name may come from two providers)
    totals: Totals

    def as_dict(self, by: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.period is not None:
            out["period"] = self.period
        if by is not None:
            out[by] = self.group
        if by == "model":
            out["provider"] = self.provider
        out.update(self.totals.as_dict())
        return out


@dataclass
class Report:
    period: str | None  # day | week | month | None (summary)
    by: str | None
    timezone: str
    since: int | None  # effective bounds (Unix seconds, hour-aligned), None when the database is empty
    until: int | None
    requested_since: int | None = None  # the bounds as asked (None: open)
    requested_until: int | None = None
    rows: list[ReportRow] = field(default_factory=list)
    totals: Totals = field(default_factory=Totals)
    unpriced_models: list[tuple[str, str, int]] = field(default_factory=list)  # (provider, model, records)
    first_ts: int | None = None
    last_ts: int | None = None
    week_start: str = "monday"
    has_data: bool = False  # False: the database holds no usage at all

    @property
    def empty(self) -> bool:
        return self.totals.records == 0

    def unpriced_message(self) -> str | None:
        """The footer naming records without a price, or None when everything is priced."""
        if not self.unpriced_models:
            return None
        n = sum(r for _p, _m, r in self.unpriced_models)
        models = len(self.unpriced_models)
        names = ", ".join(m for _p, m, _r in self.unpriced_models[:5])
        more = f", +{models - 5} more" if models > 5 else ""
        return (
            f"{n} record{'s' if n != 1 else ''} of {models} unknown model{'s' if models != 1 else ''} "
            f"not priced ({names}{more}): add a price with `oaim pricing set MODEL --input X --output Y`"
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "period": self.period,
            "by": self.by,
            "timezone": self.timezone,
            "since": iso_utc(self.since),
            "until": iso_utc(self.until),
            "first_ts": iso_utc(self.first_ts),
            "last_ts": iso_utc(self.last_ts),
        }
        if self.period == "week":
            out["week_start"] = self.week_start
        out.update(self.totals.as_dict())
        out["unpriced_models"] = [
            {"provider": p, "model": m, "records": r} for p, m, r in self.unpriced_models
        ]
        out["unpriced_message"] = self.unpriced_message()
        if self.period is not None or self.by is not None:
            out["rows"] = [r.as_dict(self.by) for r in self.rows]
        return out


def iso_utc(ts: int | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, _UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- time segmentation -----------------------------------------------------------------------------------


def _ceil(ts: int, step: int) -> int:
    return -(-ts // step) * step


def offset_segments(lo: int, hi: int, tz: str) -> list[tuple[int, int, int]]:
    """Split the hour-aligned range ``[lo, hi)`` into ``(start, end, offset)`` segments of constant UTC
    offset, where the offset of an hour bucket is the zone's offset at the bucket's start."""
    if hi <= lo:
        return []
    z = zone(tz)

    def off(t: int) -> int:
        o = dt.datetime.fromtimestamp(t, z).utcoffset()
        return int(o.total_seconds()) if o is not None else 0

    segments = []
    start, cur_off = lo, off(lo)
    probe = lo
    while True:
        nxt = min(probe + _PROBE_STEP, hi - HOUR)
        if nxt <= probe:
            break
        if off(nxt) == cur_off:
            probe = nxt
            continue
        # Bisect over hour starts for the first hour in (probe, nxt] with a different offset.
        a, b = probe, nxt  # off(a) == cur_off != off(b)
        while b - a > HOUR:
            mid = a + ((b - a) // HOUR // 2) * HOUR
            if off(mid) == cur_off:
                a = mid
            else:
                b = mid
        segments.append((start, b, cur_off))
        start, cur_off, probe = b, off(b), b
    segments.append((start, hi, cur_off))
    return segments


def period_key(day_number: int, period: str, week_start: int) -> str:
    """Label of the local period holding local day ``day_number`` (days since 1970-01-01)."""
    d = _EPOCH + dt.timedelta(days=day_number)
    if period == "day":
        return d.isoformat()
    if period == "week":
        return (d - dt.timedelta(days=(d.weekday() - week_start) % 7)).isoformat()
    return d.strftime("%Y-%m")


def week_start_index(name: str) -> int:
    key = name.strip().lower()
    if key not in WEEKDAYS:
        raise InputError(f"week start {name!r}: use one of {', '.join(WEEKDAYS)} (config key week_start)")
    return WEEKDAYS.index(key)


# -- queries ---------------------------------------------------------------------------------------------


def _sum_sql() -> str:
    return ", ".join(f"SUM({c})" for c in SUMS)


def _one(reader: Any, sql: str, params: tuple) -> Any:
    rows = reader.query(sql, params)
    return rows[0][0] if rows else None


def data_span(reader: Any, grain: str) -> tuple[int, int] | None:
    """First and last bucket start of the rollup at ``grain`` (index seeks on the primary key)."""
    base = "SELECT bucket_ts FROM rollup WHERE grain = ? AND dim = 'model' ORDER BY bucket_ts"
    first = _one(reader, base + " LIMIT 1", (grain,))
    if first is None:
        return None
    last = _one(reader, base + " DESC LIMIT 1", (grain,))
    return int(first), int(last)


def _first_last(reader: Any, lo: int, hi: int) -> tuple[int | None, int | None]:
    base = "SELECT ts FROM usage_records WHERE ts >= ? AND ts < ? ORDER BY ts"
    first = _one(reader, base + " LIMIT 1", (lo, hi))
    last = _one(reader, base + " DESC LIMIT 1", (lo, hi))
    return first, last


def _unpriced_models(reader: Any, grain: str, lo: int, hi: int) -> list[tuple[str, str, int]]:
    rows = reader.query(
        "SELECT provider, key, SUM(unpriced_records) FROM rollup "
        "WHERE grain = ? AND dim = 'model' AND bucket_ts >= ? AND bucket_ts < ? "
        "GROUP BY provider, key HAVING SUM(unpriced_records) > 0",
        (grain, lo, hi),
    )
    out = [(p, m, int(n)) for p, m, n in rows]
    out.sort(key=lambda r: (-r[2], r[1]))
    return out


def build_report(
    reader: Any,
    *,
    period: str | None = None,
    by: str | None = None,
    since: int | None = None,
    until: int | None = None,
    tz: str = "UTC",
    week_start: str = "monday",
) -> Report:
    """Aggregate usage in ``[since, until)`` (Unix seconds; None = all) per local ``period`` (day, week,
    month; None = one summary) and per ``by`` group, in zone ``tz``."""
    if period is not None and period not in PERIODS:
        raise InputError(f"period {period!r}: use one of {', '.join(PERIODS)}")
    if by is not None and by not in GROUPS:
        raise InputError(f"--by {by!r}: use one of {', '.join(GROUPS)}")
    zone(tz)  # validate early: a bad zone is a one-line error even on an empty database
    wk = week_start_index(week_start)
    if since is not None and until is not None and until <= since:
        raise InputError("--until must be after --since; check the two dates")
    report = Report(
        period=period,
        by=by,
        timezone=tz,
        since=None,
        until=None,
        requested_since=since,
        requested_until=until,
        week_start=WEEKDAYS[wk],
    )
    if not getattr(reader, "exists", True) or not _table_exists(reader):
        return report
    span = data_span(reader, "h")
    if span is None:
        return report
    report.has_data = True

    # Effective bounds on whole hours: an hour bucket counts when its start lies in [lo, hi). An open end
    # is widened to a UTC midnight (nothing lies beyond the data) so the day grain can serve it.
    lo = _ceil(since, HOUR) if since is not None else span[0] - span[0] % DAY
    hi = _ceil(until, HOUR) if until is not None else _ceil(span[1] + HOUR, DAY)
    report.since, report.until = lo, hi
    if hi <= lo:
        return report

    day_aligned = lo % DAY == 0 and hi % DAY == 0
    if period is None:
        grain = "d" if day_aligned else "h"
        segments = [(lo, hi, None)]
    else:
        segments = offset_segments(lo, hi, tz)
        grain = "d" if day_aligned and all(off == 0 for _s, _e, off in segments) else "h"

    dim, group_cols = _GROUP_SQL[by]
    sums = _sum_sql()
    merged: dict[tuple, Totals] = {}
    labels: dict[int, str] = {}
    for seg_lo, seg_hi, off in segments:
        select = list(group_cols)
        if off is not None:
            # `off` is an int computed from zoneinfo, never user text: safe to inline, and inlining keeps
            # the GROUP BY expression identical on SQLite and PostgreSQL.
            select.insert(0, f"(bucket_ts + {int(off)}) / {DAY}")
        head = ", ".join(select)
        sql = (
            f"SELECT {head + ', ' if head else ''}{sums} FROM rollup "
            "WHERE grain = ? AND dim = ? AND bucket_ts >= ? AND bucket_ts < ?"
        )
        if select:
            sql += " GROUP BY " + ", ".join(str(i + 1) for i in range(len(select)))
        width = len(select)
        for row in reader.query(sql, (grain, dim, seg_lo, seg_hi)):
            if row[width] is None:  # aggregate over no rows
                continue
            if off is not None:
                day_number = int(row[0])
                label = labels.get(day_number)
                if label is None:
                    label = labels[day_number] = period_key(day_number, period or "day", wk)
                key = (label, *row[1:width])
            else:
                key = (None, *row[:width])
            t = merged.get(key)
            if t is None:
                t = merged[key] = Totals()
            t.add_values(row[width:])

    for key, t in merged.items():
        if by == "model":
            prov, group = key[1], key[2]
        elif by == "provider":
            prov, group = None, key[1]
        elif by is not None:
            prov, group = None, key[1]
        else:
            prov, group = None, None
        report.rows.append(ReportRow(period=key[0], group=group, provider=prov, totals=t))
        report.totals.add(t)
    report.rows.sort(
        key=lambda r: (
            r.period or "",
            -r.totals.cost_usd,
            -r.totals.requests,
            r.group or "",
            r.provider or "",
        )
    )
    if report.totals.records:
        report.unpriced_models = _unpriced_models(reader, grain, lo, hi)
        report.first_ts, report.last_ts = _first_last(reader, lo, hi)
    return report


def _table_exists(reader: Any) -> bool:
    check = getattr(reader, "table_exists", None)
    return True if check is None else bool(check("rollup"))
