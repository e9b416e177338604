"""Rolling-origin backtest: MASE, sMAPE and 80% / 95% interval coverage.

MASE divides the held-out mean absolute error by the in-sample mean absolute error of the seasonal-naive
forecast (lag ``season``) on the training part of each origin (Hyndman & Koehler 2006), so values below
1 beat that naive rule on the same scale. sMAPE is ``200 |y - f| / (|y| + |f|)`` in percent, 0 when both
are 0. Coverage is the share of held-out points inside the interval.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from openai_monitor.errors import ModelError

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class BacktestResult:
    mase: float  # mean over origins with a non-zero scale
    smape: float  # mean over all held-out points
    coverage_80: float
    coverage_95: float
    n_origins: int
    n_points: int
    kinds: list[str] = field(default_factory=list)  # model kind chosen at each origin
    per_origin: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mase": self.mase,
            "smape": self.smape,
            "coverage_80": self.coverage_80,
            "coverage_95": self.coverage_95,
            "n_origins": self.n_origins,
            "n_points": self.n_points,
        }


def seasonal_naive_scale(train: Any, season: int) -> float:
    import numpy as np

    values = np.asarray(train, dtype="float64")
    if len(values) <= season:
        return float("nan")
    return float(np.mean(np.abs(values[season:] - values[:-season])))


def backtest(
    y: pd.Series,
    make_forecaster: Callable[[], Any],
    horizon: int,
    n_origins: int,
    season: int,
    *,
    step: int | None = None,
    fitted: Mapping[int, Any] | None = None,
) -> BacktestResult:
    """Fit on ``y[:t]`` and score ``y[t:t+horizon]`` for the last ``n_origins`` origins, ``step`` apart.

    ``make_forecaster()`` returns a fresh object with ``fit(y) -> self`` and ``predict(h)`` giving
    ``yhat, yhat_lower_80, yhat_upper_80, yhat_lower_95, yhat_upper_95``. ``fitted`` maps an origin
    ``t`` to a model the caller already fitted on exactly ``y[:t]`` with the same settings (model
    selection's holdout fit): it is scored as is instead of being fitted again.
    """
    import numpy as np

    step = step or horizon
    if horizon < 1 or n_origins < 1 or season < 1:
        raise ModelError("horizon, n_origins and season must be positive integers")
    first_origin = len(y) - horizon - (n_origins - 1) * step
    if first_origin < season + 2:
        raise ModelError(
            f"series of {len(y)} periods is too short for {n_origins} origins of horizon {horizon}: "
            "use fewer origins or a shorter horizon"
        )
    abs_err, smape_terms, in80, in95, mases, kinds, per_origin = [], [], [], [], [], [], []
    for k in range(n_origins):
        t = first_origin + k * step
        train, test = y.iloc[:t], y.iloc[t : t + horizon].to_numpy(dtype="float64")
        model = (fitted or {}).get(t)
        if model is None:
            model = make_forecaster().fit(train)
        fc = model.predict(horizon)
        yhat = fc["yhat"].to_numpy()
        err = np.abs(test - yhat)
        denom = np.abs(test) + np.abs(yhat)
        smape = np.where(denom > 0, 200.0 * err / np.where(denom > 0, denom, 1.0), 0.0)
        c80 = (test >= fc["yhat_lower_80"].to_numpy()) & (test <= fc["yhat_upper_80"].to_numpy())
        c95 = (test >= fc["yhat_lower_95"].to_numpy()) & (test <= fc["yhat_upper_95"].to_numpy())
        scale = seasonal_naive_scale(train, season)
        mase = float(err.mean() / scale) if scale > 0 else float("nan")
        if scale > 0:
            mases.append(mase)
        abs_err.append(err)
        smape_terms.append(smape)
        in80.append(c80)
        in95.append(c95)
        kind = getattr(model, "kind", type(model).__name__)
        kinds.append(kind)
        per_origin.append(
            {"origin": str(y.index[t]), "mase": mase, "smape": float(smape.mean()), "kind": kind}
        )
    return BacktestResult(
        mase=float(np.mean(mases)) if mases else float("nan"),
        smape=float(np.concatenate(smape_terms).mean()),
        coverage_80=float(np.concatenate(in80).mean()),
        coverage_95=float(np.concatenate(in95).mean()),
        n_origins=n_origins,
        n_points=int(sum(len(e) for e in abs_err)),
        kinds=kinds,
        per_origin=per_origin,
    )
