"""OpenAI organization Usage API and Costs API pages -> ``UsageRecord``s and ``BilledCost`` rows.

Pure parsing, no I/O: the sync service fetches the pages (``service/sync.py``). Format: openai 3.54.0
``types/admin/organization/usage_*.py`` (see ``../shared/reference/formats.md`` section 2).

Token normalisation (``domain.py`` semantics): the Usage API's ``input_tokens`` already includes cached
and cache-write tokens, so it is stored as is; ``input_cached_tokens`` is the cached subset and
``input_cache_write_tokens`` (newer payloads only) the written subset. Older payloads carry only six
fields (``input_tokens``, ``output_tokens``, ``input_cached_tokens``, ``input_audio_tokens``,
``output_audio_tokens``, ``num_model_requests``); every optional field defaults to 0 / null.

Images, speech and transcription results count images, characters and seconds, not tokens. Pricing them
by tokens would price them at $0, so their records are stored with ``cost_usd = None`` and
``cost_reported = True`` (the Costs API is the authority for them): they count as unpriced in reports and
no repricing turns them into a silent $0.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ..domain import ParseReport, UsageRecord
from ..errors import CollectorError

SOURCE = "openai-usage-api"
COSTS_SOURCE = "openai-costs-api"
PROVIDER = "openai"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    path: str
    group_by: tuple[str, ...]
    token_priced: bool


# group_by values each endpoint accepts (formats.md 2.2). ``batch`` is requested for completions because
# batch calls are billed at batch prices.
ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in (
        Endpoint(
            "completions",
            "/organization/usage/completions",
            ("model", "project_id", "user_id", "api_key_id", "batch"),
            True,
        ),
        Endpoint(
            "embeddings",
            "/organization/usage/embeddings",
            ("model", "project_id", "user_id", "api_key_id"),
            True,
        ),
        Endpoint(
            "moderations",
            "/organization/usage/moderations",
            ("model", "project_id", "user_id", "api_key_id"),
            True,
        ),
        Endpoint(
            "images", "/organization/usage/images", ("model", "project_id", "user_id", "api_key_id"), False
        ),
        Endpoint(
            "audio_speeches",
            "/organization/usage/audio_speeches",
            ("model", "project_id", "user_id", "api_key_id"),
            False,
        ),
        Endpoint(
            "audio_transcriptions",
            "/organization/usage/audio_transcriptions",
            ("model", "project_id", "user_id", "api_key_id"),
            False,
        ),
    )
}
COSTS_PATH = "/organization/costs"
COSTS_GROUP_BY = ("line_item", "project_id")
# Maximum buckets per page (formats.md 2.3): fewer round trips than the defaults.
MAX_LIMIT = {"1d": 31, "1h": 168, "1m": 1440}
COSTS_MAX_LIMIT = 180
BUCKET_SECONDS = {"1d": 86400, "1h": 3600, "1m": 60}

_GROUP_FIELDS = ("model", "project_id", "user_id", "api_key_id", "batch", "service_tier", "size", "source")


@dataclass(slots=True)
class BilledCost:
    """One billed amount of one UTC day (a Costs API / cost report result)."""

    provider: str
    source: str
    day: int  # UTC midnight, Unix seconds
    project: str
    line_item: str
    model: str
    amount: float  # major currency units
    currency: str  # upper-case ISO 4217
    quantity: float | None = None

    @property
    def amount_usd(self) -> float | None:
        return self.amount if self.currency == "USD" else None


def int_field(obj: Any, name: str) -> int:
    """``obj[name]`` as an int, 0 when absent (or ``obj`` is not an object); ValueError when not a number."""
    v = obj.get(name) if isinstance(obj, dict) else None
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{name} is not a number: {v!r}")
    return int(v)


def str_field(v: Any) -> str:
    return "" if v is None else str(v)


def dedup_key(endpoint: str, bucket_start: int, bucket_seconds: int, result: dict[str, Any]) -> str:
    """Stable per (endpoint, bucket, group values): a re-fetched bucket replaces its stored copy."""
    groups = "|".join(str_field(result.get(f)) for f in _GROUP_FIELDS)
    return f"{SOURCE}:{endpoint}:{bucket_seconds}:{bucket_start}:{groups}"


def usage_record(endpoint: str, start: int, end: int, result: dict[str, Any]) -> UsageRecord:
    """One Usage API result of the bucket [start, end) as a bucket record (ValueError when malformed)."""
    ep = ENDPOINTS[endpoint]
    width = end - start
    if width <= 0:
        raise ValueError(f"bucket end {end} is not after its start {start}")
    requests = int_field(result, "num_model_requests")
    rec = UsageRecord(
        ts=start,
        provider=PROVIDER,
        model=str_field(result.get("model")) or "unknown",
        dedup_key=dedup_key(endpoint, start, width, result),
        source=SOURCE,
        user=str_field(result.get("user_id")),
        project=str_field(result.get("project_id")),
        api_key_id=str_field(result.get("api_key_id")),
        bucket_seconds=width,
        requests=requests,
        service_tier="batch" if result.get("batch") is True else str_field(result.get("service_tier")),
    )
    if ep.token_priced:
        rec.input_tokens = int_field(result, "input_tokens")
        rec.cached_input_tokens = int_field(result, "input_cached_tokens")
        rec.cache_write_tokens = int_field(result, "input_cache_write_tokens")
        rec.output_tokens = int_field(result, "output_tokens")
    else:
        rec.cost_usd = None
        rec.cost_reported = True
    if rec.service_tier == "default":
        rec.service_tier = ""
    reason = rec.validate()
    if reason:
        raise ValueError(reason)
    return rec


def _buckets(page: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(page, dict) or not isinstance(page.get("data"), list):
        raise CollectorError(
            f"unexpected {what} response (no 'data' list); check --base-url points at the API"
        )
    return page["data"]


def walk_results(
    page: Any,
    report: ParseReport,
    *,
    what: str,
    where: str,
    bounds: Callable[[dict[str, Any]], tuple[int, int]],
    bound_names: str,
    convert: Callable[[int, int, dict[str, Any]], T],
    errors: tuple[type[Exception], ...],
    malformed: str = "",
) -> Iterator[tuple[int, int, T | None]]:
    """Yield (bucket start, bucket end, converted result) for each result of a bucketed admin-API page,
    (start, end, None) for a bucket without results. A bucket whose ``bounds`` fail, or a result whose
    ``convert`` raises one of ``errors``, is counted in ``report`` under ``where`` and skipped."""
    for i, bucket in enumerate(_buckets(page, what)):
        try:
            start, end = bounds(bucket)
            results = bucket.get("results") or []
        except (KeyError, TypeError, ValueError) as e:
            report.error(where, i, f"bucket without {bound_names}: {e}")
            continue
        if not results:
            yield start, end, None
        for result in results:
            report.lines += 1
            try:
                item = convert(start, end, result)
            except errors as e:
                report.error(where, i, f"bucket {start}: {malformed}{e}")
                continue
            report.records += 1
            yield start, end, item


def _unix_bounds(bucket: dict[str, Any]) -> tuple[int, int]:
    return int(bucket["start_time"]), int(bucket["end_time"])


def parse_usage_page(
    endpoint: str, page: Any, report: ParseReport | None = None
) -> Iterator[tuple[int, int, UsageRecord | None]]:
    """Yield (bucket start, bucket end, record) for each result of a usage page; a bucket without results
    yields (start, end, None) so the caller still sees it. Malformed results are counted in ``report``."""
    return walk_results(
        page,
        report if report is not None else ParseReport(),
        what="usage",
        where=endpoint,
        bounds=_unix_bounds,
        bound_names="start_time/end_time",
        convert=lambda start, end, result: usage_record(endpoint, start, end, result),
        errors=(ValueError, TypeError, AttributeError),
    )


# "gpt-4o-2024-08-06, input", "gpt-4o, cached input", "ft:gpt-4o-mini:org::id, output". Line items
# without a comma ("web search tool calls") name no model.
_LINE_ITEM_RE = re.compile(r"^\s*([^,]+?)\s*,\s*(.+?)\s*$")


def model_of_line_item(line_item: str) -> str:
    """The model encoded in a Costs API ``line_item`` ("gpt-4o, input" -> "gpt-4o"), "" if none."""
    m = _LINE_ITEM_RE.match(line_item or "")
    if not m:
        return ""
    model = m.group(1)
    return "" if " " in model else model


def parse_costs_page(
    page: Any, report: ParseReport | None = None
) -> Iterator[tuple[int, int, BilledCost | None]]:
    """Yield (bucket start, bucket end, billed cost) per Costs API result; (start, end, None) for an empty
    bucket. ``amount.value`` is in currency units (dollars, not cents)."""
    return walk_results(
        page,
        report if report is not None else ParseReport(),
        what="costs",
        where="costs",
        bounds=_unix_bounds,
        bound_names="start_time/end_time",
        convert=_billed_cost,
        errors=(KeyError, TypeError, ValueError),
        malformed="malformed cost result: ",
    )


def _billed_cost(start: int, end: int, result: dict[str, Any]) -> BilledCost:
    amount = result["amount"]
    value = float(amount["value"])
    currency = str_field(amount.get("currency") or "usd").upper()
    line_item = str_field(result.get("line_item"))
    qty = result.get("quantity")
    return BilledCost(
        provider=PROVIDER,
        source=COSTS_SOURCE,
        day=start,
        project=str_field(result.get("project_id")),
        line_item=line_item,
        model=model_of_line_item(line_item),
        amount=value,
        currency=currency,
        quantity=None if qty is None else float(qty),
    )
