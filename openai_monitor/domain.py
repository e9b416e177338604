"""Plain data shared by every layer. No I/O here.

Token semantics stored (normalised across providers, see docs in README "Token semantics"):

* ``input_tokens``: ALL input tokens of the call, including cache reads and cache writes
  (OpenAI / genai-prices convention). Anthropic and Claude Code report ``input_tokens`` without cache
  tokens, so their adapters add ``cache_read_input_tokens`` and ``cache_creation_input_tokens``.
* ``cached_input_tokens``: the part of ``input_tokens`` read from the prompt cache (a subset).
* ``cache_write_tokens``: the part of ``input_tokens`` written to the cache (a subset), all TTLs;
  ``cache_write_1h_tokens`` is the part of ``cache_write_tokens`` with a 1-hour TTL (the rest is 5-minute).
* ``output_tokens``: ALL billed output tokens including reasoning / thinking tokens.
  Gemini reports thoughts separately, so its adapter adds them.
* ``reasoning_tokens``: the reasoning / thinking part of ``output_tokens`` (a subset).

So uncached, unwritten input = input_tokens - cached_input_tokens - cache_write_tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

PROVIDERS = ("openai", "anthropic", "google", "mistral", "azure", "other")

# The token counts of a UsageRecord (and the token columns of the store), in declaration order.
TOKEN_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
)
# Every additive count of a UsageRecord: what summing two records of one bucket adds up.
COUNT_FIELDS = ("requests", *TOKEN_FIELDS)


@dataclass(slots=True)
class UsageRecord:
    """One provider call (``bucket_seconds == 0``) or one provider-reported aggregate bucket."""

    ts: int  # Unix seconds, UTC, start of the call or bucket
    provider: str
    model: str
    dedup_key: str  # stable across re-imports; unique in the store
    source: str = ""  # e.g. "claude-code", "codex", "csv", "openai-usage-api", "proxy"
    user: str = ""
    project: str = ""
    api_key_id: str = ""  # provider key id or a hash, never the key itself
    session_id: str = ""
    bucket_seconds: int = 0
    requests: int = 1
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    cost_reported: bool = False  # True: cost came from the source (billed); False: computed here
    price_version: str | None = None
    service_tier: str = ""  # "", "batch", "flex", "priority", "fast"
    tokens_estimated: bool = False  # tokens were estimated (e.g. a stream without usage)

    def validate(self) -> str | None:
        """Return a reason string when the record is unusable, else None."""
        if not self.model:
            return "missing model"
        for name in COUNT_FIELDS:
            if getattr(self, name) < 0:
                return f"negative {name}"
        if self.cached_input_tokens + self.cache_write_tokens > self.input_tokens:
            return "cached + cache-write tokens exceed input tokens"
        if self.reasoning_tokens > self.output_tokens:
            return "reasoning tokens exceed output tokens"
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            return "1h cache-write tokens exceed cache-write tokens"
        if self.cost_usd is not None and self.cost_usd < 0:
            return "negative cost"
        return None


# UsageRecord's fields in order (the order of a record's row tuple and of RecordColumns), and each
# field's position in it.
RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(UsageRecord))
FIELD_INDEX: dict[str, int] = {name: i for i, name in enumerate(RECORD_FIELDS)}

# Passed in an adapter's ``options`` by a parsing process: the adapter may then yield RecordColumns.
COLUMNS_OPTION = "_record_columns"


class RecordColumns:
    """A chunk of records held as columns, one sequence per UsageRecord field in field order: what an
    adapter may yield instead of records when ``options[COLUMNS_OPTION]`` is set (a parsing process,
    which needs columns anyway and saves building one object per record). Values are exactly those
    the records would hold."""

    __slots__ = ("columns", "n")

    def __init__(self, columns: list, n: int) -> None:
        self.columns = columns
        self.n = n

    def __len__(self) -> int:
        return self.n

    def split(self, k: int) -> tuple[RecordColumns, RecordColumns]:
        """The first K records, and the rest."""
        return (
            RecordColumns([c[:k] for c in self.columns], k),
            RecordColumns([c[k:] for c in self.columns], self.n - k),
        )


@dataclass(slots=True)
class LineError:
    """A malformed input line: reported as ``file:line: reason``."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class ParseReport:
    """What an adapter saw while reading: lines read, records yielded, malformed lines skipped."""

    lines: int = 0
    records: int = 0
    skipped: int = 0
    errors: list[LineError] = field(default_factory=list)
    max_errors_kept: int = 1000

    def error(self, file: str, line: int, reason: str) -> None:
        self.skipped += 1
        if len(self.errors) < self.max_errors_kept:
            self.errors.append(LineError(file, line, reason))

    def merge(self, other: ParseReport) -> None:
        self.lines += other.lines
        self.records += other.records
        self.skipped += other.skipped
        room = self.max_errors_kept - len(self.errors)
        if room > 0:
            self.errors.extend(other.errors[:room])


@dataclass(slots=True)
class FileProgress:
    """How far an incremental import has read a file (byte offset of the last complete line)."""

    source: str
    path: str
    size: int
    mtime_ns: int
    offset: int
    inode: int = 0
    state: str = ""  # adapter-specific JSON state (e.g. Codex running totals), opaque to the store
