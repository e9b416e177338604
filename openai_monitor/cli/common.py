"""Shared CLI plumbing: the per-invocation state (database URL, settings, store), output helpers.

Heavy modules are imported lazily so read commands start fast."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from ..config import Settings
    from ..store import Store
    from ..store.db import FastReader


@dataclass
class AppState:
    db_url: str | None = None
    _settings: Any = None
    _store: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        from ..config import default_database_url

        return self.db_url or default_database_url()

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from ..config import load_settings

            self._settings = load_settings()
        return self._settings

    @property
    def store(self) -> Store:
        """The full (SQLAlchemy) store, migrated. Use for writes."""
        if self._store is None:
            from ..store import Store

            self._store = Store(self.url)
        return self._store

    def reader(self) -> FastReader:
        """A light read connection; migrates first when the schema is not current (rare)."""
        from ..store.db import FastReader
        from ..store.fast import schema_is_current

        if not schema_is_current(self.url):
            self.store  # noqa: B018  (constructing the store applies pending migrations)
        return FastReader(self.url)


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    if obj is None:
        obj = ctx.find_root().obj = AppState()
    return obj


def print_json(data: Any) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")


def write_csv(rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    import csv

    columns = columns or (list(rows[0].keys()) if rows else [])
    w = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False)


def debug_enabled() -> bool:
    return bool(os.environ.get("OAIM_DEBUG")) or "pytest" in sys.modules
