"""Numenta Anomaly Benchmark (NAB v1.1) scoring rules, and a causal rolling-fit runner for our detector.

Scoring follows numenta/NAB ``nab/sweeper.py`` (``Sweeper.calcSweepScore``, ``calcScoreByThreshold``,
``scoreDataSet``), ``nab/optimizer.py`` (one threshold per profile, chosen on the whole corpus) and
``nab/runner.py`` (``normalize``):

* probation: the first ``min(floor(0.15 * n), 0.15 * 5000)`` rows of a file are not scored;
* a detected point inside a window scores ``tpWeight * S(-(right - i + 1) / width) / S(-1)`` where
  ``S(x) = 2 / (1 + exp(5x)) - 1`` (``S(x) = -1`` for ``x >= 3``); only the best (earliest) detection in a
  window counts, an undetected window costs ``-fnWeight``;
* a detected point outside any window costs ``fpWeight * S(|i - prev_right| / (prev_width - 1))``, or
  ``-fpWeight`` before the first window;
* normalised score = ``100 * (raw - null) / (perfect - null)`` with ``perfect = n_windows * tpWeight`` and
  ``null`` the raw score of a detector that always outputs 0, run through the same threshold sweep.

Pure: numpy and pandas only, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

PROBATION_PERCENT = 0.15


@dataclass(frozen=True, slots=True)
class CostMatrix:
    """Weights of one NAB application profile (``profiles.json`` ``CostMatrix``)."""

    tp_weight: float
    fp_weight: float
    fn_weight: float


@dataclass(frozen=True, slots=True)
class AnomalyPoint:
    """One row after the sweep: its detector score, the NAB score it earns if detected, its window.

    ``window`` is ``None`` outside every window, ``"probationary"`` in the probation period (not scored),
    else a name unique in the corpus (``"<file>|<window start index>"``).
    """

    index: int
    anomaly_score: float
    sweep_score: float
    window: str | None


@dataclass(frozen=True, slots=True)
class ThresholdScore:
    """Raw NAB score and point counts when every row with ``anomaly_score >= threshold`` is a detection."""

    threshold: float
    score: float
    tp: int
    tn: int
    fp: int
    fn: int

    @property
    def total(self) -> int:
        return self.tp + self.tn + self.fp + self.fn


def parse_profiles(profiles: Mapping[str, Mapping]) -> dict[str, CostMatrix]:
    """Read NAB's ``profiles.json`` structure into cost matrices."""
    out = {}
    for name, body in profiles.items():
        cm = body["CostMatrix"]
        out[name] = CostMatrix(float(cm["tpWeight"]), float(cm["fpWeight"]), float(cm["fnWeight"]))
    return out


def scaled_sigmoid(relative_position: float) -> float:
    """NAB's scaled sigmoid: 0.98661 at -1 (window start), 0 at 0 (window end), -1 from 3 on."""
    if relative_position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * relative_position)) - 1.0


def probation_length(n_rows: int, probation_percent: float = PROBATION_PERCENT) -> float:
    """Rows at the start of a file that are never scored (NAB caps it at 15% of 5000 rows)."""
    return min(math.floor(probation_percent * n_rows), probation_percent * 5000)


def window_indices(timestamps: Sequence, windows: Sequence[Sequence]) -> list[tuple[int, int]]:
    """Map label windows ``[[start, end], ...]`` (timestamps) to inclusive row index pairs.

    NAB's labels use timestamps that exist in the data; for robustness a window is snapped inward to the
    first row at or after its start and the last row at or before its end.
    """
    import pandas as pd

    ts = pd.to_datetime(pd.Series(list(timestamps))).to_numpy()
    out = []
    for start, end in windows:
        lo = int(np.searchsorted(ts, np.datetime64(pd.Timestamp(start)), side="left"))
        hi = int(np.searchsorted(ts, np.datetime64(pd.Timestamp(end)), side="right")) - 1
        if lo <= hi:
            out.append((lo, hi))
    return sorted(out)


def sweep(
    anomaly_scores: Sequence[float],
    windows: Sequence[tuple[int, int]],
    name: str,
    cost: CostMatrix,
    probation_percent: float = PROBATION_PERCENT,
) -> list[AnomalyPoint]:
    """Score each row as if it were a detection (``Sweeper.calcSweepScore``)."""
    scores = np.asarray(anomaly_scores, dtype=float)
    n = len(scores)
    max_tp = scaled_sigmoid(-1.0)
    probation = probation_length(n, probation_percent)
    pending = sorted(windows)
    cur: tuple[int, int] | None = None
    cur_name: str | None = None
    prev_right: int | None = None
    prev_width = 0.0
    out: list[AnomalyPoint] = []
    for i in range(n):
        if pending and i == pending[0][0]:
            cur = pending.pop(0)
            cur_name = f"{name}|{cur[0]}"
        if cur is not None:
            width = float(cur[1] - cur[0] + 1)
            weighted = scaled_sigmoid(-(cur[1] - i + 1) / width) * cost.tp_weight / max_tp
        else:
            if prev_right is None:
                position = 3.0
            else:
                # NAB divides by (width - 1): a one-row window would divide by zero there too.
                position = abs(prev_right - i) / max(prev_width - 1.0, 1.0)
            weighted = scaled_sigmoid(position) * cost.fp_weight
        window = cur_name if i >= probation else "probationary"
        out.append(AnomalyPoint(i, float(scores[i]), weighted, window))
        if cur is not None and i == cur[1]:
            prev_right = i
            prev_width = float(cur[1] - cur[0] + 1)
            cur = None
            cur_name = None
    return out


def scores_by_threshold(points: Sequence[AnomalyPoint], cost: CostMatrix) -> list[ThresholdScore]:
    """Raw score at every distinct threshold, highest threshold first (``Sweeper.calcScoreByThreshold``).

    Detections are rows with ``anomaly_score >= threshold``; in a window only the best sweep score counts
    (the earliest detection, since the sigmoid decreases through the window).
    """
    scorable = sorted(
        (p for p in points if p.window != "probationary"), key=lambda p: p.anomaly_score, reverse=True
    )
    parts: dict[str, float] = {"fp": 0.0}
    for p in scorable:
        if p.window is not None:
            parts[p.window] = -cost.fn_weight
    tn = sum(1 for p in scorable if p.window is None)
    fn = len(scorable) - tn
    tp = fp = 0
    out: list[ThresholdScore] = []
    threshold = 1.1  # above every score in [0, 1]: nothing detected
    for p in scorable:
        if p.anomaly_score != threshold:
            out.append(ThresholdScore(threshold, sum(parts.values()), tp, tn, fp, fn))
            threshold = p.anomaly_score
        if p.window is None:
            fp += 1
            tn -= 1
            parts["fp"] += p.sweep_score
        else:
            tp += 1
            fn -= 1
            parts[p.window] = max(parts[p.window], p.sweep_score)
    out.append(ThresholdScore(threshold, sum(parts.values()), tp, tn, fp, fn))
    return out


def score_at_threshold(by_threshold: Sequence[ThresholdScore], threshold: float) -> ThresholdScore:
    """The row for detections ``>= threshold`` (``Sweeper.scoreDataSet``).

    NAB returns nothing when the threshold is below every score; here that case is the last row (everything
    detected), which is what a threshold that low means.
    """
    prev = None
    for row in by_threshold:
        if row.threshold == threshold:
            return row
        if row.threshold < threshold:
            return prev if prev is not None else row
        prev = row
    return by_threshold[-1]


def optimize_threshold(points: Sequence[AnomalyPoint], cost: CostMatrix) -> ThresholdScore:
    """Best threshold on the whole corpus (all files' sweep points together), as NAB's optimizer does."""
    rows = scores_by_threshold(points, cost)
    # max() keeps the first maximum: ties resolve to the highest threshold, like NAB's stable sort.
    return max(rows, key=lambda r: r.score)


def normalized_score(raw: float, null: float, perfect: float) -> float:
    """``100 * (raw - null) / (perfect - null)``: the null detector scores 0, a perfect one 100."""
    if perfect == null:
        return 0.0
    return 100.0 * (raw - null) / (perfect - null)


@dataclass(frozen=True, slots=True)
class FileData:
    """One NAB data file: its corpus-relative name, values, timestamps and label windows (row indices)."""

    name: str
    timestamps: np.ndarray
    values: np.ndarray
    windows: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class FileResult:
    name: str
    score: float
    counts: ThresholdScore
    windows: int
    windows_detected: int
    detections: int
    detections_in_windows: int


@dataclass(frozen=True, slots=True)
class ProfileResult:
    """Corpus result of one profile at one threshold."""

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    normalized: float
    files: tuple[FileResult, ...]


def score_corpus(
    files: Sequence[FileData],
    scores: Mapping[str, np.ndarray],
    cost: CostMatrix,
    profile: str,
    *,
    threshold: float | None = None,
    probation_percent: float = PROBATION_PERCENT,
) -> ProfileResult:
    """Score a corpus for one profile; ``threshold=None`` optimises it on the corpus (NAB's procedure)."""
    swept = {f.name: sweep(scores[f.name], f.windows, f.name, cost, probation_percent) for f in files}
    if threshold is None:
        threshold = optimize_threshold([p for pts in swept.values() for p in pts], cost).threshold
    null_points = [
        p for f in files for p in sweep(np.zeros(len(f.values)), f.windows, f.name, cost, probation_percent)
    ]
    null = optimize_threshold(null_points, cost).score
    n_windows = sum(len(f.windows) for f in files)
    perfect = n_windows * cost.tp_weight
    results = []
    for f in files:
        pts = swept[f.name]
        row = score_at_threshold(scores_by_threshold(pts, cost), threshold)
        flagged = [p for p in pts if p.window != "probationary" and p.anomaly_score >= threshold]
        hit = {p.window for p in flagged if p.window is not None}
        scored_windows = {p.window for p in pts if p.window not in (None, "probationary")}
        results.append(
            FileResult(
                name=f.name,
                score=row.score,
                counts=row,
                windows=len(scored_windows),
                windows_detected=len(hit),
                detections=len(flagged),
                detections_in_windows=sum(1 for p in flagged if p.window is not None),
            )
        )
    raw = sum(r.score for r in results)
    return ProfileResult(
        profile, threshold, raw, null, perfect, normalized_score(raw, null, perfect), tuple(results)
    )


def rolling_scores(
    timestamps: np.ndarray,
    values: np.ndarray,
    *,
    refit_every: int = 0,
    max_train: int = 3000,
    seed: int = 0,
    n_estimators: int = 200,
    probation_percent: float = PROBATION_PERCENT,
) -> np.ndarray:
    """Causal anomaly scores in [0, 1] for one univariate series using the project's detector.

    Features at row ``t`` use rows ``<= t`` only (see :func:`openai_monitor.ml.features.stream_features`).
    An :class:`~openai_monitor.ml.anomaly.AnomalyDetector` is first fitted at the end of the probation
    period and refitted every ``refit_every`` rows on at most ``max_train`` past rows; the rows of each block
    are scored by the model fitted before the block, so no score ever depends on the future. The raw forest
    score is calibrated into the fraction of past scores it exceeds, and repeated alarms within a short
    span are damped (a sustained anomaly is one event, as NAB counts only a window's first detection).
    """
    from .anomaly import AnomalyDetector
    from .features import stream_features

    n = len(values)
    feats = stream_features(timestamps, values)
    x = feats.to_numpy(dtype=float)
    start = max(int(probation_length(n, probation_percent)), 1)
    step = refit_every or max(start // 2, 50)
    raw = np.zeros(n)
    for block_start in range(start, n, step):
        lo = max(0, block_start - max_train)
        det = AnomalyDetector(seed=seed, n_estimators=n_estimators).fit(x[lo:block_start])
        block = slice(block_start, min(block_start + step, n))
        raw[block] = det.score(x[block])
    return _calibrate(raw, start)


def _calibrate(raw: np.ndarray, start: int, history: int = 5000) -> np.ndarray:
    """Turn raw forest scores into a causal tail probability, then damp repeats.

    The calibrated score of row ``t`` is the fraction of the previous ``history`` raw scores (after the
    probation start) strictly below it. A row whose score does not exceed the best of the previous
    ``start // 2`` rows is halved (a refractory period of half the probation length NAB hands every
    detector), so one sustained event yields one alarm rather than a string of false positives.
    """
    n = len(raw)
    out = np.zeros(n)
    refractory = max(start // 2, 10)
    for t in range(start + 1, n):
        past = raw[max(start, t - history) : t]
        out[t] = float(np.mean(past < raw[t]))
    damped = out.copy()
    for t in range(start + 1, n):
        lo = max(start, t - refractory)
        if out[lo:t].max() >= out[t]:
            damped[t] = out[t] * 0.5
    return damped
