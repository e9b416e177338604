"""IsolationForest anomaly detection on hourly usage features, with explanations and attribution.

Pure: numpy, pandas and scikit-learn (skops for serialization); no I/O beyond bytes, no clock.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import ModelError
from .features import hourly_frame, how_baseline

FORMAT_VERSION = 2
SEVERITIES = ("low", "medium", "high", "critical")
# Dollar impact (actual minus expected cost of a window) from which a finding is medium / high / critical.
# A product default, not a price: callers pass their own through ``severity_usd``.
DEFAULT_SEVERITY_USD = (5.0, 50.0, 500.0)
# skops loads only types it trusts; an IsolationForest needs sklearn's compiled tree on top of the defaults.
_TRUSTED_TYPES = ("sklearn.tree._tree.Tree",)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class AnomalyDetector:
    """Seeded IsolationForest over feature vectors; ``score`` is higher for more anomalous rows.

    ``threshold`` (a score in (0, 1)) decides which rows are anomalous; when ``None`` it is the
    ``1 - contamination`` quantile of the training scores, or sklearn's 0.5 for ``contamination="auto"``.
    """

    def __init__(
        self,
        contamination: float | str = 0.05,
        threshold: float | None = None,
        seed: int = 0,
        n_estimators: int = 100,
        max_samples: int | str = "auto",
    ) -> None:
        if contamination != "auto" and not (
            isinstance(contamination, (int, float)) and 0.0 < float(contamination) <= 0.5
        ):
            raise ValueError(f"contamination must be 'auto' or in (0, 0.5], got {contamination!r}")
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be a score in (0, 1), got {threshold!r}")
        if n_estimators < 1:
            raise ValueError(f"n_estimators must be >= 1, got {n_estimators!r}")
        self.contamination = contamination
        self.threshold = threshold
        self.seed = seed
        self.n_estimators = n_estimators
        self.max_samples = max_samples

    def fit(
        self, features: pd.DataFrame | np.ndarray, exclude: Sequence[bool] | np.ndarray | None = None
    ) -> AnomalyDetector:
        """Fit on feature rows; rows where ``exclude`` is True (acknowledged "expected" hours) are left out."""
        from sklearn.ensemble import IsolationForest

        x, names = _matrix(features)
        if exclude is not None:
            mask = np.asarray(exclude, bool)
            if mask.shape != (len(x),):
                raise ValueError(f"exclude has {mask.shape[0]} entries for {len(x)} feature rows")
            x = x[~mask]
        if len(x) < 2:
            raise ModelError(
                "not enough hours to train an anomaly detector (need at least 2); collect more usage first"
            )
        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            contamination="auto",
            random_state=self.seed,
        ).fit(x)
        train = -forest.score_samples(x)
        self.forest_ = forest
        self.feature_names_ = names
        self.n_train_ = len(x)
        self.train_quantiles_ = np.quantile(train, np.linspace(0, 1, 101))
        if self.threshold is not None:
            self.threshold_ = float(self.threshold)
        elif self.contamination == "auto":
            self.threshold_ = 0.5
        else:
            self.threshold_ = float(np.quantile(train, 1.0 - float(self.contamination)))
        return self

    def score(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Anomaly score per row in (0, 1): IsolationForest's ``2 ** (-mean path length / c(n))``."""
        self._check_fitted()
        x, names = _matrix(features)
        if names is not None and self.feature_names_ is not None and list(names) != list(self.feature_names_):
            raise ValueError(
                f"feature columns {list(names)} differ from the trained ones {list(self.feature_names_)}"
            )
        if x.shape[1] != self.forest_.n_features_in_:
            raise ValueError(f"expected {self.forest_.n_features_in_} features, got {x.shape[1]}")
        return -self.forest_.score_samples(x)

    def is_anomalous(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        return self.score(features) >= self.threshold_

    def _check_fitted(self) -> None:
        if not hasattr(self, "forest_"):
            raise ModelError("this AnomalyDetector is not fitted yet; call fit(features) first")


def _matrix(features: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, tuple[str, ...] | None]:
    if isinstance(features, pd.DataFrame):
        x = features.to_numpy(dtype=float)
        names: tuple[str, ...] | None = tuple(str(c) for c in features.columns)
    else:
        x = np.asarray(features, dtype=float)
        names = None
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (rows x features), got shape {x.shape}")
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), names


@dataclass(frozen=True, slots=True)
class Finding:
    """One anomalous window of one scope. Times are UTC Unix seconds; ``window_end`` is exclusive."""

    scope: str
    window_start: int
    window_end: int
    severity: str
    score: float
    impact_usd: float
    explanation: str
    evidence: dict = field(default_factory=dict)
    kind: str = "unusual"


# Per-hour metrics shown as evidence: (column of hourly_frame, label used in explanations).
_EVIDENCE = (
    ("requests", "requests"),
    ("tokens", "tokens"),
    ("cost_usd", "cost"),
    ("tokens_per_request", "tokens per request"),
    ("cost_per_mtok", "cost per token"),
    ("output_input_ratio", "output/input ratio"),
    ("cache_hit_share", "cache-hit share"),
    ("dominant_model_share", "share of the usual model"),
)
_SUMS = {"requests", "tokens", "cost_usd"}


def detect(
    detector: AnomalyDetector,
    features: pd.DataFrame,
    rows: pd.DataFrame,
    *,
    scope: str,
    now: int,
    tz: str = "UTC",
    expected: pd.Series | None = None,
    since: int | None = None,
    min_severity: str = "low",
    exclude: Sequence[bool] | np.ndarray | None = None,
    severity_usd: tuple[float, float, float] = DEFAULT_SEVERITY_USD,
) -> list[Finding]:
    """Findings for one scope: anomalous complete hours, consecutive ones merged into one window.

    An hour is anomalous when its forest score reaches the detector threshold and at least one volume or
    shape metric is clearly off its usual hour-of-week level (more than 3 robust deviations); the second
    condition keeps the rare-but-normal hours every forest ranks high (the weekly peak) out of alerts.
    A window also takes the hours around it that are as far off their usual level and score in the top
    tenth of the training hours: one incident, one finding, with its whole dollar impact.
    The hour containing ``now`` is partial and never flagged. ``expected`` (forecast ``yhat`` of cost,
    indexed by ``bucket_ts``) replaces the hour-of-week median for the dollar impact.
    """
    if min_severity not in SEVERITIES:
        raise ValueError(f"min_severity must be one of {SEVERITIES}, got {min_severity!r}")
    frame = hourly_frame(rows, tz).reindex(features.index)
    how = frame["hour_of_week"].to_numpy()
    use = None if exclude is None else ~np.asarray(exclude, bool)
    scores = detector.score(features)
    usual: dict[str, np.ndarray] = {}
    zmax = np.zeros(len(frame))
    active = frame["tokens"].to_numpy() > 0
    req = frame["requests"].to_numpy(float)
    req_usual, _ = how_baseline(pd.Series(np.log1p(req)), how, use)
    # Counting noise: log1p of a Poisson count with mean m wobbles by about 1 / sqrt(m + 1), so a quiet
    # hour going from 0 to 2 requests is not "many deviations" off; ratios of a few requests are noisy too.
    volume_floor = 1.0 / np.sqrt(np.expm1(req_usual) + 1.0)
    ratio_floor = 1.0 / np.sqrt(req + 1.0)
    for col, _ in _EVIDENCE:
        vals = frame[col].to_numpy(float)
        share = col in ("cache_hit_share", "dominant_model_share")
        logv = vals if share else np.log1p(vals)
        med, scale = how_baseline(pd.Series(logv), how, use)
        usual[col] = med if share else np.expm1(med)
        # Only rises count (spend risk), plus the usual model losing its share in an hour with usage.
        if col == "requests":
            zmax = np.maximum(zmax, np.where(active, (logv - med) / np.maximum(scale, volume_floor), 0.0))
        elif col in ("tokens", "cost_usd", "tokens_per_request", "cost_per_mtok"):
            # Against a usual of zero only the request count says how unusual the hour is.
            z = (logv - med) / np.maximum(scale, ratio_floor)
            zmax = np.maximum(zmax, np.where(active & (med > 0), z, 0.0))
        elif col == "dominant_model_share":
            z = (med - logv) / np.maximum(scale, ratio_floor)
            zmax = np.maximum(zmax, np.where(active, z, 0.0))
    if expected is not None:
        exp_cost = pd.Series(expected).reindex(features.index).astype(float)
        usual_cost = np.where(
            exp_cost.notna(), np.clip(exp_cost.fillna(0).to_numpy(), 0, None), usual["cost_usd"]
        )
    else:
        usual_cost = usual["cost_usd"]
    ts = features.index.to_numpy(dtype="int64")
    candidate = (zmax > 3.0) & (ts + 3600 <= now)
    if since is not None:
        candidate &= ts >= since
    if exclude is not None:
        candidate &= ~np.asarray(exclude, bool)
    flagged = _incidents(
        candidate & (scores >= detector.threshold_), candidate & (scores >= _lower(detector))
    )
    findings = []
    for lo, hi in _runs(flagged):
        sl = slice(lo, hi + 1)
        impact = float(frame["cost_usd"].to_numpy()[sl].sum() - usual_cost[sl].sum())
        evidence = _evidence(frame, usual, sl)
        kind, text = _explain(evidence, frame, usual, sl, tz, int(ts[lo]))
        severity = _severity(impact, float(usual_cost[sl].sum()), severity_usd)
        if SEVERITIES.index(severity) < SEVERITIES.index(min_severity):
            continue
        findings.append(
            Finding(
                scope=scope,
                window_start=int(ts[lo]),
                window_end=int(ts[hi]) + 3600,
                severity=severity,
                score=float(scores[sl].max()),
                impact_usd=round(impact, 6),
                explanation=text,
                evidence=evidence,
                kind=kind,
            )
        )
    return findings


# A flagged hour's neighbours join its window when they score in this top share of the training hours
# (and are as far off their usual level as a flagged hour must be).
INCIDENT_TOP_SHARE = 0.10


def _lower(detector: AnomalyDetector) -> float:
    """The score from which an hour next to a flagged one belongs to the same incident: the detector's
    training-score quantile at ``1 - INCIDENT_TOP_SHARE``, never above its own threshold."""
    return min(float(np.quantile(detector.train_quantiles_, 1.0 - INCIDENT_TOP_SHARE)), detector.threshold_)


def _incidents(flagged: np.ndarray, joinable: np.ndarray) -> np.ndarray:
    """FLAGGED grown into the runs of JOINABLE hours around it: a long incident (a burst of ten hours
    in a history that holds it, where the contamination quantile admits only its strongest hours) is
    reported whole; a joinable run with no flagged hour stays out."""
    out = flagged.copy()
    for lo, hi in _runs(joinable | flagged):
        if flagged[lo : hi + 1].any():
            out[lo : hi + 1] = True
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(mask) - 1))
    return runs


def _evidence(frame: pd.DataFrame, usual: Mapping[str, np.ndarray], sl: slice) -> dict:
    """Per metric: observed and usual per hour over the window (means), and their ratio."""
    out = {}
    for col, label in _EVIDENCE:
        obs = float(frame[col].to_numpy()[sl].mean())
        usu = float(usual[col][sl].mean())
        ratio = obs / usu if usu > 0 else (float("inf") if obs > 0 else 1.0)
        out[label] = {"observed": round(obs, 6), "usual": round(usu, 6), "ratio": ratio}
    return out


def _fmt_ratio(r: float) -> str:
    if r == float("inf"):
        return "new (usually none)"
    if r >= 1.95:
        return f"{r:.0f}x the usual" if r >= 10 else f"{r:.1f}x the usual"
    if r <= 0.5:
        return f"{r:.2f}x the usual"
    return "normal"


def _explain(
    evidence: dict, frame: pd.DataFrame, usual: Mapping[str, np.ndarray], sl: slice, tz: str, start: int
) -> tuple[str, str]:
    local = pd.Timestamp(start, unit="s", tz="UTC").tz_convert(tz)
    when = f"{DAYS[local.dayofweek]} {local.hour:02d}:00"
    r = {label: evidence[label]["ratio"] for _, label in _EVIDENCE}
    shape_normal = 0.67 <= r["tokens per request"] <= 1.5
    volume_up = r["requests"] >= 3 or r["tokens"] >= 3
    share = evidence["share of the usual model"]
    cpt = r["cost per token"]
    model_changed = (
        evidence["tokens"]["observed"] > 0
        and evidence["cost per token"]["usual"] > 0
        and (cpt >= 2 or cpt <= 0.5 or share["observed"] <= share["usual"] - 0.3)
    )
    # A volume surge also shifts the model mix; call it a model switch only when price moved more.
    if model_changed and volume_up and np.isfinite(r["requests"]):
        model_changed = abs(np.log(max(cpt, 1e-9))) > abs(np.log(max(r["requests"], 1e-9)))
    bloat = r["tokens per request"] >= 2 and evidence["tokens per request"]["usual"] > 0
    # Off-hours: this scope usually makes under a tenth of its busy-hour requests at these hours.
    busy = float(np.quantile(usual["requests"], 0.9))
    off_hours = float(usual["requests"][sl].mean()) <= 0.1 * busy
    parts = []
    if model_changed:
        kind, verdict = (
            "model_switch",
            "looks like a switch to a pricier model"
            if r["cost per token"] >= 1
            else "looks like a switch to a cheaper model",
        )
        parts.append(f"cost per token {_fmt_ratio(r['cost per token'])} for {when}")
        parts.append(f"share of the usual model {share['observed']:.0%} (usually {share['usual']:.0%})")
    elif bloat:
        kind, verdict = "prompt_bloat", "looks like long contexts or prompt bloat"
        parts.append(f"tokens per request {_fmt_ratio(r['tokens per request'])} for {when}")
    elif volume_up and off_hours:
        kind, verdict = "leaked_key", "looks like a leaked key or a job running off-hours"
        parts.append(f"requests {_fmt_ratio(r['requests'])} for {when} (normally quiet)")
    elif volume_up:
        kind, verdict = "loop", "looks like a runaway loop"
        parts.append(f"requests {_fmt_ratio(r['requests'])} for {when}")
    else:
        kind, verdict = "unusual", "unusual for this hour of the week"
        top = max(
            (lbl for lbl in r if r[lbl] > 0),
            key=lambda lbl: abs(np.log(r[lbl])) if np.isfinite(r[lbl]) else 1e9,
        )
        parts.append(f"{top} {_fmt_ratio(r[top])} for {when}")
    if volume_up and kind != "loop" and kind != "leaked_key":
        parts.append(f"requests {_fmt_ratio(r['requests'])}")
    if kind in ("loop", "leaked_key"):
        parts.append(
            f"tokens per request {'normal' if shape_normal else _fmt_ratio(r['tokens per request'])}"
        )
    return kind, "; ".join(parts) + f": {verdict}"


def _severity(impact: float, usual: float, severity_usd: tuple[float, float, float]) -> str:
    level = sum(1 for limit in severity_usd if impact >= limit)
    # Spend at ten times its usual level is worse than the dollar amount alone says.
    if impact > 0 and impact >= 9 * max(usual, 1e-9) and level < 3:
        level += 1
    return SEVERITIES[level]


def attribute(
    finding: Finding, breakdown: pd.DataFrame, *, tz: str = "UTC", expected_by_key: Mapping | None = None
) -> list[dict]:
    """Rank the users / models / keys behind an account-level finding by dollar impact vs their own usual.

    ``breakdown``: hourly rows with ``dim`` (e.g. "user", "model", "key"), ``key``, ``bucket_ts`` and
    ``cost_usd``. A key's expected cost per hour is its own hour-of-week median over the hours outside the
    window. Returns dicts ``{dim, key, actual_usd, expected_usd, impact_usd, share}`` (share of the
    finding's impact), highest impact first.
    """
    missing = [c for c in ("dim", "key", "bucket_ts", "cost_usd") if c not in breakdown.columns]
    if missing:
        raise ValueError(f"breakdown lacks columns {missing}")
    df = breakdown.assign(bucket_ts=(breakdown["bucket_ts"].astype("int64") // 3600) * 3600)
    lo, hi = int(df["bucket_ts"].min()), int(df["bucket_ts"].max())
    index = np.arange(lo, hi + 1, 3600, dtype="int64")
    from .features import hour_of_week

    how = hour_of_week(index, tz)
    in_window = (index >= finding.window_start) & (index < finding.window_end)
    pivot = (
        df.pivot_table(index="bucket_ts", columns=["dim", "key"], values="cost_usd", aggfunc="sum")
        .reindex(index, fill_value=0)
        .fillna(0.0)
    )
    out = []
    for (dim, key), col in pivot.items():
        vals = col.to_numpy(float)
        usual, _ = how_baseline(pd.Series(vals), how, ~in_window)
        actual = float(vals[in_window].sum())
        exp = float(usual[in_window].sum())
        out.append(
            {
                "dim": str(dim),
                "key": str(key),
                "actual_usd": actual,
                "expected_usd": exp,
                "impact_usd": actual - exp,
            }
        )
    total = finding.impact_usd if finding.impact_usd > 0 else sum(max(o["impact_usd"], 0) for o in out)
    for o in out:
        o["share"] = o["impact_usd"] / total if total > 0 else 0.0
    out.sort(key=lambda o: o["impact_usd"], reverse=True)
    return out


def _versions() -> dict[str, str]:
    import sklearn
    import skops

    return {
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "skops": skops.__version__,
    }


def dump_detector(det: AnomalyDetector) -> bytes:
    """Serialize a fitted detector: a zip of ``detector.json`` (format version, params, fitted state,
    library versions) and ``forest.skops`` (the IsolationForest in skops format, no pickle)."""
    import skops.io as sio

    det._check_fitted()
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": "openai_monitor.AnomalyDetector",
        "params": {
            "contamination": det.contamination,
            "threshold": det.threshold,
            "seed": det.seed,
            "n_estimators": det.n_estimators,
            "max_samples": det.max_samples,
        },
        "fitted": {
            "threshold_": det.threshold_,
            "feature_names_": list(det.feature_names_) if det.feature_names_ is not None else None,
            "n_train_": det.n_train_,
            "train_quantiles_": [float(q) for q in det.train_quantiles_],
        },
        "libraries": _versions(),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("detector.json", json.dumps(meta, indent=1, sort_keys=True))
        zf.writestr("forest.skops", sio.dumps(det.forest_))
    return buf.getvalue()


def load_detector(data: bytes) -> AnomalyDetector:
    """Load bytes from :func:`dump_detector`, or from format version 1 (``meta.json`` + ``model.skops``)."""
    import skops.io as sio

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ModelError(
            "anomaly model file is not a detector artefact; retrain with 'oaim train --force'"
        ) from exc
    with zf:
        names = set(zf.namelist())
        if "detector.json" in names:
            meta = json.loads(zf.read("detector.json"))
            forest_bytes = zf.read("forest.skops")
        elif "meta.json" in names:
            meta = _upgrade_v1(json.loads(zf.read("meta.json")))
            forest_bytes = zf.read("model.skops")
        else:
            raise ModelError("anomaly model artefact has no metadata; retrain with 'oaim train --force'")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(
            f"anomaly model format {version} is not supported (this version reads 1-{FORMAT_VERSION}); retrain with 'oaim train --force'"
        )
    untrusted = [t for t in sio.get_untrusted_types(data=forest_bytes) if t not in _TRUSTED_TYPES]
    if untrusted:
        raise ModelError(
            f"anomaly model artefact contains unexpected types {untrusted}; retrain with 'oaim train --force'"
        )
    forest = sio.loads(forest_bytes, trusted=list(_TRUSTED_TYPES))
    p, f = meta["params"], meta["fitted"]
    det = AnomalyDetector(
        contamination=p["contamination"],
        threshold=p["threshold"],
        seed=p["seed"],
        n_estimators=p["n_estimators"],
        max_samples=p["max_samples"],
    )
    det.forest_ = forest
    det.threshold_ = float(f["threshold_"])
    det.feature_names_ = tuple(f["feature_names_"]) if f["feature_names_"] is not None else None
    det.n_train_ = int(f["n_train_"])
    det.train_quantiles_ = np.asarray(f["train_quantiles_"], dtype=float)
    det.libraries_ = meta.get("libraries", {})
    return det


def _upgrade_v1(meta: dict) -> dict:
    """Format 1 (first release) stored only the feature list, threshold, contamination and seed."""
    return {
        "format_version": FORMAT_VERSION,
        "params": {
            "contamination": meta.get("contamination", 0.01),
            "threshold": None,
            "seed": meta.get("seed", 0),
            "n_estimators": meta.get("n_estimators", 100),
            "max_samples": "auto",
        },
        "fitted": {
            "threshold_": meta["threshold"],
            "feature_names_": meta.get("features"),
            "n_train_": meta.get("n_train", 0),
            # v1 kept no training score distribution; a flat placeholder keeps percentiles defined.
            "train_quantiles_": [meta["threshold"]] * 101,
        },
        "libraries": {"scikit-learn": meta.get("sklearn_version", "unknown")},
    }
