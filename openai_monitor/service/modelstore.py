"""Trained artefacts on disk under ``config.models_dir()``, one directory per series, versioned by format.

Layout (documented in models/README.md, "Model store layout")::

    models/
      forecasts/v<serialize.FORMAT_VERSION>/<slug>/manifest.json   what, when, data hash, libraries
                                                 /model.json       ml.serialize artefact
                                                 /expected.json    in-sample expected values (hourly cost)
      detectors/v<anomaly.FORMAT_VERSION>/<slug>/manifest.json
                                                /detector.zip      ml.anomaly artefact (skops inside)

``<slug>`` is the series id made filesystem-safe plus a short hash (ids contain user names and ``|``).
Loading looks in the current version's directory first, then in older version directories, and lets the
ml loaders upgrade old artefacts (``serialize.load_forecaster`` handles format 1). Files are written
atomically (temp file + rename), so a crash never leaves a half-written model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ModelError

# Kept in step with ml.serialize.FORMAT_VERSION / ml.anomaly.FORMAT_VERSION without importing them (they
# pull in pandas); tests check the two agree.
FORECAST_FORMAT = 2
DETECTOR_FORMAT = 2
MANIFEST = "manifest.json"


def slug(series_id: str) -> str:
    """A filesystem-safe, collision-free directory name for a series id."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", series_id).strip("_")[:80]
    return f"{safe}-{hashlib.sha1(series_id.encode()).hexdigest()[:10]}"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ModelStore:
    """Read and write forecast and detector artefacts with their manifests."""

    def __init__(self, root: Path | None = None) -> None:
        if root is None:
            from ..config import models_dir

            root = models_dir()
        self.root = Path(root)
        # Detectors this instance saved or loaded, keyed by file and its (mtime, size): training saves
        # them and then scores with them, and deserialising a forest costs ~0.2 s. A file changed by
        # anyone else no longer matches its key and is read again.
        self._detectors: dict[Path, tuple[tuple[int, int], Any]] = {}

    # -- paths -------------------------------------------------------------------------------------------
    def forecast_dir(self, series_id: str, version: int = FORECAST_FORMAT) -> Path:
        return self.root / "forecasts" / f"v{version}" / slug(series_id)

    def detector_dir(self, scope: str, version: int = DETECTOR_FORMAT) -> Path:
        return self.root / "detectors" / f"v{version}" / slug(scope)

    def _find(self, kind: str, name: str, current: int) -> tuple[Path, dict[str, Any]] | None:
        """The newest version directory holding a manifest for ``name`` (current version first)."""
        base = self.root / kind
        versions = [current]
        if base.is_dir():
            found = []
            for d in base.iterdir():
                if d.is_dir() and d.name.startswith("v") and d.name[1:].isdigit():
                    found.append(int(d.name[1:]))
            versions += sorted((v for v in found if v < current), reverse=True)
        for v in versions:
            d = base / f"v{v}" / slug(name)
            m = d / MANIFEST
            if m.exists():
                try:
                    return d, json.loads(m.read_text(encoding="utf-8"))
                except ValueError as exc:
                    raise ModelError(
                        f"{m}: damaged manifest ({exc}); retrain with `oaim train --force`"
                    ) from exc
        return None

    # -- forecasts ---------------------------------------------------------------------------------------
    def save_forecast(
        self, series_id: str, artefact_json: str, manifest: dict[str, Any], expected: dict | None = None
    ) -> Path:
        """Write model.json (+ expected.json) then manifest.json, which makes the artefact visible."""
        d = self.forecast_dir(series_id)
        _atomic_write_bytes(d / "model.json", artefact_json.encode())
        if expected is not None:
            _atomic_write_bytes(d / "expected.json", json.dumps(expected).encode())
        else:
            (d / "expected.json").unlink(missing_ok=True)
        doc = {"series_id": series_id, "format_version": FORECAST_FORMAT, "file": "model.json", **manifest}
        _atomic_write_bytes(d / MANIFEST, json.dumps(doc, indent=1, sort_keys=True).encode())
        return d / "model.json"

    def forecast_manifest(self, series_id: str) -> dict[str, Any] | None:
        found = self._find("forecasts", series_id, FORECAST_FORMAT)
        return found[1] if found else None

    def load_forecast(self, series_id: str) -> Any:
        """The FittedForecast of a series (any supported format version), or ModelError naming the fix."""
        found = self._find("forecasts", series_id, FORECAST_FORMAT)
        if found is None:
            raise ModelError(f"no trained forecast for {series_id!r}: run `oaim train`")
        d, manifest = found
        from ..ml.serialize import load_forecaster

        path = d / manifest.get("file", "model.json")
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ModelError(f"cannot read {path}: {exc}; retrain with `oaim train --force`") from exc
        return load_forecaster(text)

    def load_expected(self, series_id: str) -> dict | None:
        """In-sample expected values saved with a forecast: ``{"ts": [...], "yhat": [...]}`` or None."""
        found = self._find("forecasts", series_id, FORECAST_FORMAT)
        if found is None or not (found[0] / "expected.json").exists():
            return None
        return json.loads((found[0] / "expected.json").read_text(encoding="utf-8"))

    # -- detectors ---------------------------------------------------------------------------------------
    def save_detector(self, scope: str, data: bytes, manifest: dict[str, Any], detector: Any = None) -> Path:
        """Write ``data`` (from ``dump_detector``); pass the fitted ``detector`` too so a later
        ``load_detector`` on this instance returns it without deserialising the bytes again."""
        d = self.detector_dir(scope)
        path = d / "detector.zip"
        _atomic_write_bytes(path, data)
        doc = {"scope": scope, "format_version": DETECTOR_FORMAT, "file": "detector.zip", **manifest}
        _atomic_write_bytes(d / MANIFEST, json.dumps(doc, indent=1, sort_keys=True).encode())
        if detector is not None:
            self._detectors[path] = (_stat_key(path), detector)
        else:
            self._detectors.pop(path, None)
        return path

    def detector_manifest(self, scope: str) -> dict[str, Any] | None:
        found = self._find("detectors", scope, DETECTOR_FORMAT)
        return found[1] if found else None

    def load_detector(self, scope: str) -> Any:
        found = self._find("detectors", scope, DETECTOR_FORMAT)
        if found is None:
            raise ModelError(f"no trained anomaly detector for {scope!r}: run `oaim train`")
        d, manifest = found
        from ..ml.anomaly import load_detector

        path = d / manifest.get("file", "detector.zip")
        key = _stat_key(path)
        cached = self._detectors.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        det = load_detector(path.read_bytes())
        self._detectors[path] = (key, det)
        return det

    def detector_scopes(self) -> list[str]:
        """Scopes with a detector of the current format."""
        base = self.root / "detectors" / f"v{DETECTOR_FORMAT}"
        out = []
        if base.is_dir():
            for d in sorted(base.iterdir()):
                m = d / MANIFEST
                if m.exists():
                    out.append(json.loads(m.read_text(encoding="utf-8"))["scope"])
        return out


def _stat_key(path: Path) -> tuple[int, int]:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size)
