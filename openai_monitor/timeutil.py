"""Small time helpers shared by adapters, reports and the CLI (pure; `now` is always passed in)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InputError


def parse_timestamp(value: str) -> int:
    """ISO 8601 (naive = UTC) or Unix seconds -> Unix seconds."""
    v = value.strip()
    try:
        return int(float(v))
    except ValueError:
        pass
    try:
        d = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError as e:
        raise InputError(
            f"cannot read time {value!r}; use ISO 8601 (2025-06-10T12:00:00Z) or Unix seconds"
        ) from e
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return int(d.timestamp())


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise InputError(f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin or UTC") from e


def parse_date_bound(value: str, tz: str, *, end: bool = False) -> int:
    """A --since/--until value: YYYY-MM-DD (local midnight in tz; --until is inclusive of that day),
    ISO datetime, or a relative '7d' / '24h'. Returns Unix seconds."""
    import time

    v = value.strip()
    if v[-1:] in ("d", "h") and v[:-1].isdigit():
        n = int(v[:-1]) * (86400 if v[-1] == "d" else 3600)
        return int(time.time()) - n
    if len(v) == 10 and v[4] == "-" and v[7] == "-":
        try:
            day = dt.date.fromisoformat(v)
        except ValueError as e:
            raise InputError(f"cannot read date {value!r}; use YYYY-MM-DD") from e
        if end:
            day += dt.timedelta(days=1)
        return int(dt.datetime.combine(day, dt.time(), tzinfo=zone(tz)).timestamp())
    return parse_timestamp(v)


def local_day_start(ts: int, tz: str) -> int:
    """Unix seconds of local midnight of the day containing ts."""
    z = zone(tz)
    d = dt.datetime.fromtimestamp(ts, z).date()
    return int(dt.datetime.combine(d, dt.time(), tzinfo=z).timestamp())
