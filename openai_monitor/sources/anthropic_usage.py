"""Anthropic Admin API usage report and cost report pages -> ``UsageRecord``s and ``BilledCost`` rows.

Pure parsing, no I/O. Format confirmed from Anthropic's API reference, "Get Messages Usage Report"
(``GET /v1/organizations/usage_report/messages``) and "Get Cost Report"
(``GET /v1/organizations/cost_report``), platform.claude.com/docs/en/api/admin-api/usage-cost/:

* pages are ``{"data": [bucket...], "has_more": bool, "next_page": str | null}``; a bucket is
  ``{"starting_at": RFC 3339, "ending_at": RFC 3339, "results": [...]}``, oldest first, empty buckets
  included;
* a usage result has ``uncached_input_tokens``, ``cache_read_input_tokens``,
  ``cache_creation.{ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}``, ``output_tokens``,
  ``server_tool_use.web_search_requests`` and the group fields (``model``, ``workspace_id``,
  ``api_key_id``, ``service_tier``, ``context_window``, ...; null unless grouped by);
* a cost result has ``amount`` as a decimal STRING in the lowest currency unit ("123.45" USD = $1.2345),
  ``currency``, and, when grouped by ``description``, ``description``, ``model``, ``cost_type``,
  ``token_type``, ``service_tier``, ``context_window``.

The usage report has no request count, so records carry ``requests = 0`` (unknown). Token normalisation:
stored input = uncached + cache reads + cache writes (``domain.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ..domain import ParseReport, UsageRecord
from .openai_usage import BilledCost, int_field, str_field, walk_results

SOURCE = "anthropic-usage-report"
COSTS_SOURCE = "anthropic-cost-report"
PROVIDER = "anthropic"
USAGE_PATH = "/organizations/usage_report/messages"
COST_PATH = "/organizations/cost_report"
USAGE_GROUP_BY = ("model", "workspace_id", "api_key_id", "service_tier", "context_window")
COST_GROUP_BY = ("description", "workspace_id")
MAX_LIMIT = {"1d": 31, "1h": 168, "1m": 1440}
COST_MAX_LIMIT = 31
_GROUP_FIELDS = (
    "model",
    "workspace_id",
    "api_key_id",
    "account_id",
    "service_account_id",
    "service_tier",
    "context_window",
    "inference_geo",
    "speed",
)
# Anthropic service tiers -> UsageRecord.service_tier (pricing variants); "standard" is the default.
_TIERS = {
    "standard": "",
    "batch": "batch",
    "priority": "priority",
    "priority_on_demand": "priority",
    "flex": "flex",
    "flex_discount": "flex",
}


def parse_rfc3339(value: Any) -> int:
    """Unix seconds of an RFC 3339 timestamp ("2025-08-01T00:00:00Z")."""
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"timestamp without zone: {value!r}")
    return int(dt.timestamp())


def _rfc3339_bounds(bucket: dict[str, Any]) -> tuple[int, int]:
    return parse_rfc3339(bucket["starting_at"]), parse_rfc3339(bucket["ending_at"])


def dedup_key(bucket_start: int, bucket_seconds: int, result: dict[str, Any]) -> str:
    groups = "|".join(str_field(result.get(f)) for f in _GROUP_FIELDS)
    return f"{SOURCE}:messages:{bucket_seconds}:{bucket_start}:{groups}"


def usage_record(start: int, end: int, result: dict[str, Any]) -> UsageRecord:
    width = end - start
    if width <= 0:
        raise ValueError(f"bucket end {end} is not after its start {start}")
    cache = result.get("cache_creation") or {}
    w5m, w1h = int_field(cache, "ephemeral_5m_input_tokens"), int_field(cache, "ephemeral_1h_input_tokens")
    cached = int_field(result, "cache_read_input_tokens")
    rec = UsageRecord(
        ts=start,
        provider=PROVIDER,
        model=str_field(result.get("model")) or "unknown",
        dedup_key=dedup_key(start, width, result),
        source=SOURCE,
        user=str_field(result.get("account_id") or result.get("service_account_id")),
        project=str_field(result.get("workspace_id")),
        api_key_id=str_field(result.get("api_key_id")),
        bucket_seconds=width,
        requests=0,
        input_tokens=int_field(result, "uncached_input_tokens") + cached + w5m + w1h,
        cached_input_tokens=cached,
        cache_write_tokens=w5m + w1h,
        cache_write_1h_tokens=w1h,
        output_tokens=int_field(result, "output_tokens"),
        service_tier=_TIERS.get(str_field(result.get("service_tier")), ""),
    )
    if result.get("speed") == "fast":
        rec.service_tier = "fast"
    reason = rec.validate()
    if reason:
        raise ValueError(reason)
    return rec


def parse_usage_page(
    page: Any, report: ParseReport | None = None
) -> Iterator[tuple[int, int, UsageRecord | None, str]]:
    """Yield (bucket start, bucket end, record, context window); (start, end, None, "") for a bucket
    without results. The context window ("0-200k" | "200k-1M" | "") tells which price tier was paid."""
    for start, end, item in walk_results(
        page,
        report if report is not None else ParseReport(),
        what="usage report",
        where="messages",
        bounds=_rfc3339_bounds,
        bound_names="starting_at/ending_at",
        convert=lambda start, end, result: (
            usage_record(start, end, result),
            str_field(result.get("context_window")),
        ),
        errors=(ValueError, TypeError, AttributeError),
    ):
        if item is None:
            yield start, end, None, ""
        else:
            yield start, end, *item


def parse_cost_page(
    page: Any, report: ParseReport | None = None
) -> Iterator[tuple[int, int, BilledCost | None]]:
    """Yield (bucket start, bucket end, billed cost); amounts converted from cents strings to dollars."""
    return walk_results(
        page,
        report if report is not None else ParseReport(),
        what="cost report",
        where="cost_report",
        bounds=_rfc3339_bounds,
        bound_names="starting_at/ending_at",
        convert=_billed_cost,
        # InvalidOperation: an amount string that is not a decimal number.
        errors=(KeyError, TypeError, ValueError, InvalidOperation),
        malformed="malformed cost result: ",
    )


def _billed_cost(start: int, end: int, result: dict[str, Any]) -> BilledCost:
    # Decimal: the string is exact cents; float division only at the end.
    cents = Decimal(str(result["amount"]))
    currency = str_field(result.get("currency") or "USD").upper()
    return BilledCost(
        provider=PROVIDER,
        source=COSTS_SOURCE,
        day=start,
        project=str_field(result.get("workspace_id")),
        line_item=str_field(result.get("description") or result.get("cost_type")),
        model=str_field(result.get("model")),
        amount=float(cents / 100),
        currency=currency,
    )
