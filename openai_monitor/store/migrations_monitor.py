"""Schema steps of the monitor feature area (append-only; see migrations.py)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

STEPS: list[tuple[str, Callable[[Connection], None]]] = []
