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
from ..errors import CollectorError
from .openai_usage import BilledCost

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


def _int(obj: Any, name: str) -> int:
    v = obj.get(name) if isinstance(obj, dict) else None
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{name} is not a number: {v!r}")
    return int(v)


def _str(v: Any) -> str:
    return "" if v is None else str(v)


def dedup_key(bucket_start: int, bucket_seconds: int, result: dict[str, Any]) -> str:
    groups = "|".join(_str(result.get(f)) for f in _GROUP_FIELDS)
    return f"{SOURCE}:messages:{bucket_seconds}:{bucket_start}:{groups}"


def usage_record(start: int, end: int, result: dict[str, Any]) -> UsageRecord:
    width = end - start
    if width <= 0:
        raise ValueError(f"bucket end {end} is not after its start {start}")
    cache = result.get("cache_creation") or {}
    w5m, w1h = _int(cache, "ephemeral_5m_input_tokens"), _int(cache, "ephemeral_1h_input_tokens")
    cached = _int(result, "cache_read_input_tokens")
    rec = UsageRecord(
        ts=start,
        provider=PROVIDER,
        model=_str(result.get("model")) or "unknown",
        dedup_key=dedup_key(start, width, result),
        source=SOURCE,
        user=_str(result.get("account_id") or result.get("service_account_id")),
        project=_str(result.get("workspace_id")),
        api_key_id=_str(result.get("api_key_id")),
        bucket_seconds=width,
        requests=0,
        input_tokens=_int(result, "uncached_input_tokens") + cached + w5m + w1h,
        cached_input_tokens=cached,
        cache_write_tokens=w5m + w1h,
        cache_write_1h_tokens=w1h,
        output_tokens=_int(result, "output_tokens"),
        service_tier=_TIERS.get(_str(result.get("service_tier")), ""),
    )
    if result.get("speed") == "fast":
        rec.service_tier = "fast"
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


def parse_usage_page(
    page: Any, report: ParseReport | None = None
) -> Iterator[tuple[int, int, UsageRecord | None, str]]:
    """Yield (bucket start, bucket end, record, context window); (start, end, None, "") for a bucket
    without results. The context window ("0-200k" | "200k-1M" | "") tells which price tier was paid."""
    report = report if report is not None else ParseReport()
    for i, bucket in enumerate(_buckets(page, "usage report")):
        try:
            start, end = parse_rfc3339(bucket["starting_at"]), parse_rfc3339(bucket["ending_at"])
            results = bucket.get("results") or []
        except (KeyError, TypeError, ValueError) as e:
            report.error("messages", i, f"bucket without starting_at/ending_at: {e}")
            continue
        if not results:
            yield start, end, None, ""
        for result in results:
            report.lines += 1
            try:
                rec = usage_record(start, end, result)
            except (ValueError, TypeError, AttributeError) as e:
                report.error("messages", i, f"bucket {start}: {e}")
                continue
            report.records += 1
            yield start, end, rec, _str(result.get("context_window"))


def parse_cost_page(
    page: Any, report: ParseReport | None = None
) -> Iterator[tuple[int, int, BilledCost | None]]:
    """Yield (bucket start, bucket end, billed cost); amounts converted from cents strings to dollars."""
    report = report if report is not None else ParseReport()
    for i, bucket in enumerate(_buckets(page, "cost report")):
        try:
            start, end = parse_rfc3339(bucket["starting_at"]), parse_rfc3339(bucket["ending_at"])
            results = bucket.get("results") or []
        except (KeyError, TypeError, ValueError) as e:
            report.error("cost_report", i, f"bucket without starting_at/ending_at: {e}")
            continue
        if not results:
            yield start, end, None
        for result in results:
            report.lines += 1
            try:
                # Decimal: the string is exact cents; float division only at the end.
                cents = Decimal(str(result["amount"]))
                currency = _str(result.get("currency") or "USD").upper()
                cost = BilledCost(
                    provider=PROVIDER,
                    source=COSTS_SOURCE,
                    day=start,
                    project=_str(result.get("workspace_id")),
                    line_item=_str(result.get("description") or result.get("cost_type")),
                    model=_str(result.get("model")),
                    amount=float(cents / 100),
                    currency=currency,
                )
            except (KeyError, TypeError, ValueError, InvalidOperation) as e:
                report.error("cost_report", i, f"bucket {start}: malformed cost result: {e}")
                continue
            report.records += 1
            yield start, end, cost
