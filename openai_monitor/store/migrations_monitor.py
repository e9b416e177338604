"""Schema steps of the monitor feature area (append-only; see migrations.py).

Import SQLAlchemy inside the step functions, not at module level (read commands import this module)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

STEPS: list[tuple[str, Callable[[Any], None]]] = []
