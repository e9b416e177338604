"""A local HTTP server (127.0.0.1, threaded) speaking the provider admin APIs' documented formats.

OpenAI (openai 3.54.0 types, formats.md section 2): ``GET /v1/organization/usage/<endpoint>`` and
``GET /v1/organization/costs`` with ``start_time`` / ``end_time`` (Unix seconds), ``bucket_width``,
``limit``, repeated ``group_by``, ``page``; pages ``{"object": "page", "data": [...], "has_more",
"next_page"}``; ``Authorization: Bearer``.

Anthropic (API reference "Get Messages Usage Report" / "Get Cost Report"):
``GET /v1/organizations/usage_report/messages`` and ``/v1/organizations/cost_report`` with RFC 3339
``starting_at`` / ``ending_at``, ``bucket_width``, ``limit``, ``group_by[]``, ``page``; buckets
``{"starting_at", "ending_at", "results"}``; cost ``amount`` as a cents decimal string; ``x-api-key``.

The server aggregates raw events into buckets on each request, so adding events makes the current
bucket grow exactly as a live API's would. ``now`` bounds the last (partial) bucket. ``fail_next``
queues error responses (status, headers) served before the real answer; ``log`` records each request.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

OPENAI_KEY = "sk-admin-test-key-0123456789"
ANTHROPIC_KEY = "sk-ant-admin01-test-key-0123456789"
WIDTHS = {"1m": 60, "1h": 3600, "1d": 86400}
LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}  # (default, max)
OPENAI_GROUPS = {
    "completions": ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier", "api_source"),
    "embeddings": ("project_id", "user_id", "api_key_id", "model"),
    "moderations": ("project_id", "user_id", "api_key_id", "model"),
    "images": ("project_id", "user_id", "api_key_id", "model", "size", "source"),
    "audio_speeches": ("project_id", "user_id", "api_key_id", "model"),
    "audio_transcriptions": ("project_id", "user_id", "api_key_id", "model"),
}
# Numeric fields summed per result, per endpoint. The first six completions fields are all that older
# payloads (Nov 2024 - Jan 2025) carried.
OLD_COMPLETION_FIELDS = (
    "input_tokens",
    "output_tokens",
    "input_cached_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "num_model_requests",
)
NEW_COMPLETION_FIELDS = OLD_COMPLETION_FIELDS + (
    "input_uncached_tokens",
    "input_text_tokens",
    "input_image_tokens",
    "input_cache_write_tokens",
    "output_text_tokens",
)
OPENAI_SUMS = {
    "embeddings": ("input_tokens", "num_model_requests"),
    "moderations": ("input_tokens", "num_model_requests"),
    "images": ("images", "num_model_requests"),
    "audio_speeches": ("characters", "num_model_requests"),
    "audio_transcriptions": ("seconds", "num_model_requests"),
}
ANTHROPIC_GROUPS = (
    "account_id",
    "api_key_id",
    "context_window",
    "inference_geo",
    "model",
    "service_account_id",
    "service_tier",
    "speed",
    "workspace_id",
)


def rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(s: str) -> int:
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp())


class FakeProviderAPI:
    def __init__(self, *, now: int, old_payload: bool = False, page_buckets: int | None = None) -> None:
        self.now = now
        self.old_payload = old_payload
        self.page_buckets = page_buckets  # server-side cap on buckets per page (pages may end mid-day)
        self.openai_usage: list[dict[str, Any]] = []  # {"endpoint", "ts", group fields..., numeric fields...}
        self.openai_costs: list[dict[str, Any]] = []  # {"ts", "project_id", "line_item", "value", "currency"}
        self.anthropic_usage: list[dict[str, Any]] = []
        self.anthropic_costs: list[
            dict[str, Any]
        ] = []  # {"ts", "workspace_id", "description", "model", "amount"}
        self.fail_next: list[tuple[int, dict[str, str]]] = []
        self.log: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeProviderAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- shared paging -------------------------------------------------------------------------------
    def _bucket_starts(
        self, start: int, end: int | None, width: str, limit: int, cursor: str | None
    ) -> tuple[list[int], int | None]:
        w = WIDTHS[width]
        first = int(base64.b64decode(cursor).decode()) if cursor else start
        last_end = self.now - self.now % w + w  # the bucket holding `now` is served, partial
        if end is not None:
            last_end = min(last_end, end)
        cap = min(limit, self.page_buckets or limit)
        starts = []
        s = first
        while s < last_end and len(starts) < cap:
            starts.append(s)
            s += w
        nxt = s if s < last_end else None
        return starts, nxt

    @staticmethod
    def _cursor(ts: int | None) -> str | None:
        return None if ts is None else base64.b64encode(str(ts).encode()).decode()

    def _page(self, data: list[dict[str, Any]], nxt: int | None) -> dict[str, Any]:
        return {"data": data, "has_more": nxt is not None, "next_page": self._cursor(nxt)}

    # -- OpenAI --------------------------------------------------------------------------------------
    def _openai_usage(self, endpoint: str, q: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        width = q.get("bucket_width", ["1d"])[0]
        if width not in WIDTHS:
            return 400, _oa_error(f"Invalid bucket_width '{width}'")
        if "start_time" not in q:
            return 400, _oa_error("Missing required parameter: 'start_time'.")
        default, maximum = LIMITS[width]
        limit = int(q.get("limit", [default])[0])
        if not 1 <= limit <= maximum:
            return 400, _oa_error(f"limit must be between 1 and {maximum}")
        groups = q.get("group_by", [])
        allowed = OPENAI_GROUPS[endpoint]
        bad = [g for g in groups if g not in allowed]
        if bad:
            return 400, _oa_error(f"Invalid group_by value(s): {bad}")
        end = int(q["end_time"][0]) if "end_time" in q else None
        starts, nxt = self._bucket_starts(
            int(q["start_time"][0]), end, width, limit, q.get("page", [None])[0]
        )
        w = WIDTHS[width]
        if endpoint == "completions":
            sums = OLD_COMPLETION_FIELDS if self.old_payload else NEW_COMPLETION_FIELDS
        else:
            sums = OPENAI_SUMS[endpoint]
        events = [ev for ev in self.openai_usage if ev["endpoint"] == endpoint]
        data = []
        for s in starts:
            agg = _sum_by_group(events, s, w, groups, sums)
            results = []
            for key, row in agg.items():
                res: dict[str, Any] = {
                    "object": f"organization.usage.{endpoint}.result",
                    **{f: row[f] for f in sums},
                }
                shown = ("project_id", "user_id", "api_key_id", "model")
                if endpoint == "completions":
                    shown += () if self.old_payload else ("batch", "service_tier", "api_source")
                elif endpoint == "images":
                    shown += ("size", "source")
                for g in shown:
                    res[g] = key[groups.index(g)] if g in groups else None
                results.append(res)
            data.append({"object": "bucket", "start_time": s, "end_time": s + w, "results": results})
        return 200, {"object": "page", **self._page(data, nxt)}

    def _openai_costs(self, q: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if "start_time" not in q:
            return 400, _oa_error("Missing required parameter: 'start_time'.")
        width = q.get("bucket_width", ["1d"])[0]
        if width != "1d":
            return 400, _oa_error("bucket_width must be 1d for costs")
        limit = int(q.get("limit", [7])[0])
        if not 1 <= limit <= 180:
            return 400, _oa_error("limit must be between 1 and 180")
        groups = q.get("group_by", [])
        end = int(q["end_time"][0]) if "end_time" in q else None
        starts, nxt = self._bucket_starts(int(q["start_time"][0]), end, "1d", limit, q.get("page", [None])[0])
        data = []
        for s in starts:
            agg: dict[tuple, float] = defaultdict(float)
            for ev in self.openai_costs:
                if s <= ev["ts"] < s + 86400:
                    agg[tuple(ev.get(g) for g in groups)] += ev["value"]
            results = []
            for key, value in agg.items():
                res = {
                    "object": "organization.costs.result",
                    "amount": {"value": value, "currency": "usd"},
                    "line_item": None,
                    "project_id": None,
                    "api_key_id": None,
                    "user_id": None,
                    "api_source": None,
                    "quantity": None,
                    "quantity_unit": None,
                }
                for g, v in zip(groups, key):
                    res[g] = v
                results.append(res)
            data.append({"object": "bucket", "start_time": s, "end_time": s + 86400, "results": results})
        return 200, {"object": "page", **self._page(data, nxt)}

    # -- Anthropic -----------------------------------------------------------------------------------
    def _anthropic_usage(self, q: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if "starting_at" not in q:
            return 400, _an_error("invalid_request_error", "starting_at: Field required")
        width = q.get("bucket_width", ["1d"])[0]
        default, maximum = LIMITS[width]
        limit = int(q.get("limit", [default])[0])
        if not 1 <= limit <= maximum:
            return 400, _an_error("invalid_request_error", f"limit: must be at most {maximum}")
        groups = q.get("group_by[]", [])
        if any(g not in ANTHROPIC_GROUPS for g in groups):
            return 400, _an_error("invalid_request_error", "group_by[]: invalid value")
        w = WIDTHS[width]
        start = parse_rfc3339(q["starting_at"][0])
        start -= start % w  # "snapped to the start of the minute/hour/day in UTC"
        end = parse_rfc3339(q["ending_at"][0]) if "ending_at" in q else None
        starts, nxt = self._bucket_starts(start, end, width, limit, q.get("page", [None])[0])
        data = []
        for s in starts:
            agg = _sum_by_group(
                self.anthropic_usage,
                s,
                w,
                groups,
                (
                    "uncached_input_tokens",
                    "cache_read_input_tokens",
                    "cw5m",
                    "cw1h",
                    "output_tokens",
                    "web_search_requests",
                ),
            )
            results = []
            for key, row in agg.items():
                res: dict[str, Any] = {
                    "uncached_input_tokens": row["uncached_input_tokens"],
                    "cache_creation": {
                        "ephemeral_1h_input_tokens": row["cw1h"],
                        "ephemeral_5m_input_tokens": row["cw5m"],
                    },
                    "cache_read_input_tokens": row["cache_read_input_tokens"],
                    "output_tokens": row["output_tokens"],
                    "server_tool_use": {"web_search_requests": row["web_search_requests"]},
                }
                for g in (
                    "account_id",
                    "api_key_id",
                    "context_window",
                    "inference_geo",
                    "model",
                    "service_account_id",
                    "service_tier",
                    "workspace_id",
                ):
                    res[g] = key[groups.index(g)] if g in groups else None
                results.append(res)
            data.append({"starting_at": rfc3339(s), "ending_at": rfc3339(s + w), "results": results})
        return 200, self._page(data, nxt)

    def _anthropic_costs(self, q: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if "starting_at" not in q:
            return 400, _an_error("invalid_request_error", "starting_at: Field required")
        limit = int(q.get("limit", [7])[0])
        if not 1 <= limit <= 31:
            return 400, _an_error("invalid_request_error", "limit: must be at most 31")
        groups = q.get("group_by[]", [])
        start = parse_rfc3339(q["starting_at"][0])
        start -= start % 86400
        starts, nxt = self._bucket_starts(start, None, "1d", limit, q.get("page", [None])[0])
        data = []
        for s in starts:
            results = []
            for ev in self.anthropic_costs:
                if s <= ev["ts"] < s + 86400:
                    by_desc = "description" in groups
                    results.append(
                        {
                            "amount": ev["amount"],
                            "currency": "USD",
                            "workspace_id": ev.get("workspace_id") if "workspace_id" in groups else None,
                            "description": ev.get("description") if by_desc else None,
                            "cost_type": "tokens" if by_desc else None,
                            "context_window": "0-200k" if by_desc else None,
                            "model": ev.get("model") if by_desc else None,
                            "service_tier": "standard" if by_desc else None,
                            "token_type": ev.get("token_type") if by_desc else None,
                            "inference_geo": None,
                        }
                    )
            data.append({"starting_at": rfc3339(s), "ending_at": rfc3339(s + 86400), "results": results})
        return 200, self._page(data, nxt)

    # -- HTTP ----------------------------------------------------------------------------------------
    def _route(
        self, path: str, q: dict[str, list[str]], headers: Any
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if path.startswith("/v1/organization/"):
            auth = headers.get("Authorization", "")
            if auth == "Bearer " + OPENAI_KEY:
                pass
            elif auth.startswith("Bearer sk-proj-"):
                return (
                    403,
                    _oa_error(
                        "You have insufficient permissions for this operation.", "insufficient_permissions"
                    ),
                    {},
                )
            else:
                return 401, _oa_error("Incorrect API key provided.", "invalid_api_key"), {}
            if path == "/v1/organization/costs":
                return (*self._openai_costs(q), {})
            endpoint = path.rsplit("/", 1)[1]
            if path.startswith("/v1/organization/usage/") and endpoint in OPENAI_GROUPS:
                return (*self._openai_usage(endpoint, q), {})
        elif path.startswith("/v1/organizations/"):
            if headers.get("x-api-key") != ANTHROPIC_KEY:
                return 401, _an_error("authentication_error", "invalid x-api-key"), {}
            if headers.get("anthropic-version") != "2023-06-01":
                return 400, _an_error("invalid_request_error", "anthropic-version header is required"), {}
            if path == "/v1/organizations/usage_report/messages":
                return (*self._anthropic_usage(q), {})
            if path == "/v1/organizations/cost_report":
                return (*self._anthropic_costs(q), {})
        return 404, {"error": {"message": f"Unknown path {path}", "type": "invalid_request_error"}}, {}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                q = parse_qs(parts.query, keep_blank_values=True)
                with api._lock:
                    if api.fail_next:
                        status, extra = api.fail_next.pop(0)
                        body: dict[str, Any] = {
                            "error": {
                                "message": "Rate limit reached"
                                if status == 429
                                else "The server had an error",
                                "type": "server_error",
                            }
                        }
                    else:
                        status, body, extra = api._route(parts.path, q, self.headers)
                    api.log.append({"t": time.monotonic(), "path": parts.path, "query": q, "status": status})
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

        return Handler


def _sum_by_group(
    events: list[dict[str, Any]], start: int, width: int, groups: list[str], fields: tuple[str, ...]
) -> dict[tuple, dict[str, int]]:
    """Sum ``fields`` of the events in bucket [start, start + width) per value tuple of ``groups``."""
    agg: dict[tuple, dict[str, int]] = {}
    for ev in events:
        if not start <= ev["ts"] < start + width:
            continue
        row = agg.setdefault(tuple(ev.get(g) for g in groups), defaultdict(int))
        for f in fields:
            row[f] += ev.get(f, 0)
    return agg


def _oa_error(message: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}


def _an_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}
