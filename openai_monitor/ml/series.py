"""Regular daily or hourly series in the user's time zone, from hourly store buckets.

Days are the user's calendar days (zoneinfo, DST-safe: a DST day has 23 or 25 hours). Hourly series are
indexed by naive local wall-clock hours: the hour skipped when clocks go forward is a zero, and the hour
repeated when they go back holds both real hours, so daily seasonality stays aligned with the user's day.
Missing periods are zeros. The current period (today / this hour at ``now``) is never part of the
history: a partial day would be fitted as a low day, so it is returned separately with its elapsed fraction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from openai_monitor.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

METRICS = ("cost_usd", "tokens", "requests")
FREQS = ("D", "h")
Freq = Literal["D", "h"]


@dataclass(frozen=True)
class SeriesData:
    """A complete-period history plus the current, partial period."""

    history: pd.Series  # float values indexed by naive local period starts, regular at ``freq``
    partial_value: float  # metric total so far in the current period
    partial_fraction: float  # elapsed share of the current period at ``now``, in [0, 1)
    partial_start: datetime  # naive local start of the current period
    freq: str
    tz: str
    metric: str


def _zone(tz: str):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InputError(
            f"unknown time zone {tz!r}: use an IANA name such as 'Europe/Paris' or 'UTC'"
        ) from exc


def check_freq(freq: str) -> str:
    if freq not in FREQS:
        raise InputError(f"unknown frequency {freq!r}: use 'D' (daily) or 'h' (hourly)")
    return freq


def period_bounds(now: datetime, freq: str, tz: str) -> tuple[datetime, datetime, datetime]:
    """Return (naive local start, aware start, aware end) of the period containing ``now``."""
    if now.tzinfo is None:
        raise InputError("now must be timezone-aware: pass datetime.now(timezone.utc)")
    zone = _zone(tz)
    local = now.astimezone(zone)
    if check_freq(freq) == "D":
        start = datetime(local.year, local.month, local.day, tzinfo=zone)
        nxt = start.date() + timedelta(days=1)
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
    else:
        start = local.replace(minute=0, second=0, microsecond=0)
        # Add real time, not wall time, so the repeated hour at a DST change ends an hour later.
        end = (start.astimezone(_utc()) + timedelta(hours=1)).astimezone(zone)
    return start.replace(tzinfo=None), start, end


def _utc():
    from datetime import timezone

    return timezone.utc


def build_series(
    rows: pd.DataFrame,
    *,
    freq: Freq,
    tz: str,
    now: datetime,
    metric: str,
    start: datetime | None = None,
) -> SeriesData:
    """Aggregate hourly buckets (``bucket_ts`` in Unix seconds UTC) of one scope into a regular series.

    ``start`` (aware, or naive local) sets the first period; otherwise the first row's period is used.
    Rows at or after the end of the current period are ignored (clock skew between sources).
    """
    import numpy as np
    import pandas as pd

    check_freq(freq)
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    if "bucket_ts" not in rows.columns or metric not in rows.columns:
        raise InputError(f"rows need the columns bucket_ts and {metric}")
    zone = _zone(tz)
    cur_naive, cur_start, cur_end = period_bounds(now, freq, tz)
    fraction = (now.timestamp() - cur_start.timestamp()) / (cur_end.timestamp() - cur_start.timestamp())

    ts = rows["bucket_ts"].to_numpy(dtype="int64")
    values = rows[metric].to_numpy(dtype="float64")
    keep = ts < int(cur_end.timestamp())
    ts, values = ts[keep], np.nan_to_num(values[keep])
    local = pd.to_datetime(ts, unit="s", utc=True).tz_convert(zone).tz_localize(None)
    keys = local.floor("D" if freq == "D" else "h")

    if start is not None:
        if start.tzinfo is not None:
            start = start.astimezone(zone).replace(tzinfo=None)
        first = pd.Timestamp(start).floor("D" if freq == "D" else "h")
    elif len(keys):
        first = keys.min()
    else:
        first = pd.Timestamp(cur_naive)
    sums = pd.Series(values, index=keys).groupby(level=0).sum()
    partial = float(sums.get(pd.Timestamp(cur_naive), 0.0))
    index = pd.date_range(first, pd.Timestamp(cur_naive), freq=freq)
    index = index[index < pd.Timestamp(cur_naive)]
    history = sums.reindex(index, fill_value=0.0).astype("float64")
    history.index.name = "ds"
    history.name = metric
    return SeriesData(
        history=history,
        partial_value=partial,
        partial_fraction=float(min(max(fraction, 0.0), 1.0)),
        partial_start=cur_naive,
        freq=freq,
        tz=tz,
        metric=metric,
    )
