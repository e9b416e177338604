"""The bundled demo data set, shifted by whole weeks so that it ends yesterday (weekdays kept)."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

from ..timeutil import local_day_start, parse_timestamp

WEEK = 7 * 86400


def shift_seconds(last_ts: int, now: int, tz: str) -> int:
    """Whole weeks to add so that the data's last day is the last full local day before ``now``."""
    yesterday_start = local_day_start(now, tz) - 86400
    gap = yesterday_start - local_day_start(last_ts, tz)
    return (gap // WEEK) * WEEK if gap >= 0 else -((-gap + WEEK - 1) // WEEK) * WEEK


def write_shifted_demo(src: Path, dest: Path, *, now: int, tz: str) -> Path:
    with open(src, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    last = max(parse_timestamp(r["timestamp"]) for r in rows)
    shift = shift_seconds(last, now, tz)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()), lineterminator="\n")
        w.writeheader()
        for r in rows:
            ts = parse_timestamp(r["timestamp"]) + shift
            r["timestamp"] = dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            w.writerow(r)
    return dest


def shifted_first_ts(path: Path) -> int:
    """Unix seconds of the first row of a demo CSV (rows are sorted by time)."""
    with open(path, newline="", encoding="utf-8") as f:
        first = next(csv.DictReader(f))
    return parse_timestamp(first["timestamp"])
