"""Usage reports (summary, daily, weekly, monthly) computed from the rollup table only.

Read path: a :class:`~openai_monitor.store.db.FastReader` (stdlib sqlite3 on SQLite), no SQLAlchemy or pandas.
The raw ``usage_records`` table is touched only for the first/last timestamp, through an
``ORDER BY ts LIMIT 1`` on its ``ts`` index (O(log n)).

Local periods. The rollup stores UTC hour buckets (grain ``'h'``) and UTC day buckets (``'d'``). The
requested range is split into segments of constant UTC offset (the zone's transitions, found with zoneinfo)
and each segment into partial UTC days at its ends and whole UTC days between. Partial days are grouped in
SQL by ``(bucket_ts + offset) / 86400`` over hour buckets (integer epoch arithmetic, portable to PostgreSQL).
Whole days are read from day buckets, then corrected with the hour buckets whose local day differs from
their UTC day (a band of |offset| hours per day, filtered in SQL): their sums move from the UTC day to the
local day. So UTC reads day buckets only, and New York reads about 5 of every 24 hour buckets. Days are
merged into weeks and months here.

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
    """Summed usage, fields in :data:`SUMS` order. ``cost_usd`` is every known cost, ``cost_reported_usd``
    its billed (source-reported) part; the rest was estimated here from prices."""

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

    def add_values(self, values: tuple | list, sign: int = 1) -> None:
        """Add (sign=1) or subtract (sign=-1) a row of sums given in :data:`SUMS` order (NULL counts as 0)."""
        for name, v in zip(SUMS, values):
            if v:
                setattr(self, name, getattr(self, name) + sign * v)

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
            # + 0.0 turns the -0.0 left by subtracting a float sum back into 0.0
            "cost_usd": round(self.cost_usd, 6) + 0.0,
            "cost_billed_usd": round(self.cost_reported_usd, 6) + 0.0,
            "cost_estimated_usd": round(self.cost_estimated_usd, 6) + 0.0,
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


def _unpriced_models(reader: Any, lo: int, hi: int) -> list[tuple[str, str, int]]:
    counts: dict[tuple[str, str], int] = {}
    for grain, a, b in split_days(lo, hi):
        for p, m, n in reader.query(
            "SELECT provider, key, SUM(unpriced_records) FROM rollup "
            "WHERE grain = ? AND dim = 'model' AND bucket_ts >= ? AND bucket_ts < ? AND unpriced_records > 0 "
            "GROUP BY provider, key",
            (grain, a, b),
        ):
            counts[(p, m)] = counts.get((p, m), 0) + int(n)
    out = [(p, m, n) for (p, m), n in counts.items()]
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

    segments = [(lo, hi, None)] if period is None else offset_segments(lo, hi, tz)
    dim, group_cols = _GROUP_SQL[by]
    width = len(group_cols)
    # Plain lists while accumulating (tens of thousands of rows on big ranges); Totals once merged.
    by_day: dict[tuple, list] = {}
    zero = [0] * len(SUMS)

    def add(key: tuple, values: tuple, sign: int = 1) -> None:
        acc = by_day.get(key)
        if acc is None:
            acc = by_day[key] = zero.copy()
        for i, v in enumerate(values):
            if v:
                acc[i] += v if sign > 0 else -v

    for seg_lo, seg_hi, off in segments:
        for grain, a, b in split_days(seg_lo, seg_hi):
            if off is None:  # summary: no day column
                for row in _grouped(reader, grain, dim, a, b, group_cols, ()):
                    add((None, *row[:width]), row[width:])
            elif grain == "h":
                for row in _grouped(reader, grain, dim, a, b, group_cols, (_local_day_sql(off),)):
                    add((row[0], *row[1 : width + 1]), row[width + 1 :])
            else:
                # Whole UTC days first, as if each were its local day; then move the hours whose local day
                # differs (a band of |offset| hours per day) from the UTC day to their local day.
                for row in _grouped(reader, "d", dim, a, b, group_cols, (f"bucket_ts / {DAY}",)):
                    add((row[0], *row[1 : width + 1]), row[width + 1 :])
                if off:
                    for row in _band(reader, dim, a, b, off, group_cols):
                        values = row[width + 2 :]
                        add((row[0], *row[2 : width + 2]), values, -1)
                        add((row[1], *row[2 : width + 2]), values)

    merged: dict[tuple, Totals] = {}
    labels: dict[int, str] = {}
    for key, acc in by_day.items():
        if acc[0] <= 0:  # records: every hour of that UTC day moved to a neighbouring local day
            continue
        t = Totals(*acc)
        day = key[0]
        if day is not None:
            label = labels.get(day)
            if label is None:
                label = labels[day] = period_key(int(day), period or "day", wk)
            key = (label, *key[1:])
        m = merged.get(key)
        if m is None:
            merged[key] = t
        else:
            m.add(t)

    for key, t in merged.items():
        if by == "model":
            prov, group = key[1], key[2]
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
        report.unpriced_models = _unpriced_models(reader, lo, hi)
        report.first_ts, report.last_ts = _first_last(reader, lo, hi)
    return report


def split_days(lo: int, hi: int) -> list[tuple[str, int, int]]:
    """Cover the hour-aligned range ``[lo, hi)`` with ``(grain, start, end)`` parts: hour buckets for the
    partial UTC days at either end, day buckets for the whole UTC days between."""
    mid_lo = min(_ceil(lo, DAY), hi)
    mid_hi = max(hi - hi % DAY, mid_lo)
    parts = []
    if mid_lo > lo:
        parts.append(("h", lo, mid_lo))
    if mid_hi > mid_lo:
        parts.append(("d", mid_lo, mid_hi))
    if hi > mid_hi:
        parts.append(("h", mid_hi, hi))
    return parts


def _local_day_sql(off: int) -> str:
    # `off` is an int computed from zoneinfo, never user text: inlining it is safe and keeps the GROUP BY
    # expression identical on SQLite and PostgreSQL (integer division of BIGINT epoch seconds on both).
    return f"(bucket_ts + {int(off)}) / {DAY}"


def _band(reader: Any, dim: str, lo: int, hi: int, off: int, group_cols: tuple[str, ...]) -> list[tuple]:
    """Hour-bucket sums in the whole UTC days of ``[lo, hi)`` whose local day (UTC offset ``off``) is not
    their UTC day: the first ``-off`` seconds of each day west of UTC, the last ``off`` seconds east of it.
    Rows are ``(utc_day, local_day, *group_cols, *SUMS)``.

    A recursive CTE lists the days so each day's band is an index range seek: only band rows are read,
    where a filter on an expression would walk every hour bucket of the range."""
    start, end = (0, -off) if off < 0 else (DAY - off, DAY)
    select = [f"bucket_ts / {DAY}", _local_day_sql(off), *group_cols]
    sql = (
        f"WITH RECURSIVE days(d) AS (SELECT CAST(? AS BIGINT) UNION ALL "
        f"SELECT d + {DAY} FROM days WHERE d + {DAY} < ?) "
        f"SELECT {', '.join(select)}, {_sum_sql()} FROM days JOIN rollup ON rollup.grain = 'h' "
        f"AND rollup.dim = ? AND rollup.bucket_ts >= days.d + {int(start)} AND rollup.bucket_ts < days.d + {int(end)} "
        "GROUP BY " + ", ".join(str(i + 1) for i in range(len(select)))
    )
    n = len(select)
    return [row for row in reader.query(sql, (lo, hi, dim)) if row[n] is not None]


def _grouped(
    reader: Any,
    grain: str,
    dim: str,
    lo: int,
    hi: int,
    group_cols: tuple[str, ...],
    lead: tuple[str, ...],
    where: str = "",
) -> list[tuple]:
    """Rollup sums over ``[lo, hi)`` grouped by the ``lead`` expressions then ``group_cols``; each row is
    ``(*lead, *group_cols, *SUMS)``. Empty aggregates are left out."""
    select = [*lead, *group_cols]
    head = ", ".join(select)
    sql = (
        f"SELECT {head + ', ' if head else ''}{_sum_sql()} FROM rollup "
        "WHERE grain = ? AND dim = ? AND bucket_ts >= ? AND bucket_ts < ?"
    )
    if where:
        sql += f" AND {where}"
    if select:
        sql += " GROUP BY " + ", ".join(str(i + 1) for i in range(len(select)))
    n = len(select)
    return [row for row in reader.query(sql, (grain, dim, lo, hi)) if row[n] is not None]


def _table_exists(reader: Any) -> bool:
    check = getattr(reader, "table_exists", None)
    return True if check is None else bool(check("rollup"))
