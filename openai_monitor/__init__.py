"""openai-monitor: local-first LLM API spend tracking, forecasting and anomaly detection."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "instrument"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `import openai_monitor` (and every CLI start) does not import the store and SDK hooks.
    if name == "instrument":
        from .instrument import instrument

        # Importing the submodule bound the package attribute to the module; the function must win.
        globals()["instrument"] = instrument
        return instrument
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
