"""NAB scoring rules checked against hand-computed tiny examples (numenta/NAB nab/sweeper.py semantics)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from openai_monitor.ml import nab

STANDARD = nab.CostMatrix(tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)


def S(x: float) -> float:
    """The scaled sigmoid written out: 2 * sigmoid(-5x) - 1."""
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def test_scaled_sigmoid_landmarks():
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert nab.scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert nab.scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert nab.scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert nab.scaled_sigmoid(3.0) == -1.0
    assert nab.scaled_sigmoid(7.5) == -1.0


def test_probation_length_is_15_percent_capped_at_750_rows():
    assert nab.probation_length(20) == 3
    assert nab.probation_length(4032) == 604
    assert nab.probation_length(22695) == 750


def _file_score(scores, windows, threshold, cost=STANDARD):
    pts = nab.sweep(scores, windows, "f", cost)
    return nab.score_at_threshold(nab.scores_by_threshold(pts, cost), threshold)


# A 20-row file: probation = rows 0-2, one window over rows 10-14 (width 5).
N, WIN = 20, [(10, 14)]


def test_detection_at_window_start_earns_full_tp_weight():
    s = np.zeros(N)
    s[10] = 1.0
    row = _file_score(s, WIN, 1.0)
    assert row.score == pytest.approx(1.0)
    assert (row.tp, row.fp, row.fn) == (1, 0, 4)


def test_later_detection_in_window_earns_less_and_only_the_first_counts():
    s = np.zeros(N)
    s[12] = 1.0
    expected = S(-(14 - 12 + 1) / 5) / S(-1.0)  # position -0.6, scaled so a window start earns 1
    assert _file_score(s, WIN, 1.0).score == pytest.approx(expected)
    s[13] = 1.0  # a second detection in the same window adds nothing
    assert _file_score(s, WIN, 1.0).score == pytest.approx(expected)


def test_missed_window_costs_fn_weight_and_probation_is_ignored():
    s = np.zeros(N)
    s[1] = 1.0  # inside probation: neither FP nor TP
    row = _file_score(s, WIN, 1.0)
    assert row.score == pytest.approx(-1.0)
    assert row.fp == 0


def test_false_positives_before_and_after_the_window():
    s = np.zeros(N)
    s[5] = 1.0  # before any window: -fpWeight
    s[16] = 1.0  # 2 rows after the right edge, relative distance 2 / (5 - 1)
    expected = -1.0 + (-0.11) + 0.11 * S(2 / 4)
    row = _file_score(s, WIN, 1.0)
    assert row.score == pytest.approx(expected)
    assert (row.tp, row.fp) == (0, 2)


def test_every_row_detected_sums_all_false_positives_and_best_tp():
    s = np.ones(N)
    before = 7 * -0.11  # rows 3..9
    after = sum(0.11 * S(d / 4) for d in range(1, 6))  # rows 15..19
    row = _file_score(s, WIN, 0.5)
    assert row.score == pytest.approx(1.0 + before + after)
    assert (row.tp, row.fp, row.fn, row.tn) == (5, 12, 0, 0)


def test_threshold_sweep_is_highest_first_and_inclusive():
    s = np.zeros(N)
    s[11], s[6] = 0.9, 0.7
    rows = nab.scores_by_threshold(nab.sweep(s, WIN, "f", STANDARD), STANDARD)
    assert [r.threshold for r in rows] == [1.1, 0.9, 0.7, 0.0]
    tp11 = S(-(14 - 11 + 1) / 5) / S(-1.0)
    assert rows[0].score == pytest.approx(-1.0)
    assert rows[1].score == pytest.approx(tp11)
    assert rows[2].score == pytest.approx(tp11 - 0.11)
    # A threshold between two scores detects the rows at or above it.
    assert nab.score_at_threshold(rows, 0.8).threshold == 0.9


def test_corpus_optimizer_picks_threshold_over_all_files():
    # File a: the window start scores 0.8, noise 0.9 before it. File b: a false alarm at 0.85.
    a = np.zeros(N)
    a[10], a[5] = 0.8, 0.9
    b = np.zeros(N)
    b[4] = 0.85
    pts = nab.sweep(a, WIN, "a", STANDARD) + nab.sweep(b, [], "b", STANDARD)
    best = nab.optimize_threshold(pts, STANDARD)
    # Thresholds: 1.1 -> -1; 0.9 -> -1.11; 0.85 -> -1.22; 0.8 -> 1 - 0.22 = 0.78; 0 -> worse.
    assert best.threshold == 0.8
    assert best.score == pytest.approx(0.78)


def test_normalisation_against_null_and_perfect():
    assert nab.normalized_score(-2.0, null=-2.0, perfect=2.0) == 0.0
    assert nab.normalized_score(2.0, null=-2.0, perfect=2.0) == 100.0
    assert nab.normalized_score(0.0, null=-2.0, perfect=2.0) == 50.0


L = 200  # long enough that flagging every row scores below flagging none


def _files():
    ts = pd.date_range("2024-01-01", periods=L, freq="5min").to_numpy()
    return [
        nab.FileData("a.csv", ts, np.zeros(L), ((100, 114),)),
        nab.FileData("b.csv", ts, np.zeros(L), ((120, 135),)),
    ]


def test_score_corpus_perfect_and_null_detectors():
    files = _files()
    perfect = {"a.csv": np.eye(L)[100], "b.csv": np.eye(L)[120]}
    res = nab.score_corpus(files, perfect, STANDARD, "standard")
    assert res.perfect == 2.0 and res.null == pytest.approx(-2.0)
    assert res.normalized == pytest.approx(100.0)
    null = {"a.csv": np.zeros(L), "b.csv": np.zeros(L)}
    assert nab.score_corpus(files, null, STANDARD, "standard").normalized == pytest.approx(0.0)
    half = {"a.csv": np.eye(L)[100], "b.csv": np.zeros(L)}
    res = nab.score_corpus(files, half, STANDARD, "standard")
    assert res.normalized == pytest.approx(50.0)
    assert [f.windows_detected for f in res.files] == [1, 0]


def test_window_timestamps_map_to_row_indices():
    ts = pd.date_range("2024-01-01", periods=10, freq="h").to_numpy()
    got = nab.window_indices(ts, [["2024-01-01 02:00:00.000000", "2024-01-01 04:00:00.000000"]])
    assert got == [(2, 4)]
    # Limits between rows snap inward.
    assert nab.window_indices(ts, [["2024-01-01 02:30:00", "2024-01-01 05:30:00"]]) == [(3, 5)]


def test_profiles_parse_from_nab_layout():
    profiles = nab.parse_profiles(
        {"standard": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}}}
    )
    assert profiles["standard"] == STANDARD


def test_rolling_scores_never_use_the_future():
    rng = np.random.default_rng(0)
    ts = pd.date_range("2024-01-01", periods=400, freq="5min").to_numpy()
    v = np.sin(np.arange(400) / 20) + rng.normal(0, 0.1, 400)
    full = nab.rolling_scores(ts, v, refit_every=50, n_estimators=20)
    changed = v.copy()
    changed[300:] += 50.0  # a change after row 299 must not alter any score before it
    prefix = nab.rolling_scores(ts, changed, refit_every=50, n_estimators=20)
    np.testing.assert_array_equal(full[:300], prefix[:300])
    assert prefix[300] > 0.99
