"""Loading stored Prophet models prints nothing: Prophet's "Importing plotly failed" line is silenced."""

from __future__ import annotations

import subprocess
import sys


def test_loading_models_through_the_ml_package_prints_no_plotly_warning() -> None:
    code = "import openai_monitor.ml.serialize as s; from prophet.serialize import model_from_json"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "plotly" not in (r.stdout + r.stderr).lower()
