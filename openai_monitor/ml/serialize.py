"""Versioned JSON artefacts for fitted forecasts (layout documented in models/README.md).

Prophet models go through ``prophet.serialize.model_to_json``; the seasonal-naive fallback is stored as
its history and refitted on load (its fit is deterministic and instant). Every artefact records the
format version, library versions and training metadata. Older format versions are upgraded on load by
``_upgrade_*`` shims; ``tests/data/models/`` holds old artefacts that must keep predicting the same values.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from openai_monitor.errors import ModelError

from .forecast import FittedForecast, ProphetForecaster, SeasonalNaiveForecaster

FORMAT_VERSION = 2


def _libraries() -> dict[str, str]:
    import numpy
    import pandas
    import prophet

    from openai_monitor import __version__

    return {
        "openai_monitor": __version__,
        "prophet": prophet.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _history_json(y: Any) -> dict[str, Any]:
    return {"start": y.index[0].isoformat(), "values": [float(v) for v in y.to_numpy()]}


def _history_from_json(data: dict[str, Any], freq: str) -> Any:
    import pandas as pd

    index = pd.date_range(pd.Timestamp(data["start"]), periods=len(data["values"]), freq=freq)
    return pd.Series(data["values"], index=index, dtype="float64")


def dump_forecaster(fc: FittedForecast) -> str:
    """Serialize a fitted forecast, with its label and provenance, to a JSON string."""
    model = fc.forecaster
    if isinstance(model, ProphetForecaster):
        from prophet.serialize import model_to_json

        model._check_fitted()
        state: dict[str, Any] = {"prophet": model_to_json(model.model_), "scale": model.scale_}
    elif isinstance(model, SeasonalNaiveForecaster):
        model._check_fitted()
        state = {}
    else:
        raise ModelError(
            f"cannot serialize a {type(model).__name__}: only Prophet and seasonal naive are stored"
        )
    state["history"] = _history_json(model.history_)
    doc = {
        "format_version": FORMAT_VERSION,
        "kind": fc.kind,
        "libraries": _libraries(),
        "metadata": {
            "trained_at": _iso(fc.trained_at),
            "data_start": _iso(fc.data_start),
            "data_end": _iso(fc.data_end),
            "rows": fc.rows,
            "metrics": fc.metrics,
            "fallback_reason": fc.fallback_reason,
            "freq": fc.freq,
            "tz": fc.tz,
            "metric": fc.metric,
            "interval_calibration": fc.calibration,
        },
        "params": model.get_params(),
        "state": state,
    }
    return json.dumps(doc)


def _upgrade_v1(doc: dict[str, Any]) -> dict[str, Any]:
    """v1 (flat layout, plain ``log1p`` transform, no interval scale) -> v2."""
    freq = doc["freq"]
    history = {"start": doc["start"], "values": doc["history"]}
    if doc["kind"] == "prophet":
        # v1 fitted log1p(y) with no unit scale: the v2 "log" transform with scale 1 is the same model.
        params = {"freq": freq, "transform": "log", "interval_scale": 1.0, "seed": doc.get("seed", 0)}
        state: dict[str, Any] = {"prophet": doc["model"], "scale": 1.0, "history": history}
    else:
        params = {"freq": freq, "season": doc["season"]}
        state = {"history": history}
    n = len(doc["history"])
    import pandas as pd

    end = pd.date_range(pd.Timestamp(doc["start"]), periods=n, freq=freq)[-1]
    return {
        "format_version": 2,
        "kind": doc["kind"],
        "libraries": {},
        "metadata": {
            "trained_at": doc.get("trained_at"),
            "data_start": doc["start"],
            "data_end": end.isoformat(),
            "rows": n,
            "metrics": {},
            "fallback_reason": doc.get("fallback_reason"),
            "freq": freq,
            "tz": None,
            "metric": None,
        },
        "params": params,
        "state": state,
    }


_UPGRADES = {1: _upgrade_v1}


def load_forecaster(text: str) -> FittedForecast:
    """Load an artefact of any supported format version into a ready-to-predict FittedForecast."""
    try:
        doc = json.loads(text)
        version = int(doc["format_version"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelError(
            "not a forecast artefact (no format_version): retrain with `oaim train --force`"
        ) from exc
    if version > FORMAT_VERSION:
        raise ModelError(
            f"artefact format {version} is newer than this version supports ({FORMAT_VERSION}): "
            "upgrade openai-monitor or retrain with `oaim train --force`"
        )
    while version < FORMAT_VERSION:
        if version not in _UPGRADES:
            raise ModelError(
                f"artefact format {version} is no longer supported: retrain with `oaim train --force`"
            )
        doc = _UPGRADES[version](doc)
        version = int(doc["format_version"])
    meta, params, state = doc["metadata"], doc["params"], doc["state"]
    freq = meta["freq"]
    history = _history_from_json(state["history"], freq)
    if doc["kind"] == "prophet":
        from prophet.serialize import model_from_json

        from .forecast import quiet_prophet

        quiet_prophet()
        model: Any = ProphetForecaster(**params)
        model.model_ = model_from_json(state["prophet"])
        model.scale_ = float(state["scale"])
        model.history_ = history
        model.last_ds_ = history.index[-1]
    elif doc["kind"] == "seasonal_naive":
        model = SeasonalNaiveForecaster(**params).fit(history)
    else:
        raise ModelError(f"unknown model kind {doc['kind']!r} in artefact: retrain with `oaim train --force`")
    return FittedForecast(
        forecaster=model,
        kind=doc["kind"],
        freq=freq,
        fallback_reason=meta.get("fallback_reason"),
        trained_at=_from_iso(meta.get("trained_at")),
        data_start=_from_iso(meta.get("data_start")),
        data_end=_from_iso(meta.get("data_end")),
        rows=int(meta.get("rows") or len(history)),
        metrics=dict(meta.get("metrics") or {}),
        tz=meta.get("tz"),
        metric=meta.get("metric"),
        calibration=meta.get("interval_calibration"),
    )


def artefact_info(text: str) -> dict[str, Any]:
    """Format version, kind, libraries and metadata of an artefact, without loading the model."""
    doc = json.loads(text)
    if int(doc.get("format_version", 0)) == 1:
        doc = _upgrade_v1(doc)
    return {k: doc.get(k) for k in ("format_version", "kind", "libraries", "metadata")}
