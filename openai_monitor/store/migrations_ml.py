"""Schema steps of the ml feature area (append-only; see migrations.py).

Import SQLAlchemy inside the step functions, not at module level (read commands import this module)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _ml001_tables(conn: Any) -> None:
    from . import schema as s
    from . import schema_ml as m

    s.metadata.create_all(conn, tables=list(m.ML_TABLES))


STEPS: list[tuple[str, Callable[[Any], None]]] = [
    ("ml001_tables", _ml001_tables),
]
