"""Rolling-origin forecast accuracy of the project's forecaster against seasonal naive, on real series.

Usage: python benchmarks/forecast_accuracy.py --data DIR [--quick] [--jobs 2] [--params JSON]

Reads every CSV under DIR (recursively) in one of two layouts:
* BurstGPT hourly (``day,hour,<series>...``): each other column is a series of counts per hour. BurstGPT
  publishes no calendar date, so day 0 is placed on an arbitrary Monday, 2024-01-01; weekly seasonality is
  then relative to that (unknown) weekday, which is enough for a period-7 pattern.
* NAB (``timestamp,value``, any frequency): averaged to hourly and daily means (gauges and counts alike);
  gaps are carried forward. Series with negative values are skipped (usage is never negative).
Other CSVs are listed as skipped. Each series is evaluated hourly (horizon 24 h, season 24) and daily
(horizon 7 days, season 7), by rolling origin over the last weeks / days.

"project" is what ``fit_forecaster`` would choose at each origin (Prophet, or the labelled fallback);
"snaive" is the seasonal-naive forecaster with its bootstrapped intervals, measured in the same run.
Overall numbers are means over series evaluations (each series/frequency counts once), so a 5,000-point
hourly series does not drown a 42-point daily one. ``mase_ratio`` = overall project MASE / overall
seasonal-naive MASE. The last output line is one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openai_monitor.ml.backtest import backtest  # noqa: E402
from openai_monitor.ml.forecast import AutoForecaster, SeasonalNaiveForecaster  # noqa: E402

BURSTGPT_START = pd.Timestamp("2024-01-01")  # an arbitrary Monday: BurstGPT has no calendar date
SETTINGS = {  # freq: (horizon, season, origins full, origins quick)
    "D": (7, 7, 8, 3),
    "h": (24, 24, 7, 3),
}


def load_series(data: Path) -> tuple[dict[str, pd.Series], list[str]]:
    """Return hourly series by name, and the files skipped with a reason."""
    series: dict[str, pd.Series] = {}
    skipped: list[str] = []
    for path in sorted(data.rglob("*.csv")):
        with path.open(newline="") as fh:
            header = next(csv.reader(fh), [])
        rel = path.relative_to(data) if path != data else path.name
        if header[:2] == ["day", "hour"] and len(header) > 2:
            frame = pd.read_csv(path)
            index = BURSTGPT_START + pd.to_timedelta(frame["day"] * 24 + frame["hour"], unit="h")
            for col in header[2:]:
                s = pd.Series(frame[col].to_numpy(dtype="float64"), index=index).sort_index()
                full = pd.date_range(s.index[0], s.index[-1], freq="h")
                series[f"{rel}:{col}"] = s.groupby(level=0).sum().reindex(full, fill_value=0.0)
        elif header[:2] == ["timestamp", "value"]:
            frame = pd.read_csv(path, parse_dates=["timestamp"])
            s = frame.set_index("timestamp")["value"].astype("float64").sort_index()
            if (s < 0).any():
                skipped.append(f"{rel}: negative values (not a usage-like series)")
                continue
            series[f"{rel}"] = s.resample("h").mean().ffill()
        else:
            skipped.append(f"{rel}: unknown layout (header {','.join(header[:4])})")
    return series, skipped


def to_freq(hourly: pd.Series, freq: str) -> pd.Series:
    if freq == "h":
        return hourly
    # Only whole days: a partial first or last day would look like a dip.
    counts = hourly.resample("D").count()
    daily = hourly.resample("D").sum()
    return daily[counts == 24]


def evaluate(name: str, freq: str, y: pd.Series, quick: bool, params: dict) -> dict:
    horizon, season, n_full, n_quick = SETTINGS[freq]
    n_origins = n_quick if quick else n_full
    n_origins = min(n_origins, max((len(y) - 3 * season - horizon) // horizon + 1, 0))
    if n_origins < 1:
        return {"series": name, "freq": freq, "skipped": f"too short ({len(y)} periods)"}
    started = time.perf_counter()
    project = backtest(
        y,
        lambda: AutoForecaster(freq=freq, prophet_params=params),
        horizon=horizon,
        n_origins=n_origins,
        season=season,
    )
    baseline = backtest(
        y,
        lambda: SeasonalNaiveForecaster(season=season, freq=freq),
        horizon=horizon,
        n_origins=n_origins,
        season=season,
    )
    return {
        "series": name,
        "freq": freq,
        "n": len(y),
        "origins": n_origins,
        "kinds": sorted(set(project.kinds)),
        "project": project.as_dict(),
        "snaive": baseline.as_dict(),
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="directory (or one CSV) to read recursively")
    parser.add_argument("--quick", action="store_true", help="3 origins per series instead of 7-8")
    parser.add_argument("--jobs", type=int, default=2, help="parallel worker processes (joblib)")
    parser.add_argument("--params", default="{}", help="JSON overrides for ProphetForecaster, for tuning")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"error: {args.data} does not exist: pass --data a directory of CSV files", file=sys.stderr)
        return 2
    params = json.loads(args.params)
    started = time.perf_counter()
    data = args.data if args.data.is_dir() else args.data.parent
    series, skipped = load_series(data)
    if not args.data.is_dir():
        series = {k: v for k, v in series.items() if k.split(":")[0] == args.data.name}
    for line in skipped:
        print(f"skipped {line}")
    if not series:
        print(f"error: no CSV in a known layout under {args.data}", file=sys.stderr)
        return 2
    print(f"{len(series)} series from {args.data}; BurstGPT day 0 placed on Monday {BURSTGPT_START.date()}")

    from joblib import Parallel, delayed

    tasks = [(name, freq, to_freq(s, freq)) for name, s in series.items() for freq in ("D", "h")]
    results = Parallel(n_jobs=args.jobs)(delayed(evaluate)(n, f, y, args.quick, params) for n, f, y in tasks)

    header = (
        f"{'series':<48} {'freq':>4} {'n':>5} {'orig':>4}  {'MASE':>6} {'sMAPE':>6} {'c80':>5} {'c95':>5}"
    )
    print(header + f"  | {'snMASE':>6} {'sMAPE':>6} {'c80':>5} {'c95':>5}  kind")
    done = []
    for r in results:
        if "skipped" in r:
            print(f"{r['series']:<48} {r['freq']:>4} skipped: {r['skipped']}")
            continue
        done.append(r)
        p, b = r["project"], r["snaive"]
        print(
            f"{r['series'][-48:]:<48} {r['freq']:>4} {r['n']:>5} {r['origins']:>4}  {p['mase']:6.3f} "
            f"{p['smape']:6.1f} {p['coverage_80']:5.2f} {p['coverage_95']:5.2f}  | {b['mase']:6.3f} "
            f"{b['smape']:6.1f} {b['coverage_80']:5.2f} {b['coverage_95']:5.2f}  {','.join(r['kinds'])}"
        )

    def overall(who: str, key: str) -> float:
        return float(np.nanmean([r[who][key] for r in done]))

    summary = {
        "data": str(args.data),
        "series_evaluated": len(done),
        "mase": overall("project", "mase"),
        "mase_snaive": overall("snaive", "mase"),
        "mase_ratio": overall("project", "mase") / overall("snaive", "mase"),
        "smape": overall("project", "smape"),
        "smape_snaive": overall("snaive", "smape"),
        "coverage_80": overall("project", "coverage_80"),
        "coverage_95": overall("project", "coverage_95"),
        "coverage_80_snaive": overall("snaive", "coverage_80"),
        "coverage_95_snaive": overall("snaive", "coverage_95"),
        "quick": args.quick,
        "params": params,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(
        f"overall: MASE {summary['mase']:.3f} vs seasonal naive {summary['mase_snaive']:.3f} "
        f"(ratio {summary['mase_ratio']:.3f}); coverage 80% {summary['coverage_80']:.3f}, "
        f"95% {summary['coverage_95']:.3f}"
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
