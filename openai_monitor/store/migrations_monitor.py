"""Schema steps of the monitor feature area (append-only; see migrations.py).

Import SQLAlchemy inside the step functions, not at module level (read commands import this module)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _mon001_budgets(conn: Any) -> None:
    from . import schema as s
    from . import schema_monitor as m

    s.metadata.create_all(conn, tables=list(m.MONITOR_TABLES))


STEPS: list[tuple[str, Callable[[Any], None]]] = [
    ("mon001_budgets", _mon001_budgets),
]
