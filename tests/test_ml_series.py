"""Series building: user's days across DST, zero-filled gaps, the partial current period kept apart."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from openai_monitor.errors import InputError
from openai_monitor.ml.series import build_series

PARIS = "Europe/Paris"


def _rows(items: list[tuple[datetime, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "bucket_ts": [int(ts.timestamp()) for ts, _ in items],
            "cost_usd": [v for _, v in items],
            "tokens": [v * 1000 for _, v in items],
            "requests": [1 for _ in items],
        }
    )


def _local(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(PARIS))


def test_daily_uses_local_days_and_zero_fills_gaps() -> None:
    # 23:30 UTC on 3 March is 00:30 on 4 March in Paris: it belongs to the user's 4 March.
    rows = _rows(
        [
            (datetime(2025, 3, 1, 10, tzinfo=timezone.utc), 1.0),
            (datetime(2025, 3, 3, 23, tzinfo=timezone.utc), 2.0),
            (datetime(2025, 3, 4, 9, tzinfo=timezone.utc), 0.5),
        ]
    )
    s = build_series(rows, freq="D", tz=PARIS, now=_local(2025, 3, 6, 12), metric="cost_usd")
    assert list(s.history.index) == list(pd.date_range("2025-03-01", "2025-03-05", freq="D"))
    assert s.history.tolist() == [1.0, 0.0, 0.0, 2.5, 0.0]
    assert s.partial_value == 0.0 and s.partial_fraction == pytest.approx(0.5)


def test_partial_today_is_not_in_history() -> None:
    rows = _rows(
        [(_local(2025, 6, 9, 10), 3.0), (_local(2025, 6, 10, 1), 4.0), (_local(2025, 6, 10, 5), 1.0)]
    )
    s = build_series(rows, freq="D", tz=PARIS, now=_local(2025, 6, 10, 6), metric="tokens")
    assert s.history.index[-1] == pd.Timestamp("2025-06-09")
    assert s.history.iloc[-1] == 3000.0
    assert s.partial_value == 5000.0
    assert s.partial_fraction == pytest.approx(6 / 24)
    assert s.partial_start == datetime(2025, 6, 10)


def test_dst_spring_forward_day_has_23_hours() -> None:
    # 30 March 2025: clocks go from 02:00 to 03:00 in Paris. At 12:00 local, 11 of 23 hours have passed.
    rows = _rows(
        [(_local(2025, 3, 29, 23), 1.0), (_local(2025, 3, 30, 1), 2.0), (_local(2025, 3, 30, 3), 4.0)]
    )
    s = build_series(rows, freq="D", tz=PARIS, now=_local(2025, 3, 30, 12), metric="cost_usd")
    assert s.partial_value == 6.0
    assert s.partial_fraction == pytest.approx(11 / 23)
    assert s.history.tolist() == [1.0]


def test_dst_fall_back_day_and_repeated_hour() -> None:
    # 26 October 2025: 03:00 CEST becomes 02:00 CET, so the day has 25 hours and 02:00 happens twice.
    first_two = datetime(2025, 10, 26, 0, tzinfo=timezone.utc)  # 02:00 CEST
    second_two = datetime(2025, 10, 26, 1, tzinfo=timezone.utc)  # 02:00 CET
    rows = _rows([(first_two, 1.0), (second_two, 2.0), (_local(2025, 10, 26, 23), 4.0)])
    daily = build_series(rows, freq="D", tz=PARIS, now=_local(2025, 10, 27, 6), metric="cost_usd")
    assert daily.history.tolist() == [7.0]
    noon = datetime(2025, 10, 26, 11, tzinfo=timezone.utc)  # 12:00 CET: 13 real hours since midnight
    partial = build_series(rows, freq="D", tz=PARIS, now=noon, metric="cost_usd")
    assert partial.partial_fraction == pytest.approx(13 / 25)
    hourly = build_series(rows, freq="h", tz=PARIS, now=_local(2025, 10, 26, 4), metric="cost_usd")
    assert hourly.history[pd.Timestamp("2025-10-26 02:00")] == 3.0
    assert len(hourly.history) == 2  # 02:00 and 03:00 local; 04:00 is the partial hour


def test_hourly_partial_hour_and_start() -> None:
    rows = _rows([(_local(2025, 5, 5, 8), 1.0), (_local(2025, 5, 5, 10), 2.0)])
    now = _local(2025, 5, 5, 10, 45)
    s = build_series(rows, freq="h", tz=PARIS, now=now, metric="requests", start=_local(2025, 5, 5, 6))
    assert s.history.tolist() == [0.0, 0.0, 1.0, 0.0]
    assert s.partial_value == 1.0 and s.partial_fraction == pytest.approx(0.75)


def test_future_rows_ignored_and_empty_rows() -> None:
    rows = _rows([(_local(2025, 5, 7, 10), 9.0)])
    s = build_series(rows, freq="D", tz=PARIS, now=_local(2025, 5, 5, 10), metric="cost_usd")
    assert len(s.history) == 0 and s.partial_value == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric": "dollars"}, "unknown metric"),
        ({"freq": "W"}, "unknown frequency"),
        ({"tz": "Mars/Olympus"}, "unknown time zone"),
        ({"now": datetime(2025, 1, 1)}, "timezone-aware"),
    ],
)
def test_bad_arguments_name_the_fix(kwargs: dict, message: str) -> None:
    args = {"freq": "D", "tz": PARIS, "now": _local(2025, 5, 5, 10), "metric": "cost_usd"} | kwargs
    with pytest.raises(InputError, match=message):
        build_series(_rows([]), **args)
