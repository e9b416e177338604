"""Source adapters: each turns one kind of usage log into ``UsageRecord``s (see ``base.Adapter``).

The ingest service looks adapters up here by name and drives them; adapters never touch the store.
"""

from __future__ import annotations

from openai_monitor.errors import InputError
from openai_monitor.sources.base import Adapter
from openai_monitor.sources.claude_code import ClaudeCodeAdapter
from openai_monitor.sources.codex import CodexAdapter
from openai_monitor.sources.csv_generic import CsvAdapter
from openai_monitor.sources.gemini import GeminiAdapter

ADAPTERS: dict[str, Adapter] = {
    a.name: a for a in (ClaudeCodeAdapter(), CodexAdapter(), GeminiAdapter(), CsvAdapter())
}


def get_adapter(name: str) -> Adapter:
    """The adapter called ``name``; InputError naming the known ones otherwise."""
    try:
        return ADAPTERS[name]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise InputError(f"unknown source {name!r}; use one of: {known}") from None


__all__ = ["ADAPTERS", "Adapter", "get_adapter"]
