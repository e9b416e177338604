"""Model prices (dated, with a source) and the cost of a usage record.

``Pricer`` evaluates our offline snapshot (built from genai-prices, see ``snapshot``) plus user
overrides; ``update`` refreshes the snapshot from a URL or file. No genai-prices needed at runtime.
Names are imported lazily so ``import openai_monitor.pricing`` stays cheap for read-only commands.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MAIN_PROVIDERS": "engine",
    "SERVICE_TIERS": "engine",
    "ModelPrice": "engine",
    "Pricer": "engine",
    "infer_provider": "engine",
    "BUNDLED_SNAPSHOT": "update",
    "USER_SNAPSHOT_NAME": "update",
    "fetch_prices": "update",
    "load_snapshot": "update",
    "save_snapshot": "update",
    "build_snapshot": "snapshot",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
