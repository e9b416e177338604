"""Usage patterns: when usage happens and what shapes its days take. Pure: numpy/pandas/sklearn/prophet,
no I/O, no clock.

Inputs are hourly buckets ``(ts, key, value)`` (``ts`` = UTC Unix seconds of the hour, ``key`` a user or
model, ``value`` cost, requests or tokens) and the IANA zone that decides local hours and days.

* ``hour_of_week``: a 7 x 24 matrix (Monday first, local hours) of summed values.
* ``peaks``: peak hours of the day and days of the week of one matrix, with their shares.
* ``cluster_days``: one sample per (key, local day): the day's 24-hour shape (shares of the day's total,
  circularly smoothed over +-1 hour so a job that drifts by an hour keeps its shape). Shapes are compared
  with the Hellinger distance (Euclidean distance of square-rooted shares / sqrt 2, in [0, 1]: a proper
  metric between distributions that does not let one large hour dominate) and grouped by DBSCAN, which
  needs no number of clusters and leaves irregular days as noise. Each cluster gets a plain label from
  its mean shape (how concentrated, which hours) and its weekday mix.
* ``sessions``: a timeline of CLI-log sessions from per-(session, model) aggregates.
* ``seasonal_components``: the weekly and daily seasonal effects a fitted Prophet forecaster learned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# DBSCAN defaults: two day-shapes within Hellinger 0.25 are "the same kind of day". An office-hours day
# with Poisson noise stays within ~0.15 of its mean shape; a 02:00 job and a 09-17 day are ~1.0 apart; a
# flat weekend and a 08-18 weekday ~0.45. At 0.3, sparse noisy days chained weekdays and weekends of the
# tests' six-week synthetic set into one cluster; 0.2-0.25 keeps them apart.
DEFAULT_EPS = 0.25
DEFAULT_MIN_SAMPLES = 3
# Hours holding this share of a cluster's mean shape are its "active hours".
ACTIVE_SHARE = 0.8


def _local_frame(ts: Sequence[int], keys: Sequence[str], values: Sequence[float], tz: str) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    idx = pd.to_datetime(np.asarray(ts, dtype="int64"), unit="s", utc=True).tz_convert(tz)
    return pd.DataFrame(
        {
            "key": list(keys),
            "value": np.asarray(values, dtype=float),
            "weekday": idx.weekday,
            "hour": idx.hour,
            "day": idx.strftime("%Y-%m-%d"),
        }
    )


def hour_of_week(ts: Sequence[int], values: Sequence[float], tz: str) -> np.ndarray:
    """7 x 24 matrix of summed values by local weekday (Monday = row 0) and local hour."""
    import numpy as np

    out = np.zeros((7, 24))
    if len(ts) == 0:
        return out
    df = _local_frame(ts, [""] * len(ts), values, tz)
    np.add.at(out, (df["weekday"].to_numpy(), df["hour"].to_numpy()), df["value"].to_numpy())
    return out


@dataclass
class Peaks:
    """Where one matrix's usage concentrates. Shares are fractions of the matrix total."""

    total: float
    peak_hours: list[tuple[int, float]]  # (local hour, share), busiest first
    peak_days: list[tuple[str, float]]  # (weekday name, share), busiest first
    peak_slot: tuple[str, int, float] | None  # busiest (weekday, hour, share)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "peak_hours": [{"hour": h, "share": round(s, 4)} for h, s in self.peak_hours],
            "peak_days": [{"day": d, "share": round(s, 4)} for d, s in self.peak_days],
            "peak_slot": (
                None
                if self.peak_slot is None
                else {
                    "day": self.peak_slot[0],
                    "hour": self.peak_slot[1],
                    "share": round(self.peak_slot[2], 4),
                }
            ),
        }


def peaks(matrix: np.ndarray, top: int = 3) -> Peaks:
    """Top hours of the day and days of the week of a 7 x 24 matrix (only those with usage)."""
    import numpy as np

    total = float(matrix.sum())
    if total <= 0:
        return Peaks(0.0, [], [], None)
    by_hour = matrix.sum(axis=0) / total
    by_day = matrix.sum(axis=1) / total
    hours = [(int(h), float(by_hour[h])) for h in np.argsort(-by_hour, kind="stable")[:top] if by_hour[h] > 0]
    days = [
        (WEEKDAYS[d], float(by_day[d])) for d in np.argsort(-by_day, kind="stable")[:top] if by_day[d] > 0
    ]
    d, h = np.unravel_index(int(np.argmax(matrix)), matrix.shape)
    return Peaks(total, hours, days, (WEEKDAYS[int(d)], int(h), float(matrix[d, h] / total)))


def peaks_by_key(
    ts: Sequence[int], keys: Sequence[str], values: Sequence[float], tz: str, top: int = 3
) -> dict[str, Peaks]:
    """Peaks per key, keys ordered by total (largest first)."""
    import numpy as np

    if len(ts) == 0:
        return {}
    df = _local_frame(ts, keys, values, tz)
    out: dict[str, Peaks] = {}
    for key, g in df.groupby("key", sort=False):
        m = np.zeros((7, 24))
        np.add.at(m, (g["weekday"].to_numpy(), g["hour"].to_numpy()), g["value"].to_numpy())
        out[str(key)] = peaks(m, top)
    return dict(sorted(out.items(), key=lambda kv: -kv[1].total))


# ------------------------------------------------------------------------------------------- clustering


@dataclass
class DayCluster:
    label: str
    cluster_id: int  # -1: the days DBSCAN left as noise
    days: int
    keys: list[tuple[str, int]]  # (key, days of that key in the cluster), most first
    active_hours: list[int]
    weekday_share: float  # share of the cluster's days that are Monday-Friday
    mean_value_per_day: float
    profile: list[float]  # mean 24-hour shape (shares, sum 1)
    examples: list[str] = field(default_factory=list)  # a few local dates

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "cluster": self.cluster_id,
            "days": self.days,
            "keys": [{"key": k, "days": n} for k, n in self.keys],
            "active_hours": self.active_hours,
            "weekday_share": round(self.weekday_share, 4),
            "mean_value_per_day": self.mean_value_per_day,
            "profile": [round(v, 4) for v in self.profile],
            "examples": self.examples,
        }


def daily_profiles(
    ts: Sequence[int], keys: Sequence[str], values: Sequence[float], tz: str
) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per (key, local day) with usage: ``(index frame [key, day, weekday, total], 24-hour values)``."""
    import numpy as np
    import pandas as pd

    if len(ts) == 0:
        return pd.DataFrame(columns=["key", "day", "weekday", "total"]), np.zeros((0, 24))
    df = _local_frame(ts, keys, values, tz)
    df = df[df["value"] > 0]
    wide = df.pivot_table(index=["key", "day", "weekday"], columns="hour", values="value", aggfunc="sum")
    wide = wide.reindex(columns=range(24), fill_value=0.0).fillna(0.0)
    index = wide.index.to_frame(index=False)
    mat = wide.to_numpy(dtype=float)
    index["total"] = mat.sum(axis=1)
    return index, mat


def _shapes(mat: np.ndarray) -> np.ndarray:
    import numpy as np

    shares = mat / mat.sum(axis=1, keepdims=True)
    smooth = 0.25 * np.roll(shares, 1, axis=1) + 0.5 * shares + 0.25 * np.roll(shares, -1, axis=1)
    # sqrt(shares) / sqrt(2): Euclidean distance between these rows is the Hellinger distance.
    return np.sqrt(smooth) / np.sqrt(2.0)


def active_hours(profile: Sequence[float], share: float = ACTIVE_SHARE) -> list[int]:
    """The fewest hours whose shares add up to ``share`` of the profile, in clock order."""
    import numpy as np

    p = np.asarray(profile, dtype=float)
    if p.sum() <= 0:
        return []
    order = np.argsort(-p, kind="stable")
    cum = np.cumsum(p[order]) / p.sum()
    n = int(np.searchsorted(cum, share - 1e-9) + 1)
    return sorted(int(h) for h in order[:n])


def covering_arc(hours: Sequence[int]) -> tuple[int, int]:
    """The shortest run of clock hours ``(first, last)`` covering ``hours`` on the 24-hour circle
    (``last < first`` when it wraps past midnight): the complement of the largest gap between them."""
    hs = sorted(set(int(h) % 24 for h in hours))
    if len(hs) == 1:
        return hs[0], hs[0]
    gaps = [((hs[(i + 1) % len(hs)] - hs[i]) % 24, i) for i in range(len(hs))]
    _gap, i = max(gaps)
    return hs[(i + 1) % len(hs)], hs[i]


def label_cluster(profile: Sequence[float], weekday_share: float) -> str:
    """A plain name for a kind of day from its mean 24-hour shape and the share of weekdays in it.

    Concentrated days (two hours hold >= 80% of the usage) read as a scheduled job. Otherwise the hours
    with at least a quarter of the peak hour's share are the working hours; the shortest clock span that
    covers them names the day (office hours, evening, night, round-the-clock), or "mixed" when that span
    is mostly empty (e.g. a morning and an evening block).
    """
    p = [float(v) for v in profile]
    total = sum(p)
    when = "weekday" if weekday_share >= 0.85 else "weekend" if weekday_share <= 0.15 else "daily"
    if total <= 0:
        return "no usage"
    order = sorted(range(24), key=lambda h: -p[h])
    if (p[order[0]] + p[order[1]]) / total >= ACTIVE_SHARE:
        return f"{when} batch job at {order[0]:02d}:00"
    peak = p[order[0]]
    hours = [h for h in range(24) if p[h] >= 0.25 * peak]
    a, b = covering_arc(hours)
    length = (b - a) % 24 + 1
    span = f"{a:02d}:00-{(b + 1) % 24:02d}:00"
    if length >= 18:
        return f"{when} round-the-clock usage"
    if length > 2 * len(hours):
        return f"{when} mixed usage, peak at {order[0]:02d}:00"
    if a <= b and 7 <= a and b <= 19:
        return f"{when} interactive office hours ({span})"
    if a <= b and a >= 17:
        return f"{when} evening usage ({span})"
    if a > b or b <= 6:
        return f"{when} night usage ({span})"
    return f"{when} usage {span}"


def cluster_days(
    index: pd.DataFrame,
    mat: np.ndarray,
    *,
    eps: float = DEFAULT_EPS,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> list[DayCluster]:
    """DBSCAN over day shapes (Hellinger distance); clusters largest first, the noise group last."""

    if len(mat) == 0:
        return []
    from sklearn.cluster import DBSCAN

    shapes = _shapes(mat)
    labels = DBSCAN(eps=eps, min_samples=min(min_samples, len(mat))).fit_predict(shapes)
    shares = mat / mat.sum(axis=1, keepdims=True)
    out: list[DayCluster] = []
    for cid in sorted(set(labels.tolist()), key=lambda c: (c == -1, -int((labels == c).sum()))):
        sel = labels == cid
        sub = index[sel]
        profile = shares[sel].mean(axis=0)
        wd = float((sub["weekday"] < 5).mean())
        counts = sub["key"].value_counts()
        label = label_cluster(profile.tolist(), wd) if cid != -1 else "irregular days (no common shape)"
        out.append(
            DayCluster(
                label=label,
                cluster_id=int(cid),
                days=int(sel.sum()),
                keys=[(str(k), int(n)) for k, n in counts.items()],
                active_hours=active_hours(profile) if cid != -1 else [],
                weekday_share=wd,
                mean_value_per_day=float(sub["total"].mean()),
                profile=[float(v) for v in profile],
                examples=sorted(sub["day"].unique().tolist())[-3:],
            )
        )
    return out


# ------------------------------------------------------------------------------------------- sessions


@dataclass
class Session:
    session_id: str
    start_ts: int
    end_ts: int
    cost_usd: float
    requests: int
    tokens: int
    model: str  # the model the session spent most on
    models: list[str]
    source: str = ""
    project: str = ""

    @property
    def duration_s(self) -> int:
        return self.end_ts - self.start_ts

    def as_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "start_ts": self.start_ts,
            "end_ts": self.end_ts,
            "duration_s": self.duration_s,
            "cost_usd": round(self.cost_usd, 6),
            "requests": self.requests,
            "tokens": self.tokens,
            "model": self.model,
            "models": self.models,
            "source": self.source,
            "project": self.project,
        }


def sessions(rows: Iterable[Sequence[Any]]) -> list[Session]:
    """Sessions from ``(session_id, model, min_ts, max_ts, cost, requests, tokens, source, project)`` rows,
    one per session and model; ordered by start."""
    acc: dict[str, dict[str, Any]] = {}
    for sid, model, t0, t1, cost, req, tok, source, project in rows:
        if not sid:
            continue
        a = acc.setdefault(
            str(sid),
            {
                "start": int(t0),
                "end": int(t1),
                "cost": 0.0,
                "req": 0,
                "tok": 0,
                "models": {},
                "src": "",
                "proj": "",
            },
        )
        a["start"] = min(a["start"], int(t0))
        a["end"] = max(a["end"], int(t1))
        a["cost"] += float(cost or 0.0)
        a["req"] += int(req or 0)
        a["tok"] += int(tok or 0)
        a["models"][str(model)] = a["models"].get(str(model), 0.0) + float(cost or 0.0)
        a["src"] = a["src"] or (source or "")
        a["proj"] = a["proj"] or (project or "")
    out = []
    for sid, a in acc.items():
        models = sorted(a["models"], key=lambda m: (-a["models"][m], m))
        out.append(
            Session(
                sid,
                a["start"],
                a["end"],
                a["cost"],
                a["req"],
                a["tok"],
                models[0],
                models,
                a["src"],
                a["proj"],
            )
        )
    return sorted(out, key=lambda s: (s.start_ts, s.session_id))


# ------------------------------------------------------------------------------------------- seasonality


def seasonal_components(fitted: Any) -> dict[str, Any] | None:
    """Weekly (and, for hourly models, daily) seasonal effects of a fitted Prophet forecaster.

    The forecaster models ``z = f(y / scale)`` (see ``ProphetForecaster``); a component ``c`` adds to
    ``z``. With the default log transform that multiplies ``1 + y / scale`` by ``exp(c)``, so effects are
    given as percentages around the component's mean, ``100 * (exp(c - mean c) - 1)``. For the sqrt and
    identity transforms the raw component values are given (``effect_pct`` is None). None for fallback
    (non-Prophet) models.
    """
    import numpy as np
    import pandas as pd

    if getattr(fitted, "kind", None) != "prophet":
        return None
    fc = fitted.forecaster
    m = fc.model_
    out: dict[str, Any] = {"transform": fc.transform, "freq": fitted.freq}

    def comp(ds: pd.DatetimeIndex, name: str) -> np.ndarray:
        frame = pd.DataFrame({"ds": ds, "cap": 1.0, "floor": 0.0})
        for reg in m.extra_regressors:
            frame[reg] = 0.0
        return m.predict_seasonal_components(m.setup_dataframe(frame))[name].to_numpy()

    def effect(values: np.ndarray) -> list[float] | None:
        if fc.transform != "log":
            return None
        return [round(float(v), 2) for v in 100.0 * (np.exp(values - values.mean()) - 1.0)]

    monday = pd.Timestamp("2024-01-01")  # a Monday; seasonal terms depend only on the time of week
    if "weekly" in m.seasonalities:
        if fitted.freq == "h":
            ds = pd.date_range(monday, periods=7 * 24, freq="h")
            weekly = comp(ds, "weekly").reshape(7, 24).mean(axis=1)
        else:
            weekly = comp(pd.date_range(monday, periods=7, freq="D"), "weekly")
        out["weekly"] = {
            "days": list(WEEKDAYS),
            "values": [round(float(v), 5) for v in weekly],
            "effect_pct": effect(weekly),
        }
    if "daily" in m.seasonalities:
        daily = comp(pd.date_range(monday, periods=24, freq="h"), "daily")
        out["daily"] = {
            "hours": list(range(24)),
            "values": [round(float(v), 5) for v in daily],
            "effect_pct": effect(daily),
        }
    if "weekly" not in out and "daily" not in out:
        return None
    return out
