"""Cheap checks for read commands (no SQLAlchemy import on SQLite)."""

from __future__ import annotations

from .db import FastReader, is_sqlite


def schema_is_current(url: str) -> bool:
    """True when every migration step is applied (SQLite: checked with stdlib sqlite3 only)."""
    if not is_sqlite(url):
        return False
    from .migrations import step_names

    with FastReader(url) as r:
        if not r.exists or not r.table_exists("_migrations"):
            return False
        done = {row[0] for row in r.query("SELECT name FROM _migrations")}
    return set(step_names()) <= done
