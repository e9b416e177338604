"""NAB score of the project's anomaly detector (rolling-fit IsolationForest, never sees the future).

    python benchmarks/nab_score.py --data ../shared/data/nab/data \
        --labels ../shared/data/nab/labels/combined_windows.json [--profile standard]

Prints per file TP/FP/FN (NAB point counts), windows detected, detections inside windows, then per
profile the raw and normalised score at the threshold NAB's optimizer picks on the corpus (the number NAB
reports), plus the score at the detector's own fixed threshold (no tuning on labels) for comparison. The
null detector (always 0) is scored in the same run as the baseline. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openai_monitor.ml.nab import FileData, parse_profiles, rolling_scores, score_corpus, window_indices  # noqa: E402

# A score the detector treats as an alert without looking at labels: the calibrated tail probability.
FIXED_THRESHOLD = 0.999


def _load(data_dir: Path, labels: dict) -> list[FileData]:
    files = []
    for rel in sorted(labels):
        path = data_dir / rel
        if not path.exists():
            continue
        df = pd.read_csv(path)
        ts = pd.to_datetime(df["timestamp"]).to_numpy()
        files.append(FileData(rel, ts, df["value"].to_numpy(float), tuple(window_indices(ts, labels[rel]))))
    return files


def _score_file(f: FileData, seed: int) -> tuple[str, np.ndarray, float]:
    t0 = time.perf_counter()
    s = rolling_scores(f.timestamps, f.values, seed=seed)
    return f.name, s, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--labels", required=True, type=Path)
    ap.add_argument("--profiles", type=Path, default=None, help="NAB profiles.json (default: beside data/)")
    ap.add_argument("--profile", default="standard", help="profile printed in detail (all are scored)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args(argv)

    if not args.data.is_dir():
        print(f"error: --data {args.data} is not a directory of NAB CSVs", file=sys.stderr)
        return 2
    try:
        labels = json.loads(args.labels.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read --labels {args.labels}: {exc}", file=sys.stderr)
        return 2
    profiles_path = args.profiles or args.data.parent / "profiles.json"
    if profiles_path.exists():
        profiles = parse_profiles(json.loads(profiles_path.read_text()))
    else:  # NAB v1.1 config/profiles.json, used when the data directory has none beside it
        profiles = parse_profiles(
            {
                "standard": {"CostMatrix": {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0}},
                "reward_low_FP_rate": {"CostMatrix": {"tpWeight": 1.0, "fpWeight": 0.22, "fnWeight": 1.0}},
                "reward_low_FN_rate": {"CostMatrix": {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 2.0}},
            }
        )
    if args.profile not in profiles:
        print(f"error: --profile {args.profile} not in {sorted(profiles)}", file=sys.stderr)
        return 2

    files = _load(args.data, labels)
    if not files:
        print(f"error: no labelled CSV from {args.labels} found under {args.data}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    from joblib import Parallel, delayed

    # Longest files first so the two workers finish together.
    order = sorted(files, key=lambda f: -len(f.values))
    done = Parallel(n_jobs=args.jobs)(delayed(_score_file)(f, args.seed) for f in order)
    scores = {name: s for name, s, _ in done}
    detect_s = time.perf_counter() - t0
    rows = sum(len(f.values) for f in files)
    print(
        f"detector: rolling-fit IsolationForest, {len(files)} files, {rows} rows, {detect_s:.1f} s ({args.jobs} jobs)"
    )

    results = {}
    for name, cost in profiles.items():
        results[name] = score_corpus(files, scores, cost, name)
        results[name + "_fixed"] = score_corpus(files, scores, cost, name, threshold=FIXED_THRESHOLD)

    main_res = results[args.profile]
    print(f"\nprofile {args.profile}, corpus-optimised threshold {main_res.threshold:.6f}")
    print(f"{'file':58s} {'score':>7s} {'TP':>5s} {'FP':>5s} {'FN':>6s} {'win':>7s} {'det':>5s}")
    for r in main_res.files:
        c = r.counts
        print(
            f"{r.name:58s} {r.score:7.3f} {c.tp:5d} {c.fp:5d} {c.fn:6d} "
            f"{r.windows_detected:3d}/{r.windows:<3d} {r.detections:5d}"
        )
    n_win = sum(r.windows for r in main_res.files)
    n_hit = sum(r.windows_detected for r in main_res.files)
    n_det = sum(r.detections for r in main_res.files)
    n_in = sum(r.detections_in_windows for r in main_res.files)
    recall = n_hit / n_win if n_win else 0.0
    precision = n_in / n_det if n_det else 0.0
    print(
        f"\nwindow recall {n_hit}/{n_win} = {recall:.3f}; detections inside windows {n_in}/{n_det} = {precision:.3f}"
    )
    print("\nprofile                     threshold      raw     null  perfect  normalised")
    for name, r in results.items():
        print(
            f"{name:26s} {r.threshold:10.6f} {r.raw:8.3f} {r.null:8.3f} {r.perfect:8.3f} {r.normalized:11.2f}"
        )
    print(f"ratio vs null detector baseline (normalised, null = 0): {main_res.normalized:.2f}")
    out = {
        "nab_standard": round(results["standard"].normalized, 3) if "standard" in results else None,
        "nab_reward_low_FP_rate": round(results["reward_low_FP_rate"].normalized, 3)
        if "reward_low_FP_rate" in results
        else None,
        "nab_reward_low_FN_rate": round(results["reward_low_FN_rate"].normalized, 3)
        if "reward_low_FN_rate" in results
        else None,
        "nab_standard_fixed_threshold": round(results["standard_fixed"].normalized, 3)
        if "standard_fixed" in results
        else None,
        "threshold_standard": main_res.threshold
        if args.profile == "standard"
        else results["standard"].threshold,
        "window_recall": round(recall, 4),
        "detection_precision": round(precision, 4),
        "files": len(files),
        "windows": n_win,
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
