"""Usage from live API traffic: request bodies, response bodies (JSON or SSE) and rate-limit headers.

Pure parsing shared by the recording proxy and SDK instrumentation: bytes in, plain data out. Token counts
are normalised to :mod:`openai_monitor.domain` semantics (formats.md section 3):

* OpenAI Chat Completions / Completions / Embeddings: ``prompt_tokens`` already include cached tokens and
  ``completion_tokens`` include reasoning; Responses API: ``input_tokens`` / ``output_tokens`` likewise.
* Anthropic Messages: ``input_tokens`` EXCLUDES cache tokens, so input = input + cache_creation + cache_read.
  When streaming, ``message_start`` has input and cache counts and ``message_delta`` cumulative counts
  (its fields win when present).

Which calls are usage calls: POST to ``.../chat/completions``, ``.../completions``, ``.../responses``,
``.../embeddings`` (OpenAI) and ``.../messages`` (Anthropic). Everything else (model lists, token counting,
retrieving a stored response, files) bills nothing and is passed through without a usage record.
"""

from __future__ import annotations

import hashlib
import re
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from ..domain import UsageRecord

_KINDS_OPENAI = {
    "/chat/completions": "chat",
    "/completions": "completions",
    "/responses": "responses",
    "/embeddings": "embeddings",
}
RATE_LIMIT_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")
RETRY_HEADERS = ("retry-after", "retry-after-ms")

_OPENAI_TIERS = {"flex": "flex", "priority": "priority"}  # default / auto / scale pay standard rates
_ANTHROPIC_TIERS = {"priority": "priority", "batch": "batch"}


@dataclass(slots=True)
class CapturedCall:
    """One finished (or aborted) API call as seen on the wire. Bodies are raw bytes as transferred."""

    provider: str  # "openai" | "anthropic"
    path: str  # request path without the query, e.g. /v1/chat/completions
    ts: float  # Unix seconds when the request started
    status: int
    request_body: bytes
    response_body: bytes
    content_type: str = ""
    content_encoding: str = ""
    rate_headers: list[tuple[str, str]] = field(default_factory=list)
    complete: bool = True  # False: the response body was cut off (client went away, upstream dropped)
    user: str = ""  # attribution header (X-OAIM-User)
    project: str = ""  # X-OAIM-Project
    api_key_hash: str = ""
    source: str = "proxy"
    method: str = "POST"


@dataclass(slots=True)
class RequestInfo:
    model: str = ""
    user: str = ""
    stream: bool = False
    texts: list[str] = field(default_factory=list)  # prompt text, for estimation
    messages: int = 0  # chat messages (framing tokens when estimating)
    names: int = 0
    token_inputs: int = 0  # embeddings sent as token arrays: already tokens


@dataclass(slots=True)
class ParsedResponse:
    response_id: str = ""
    model: str = ""
    tokens: dict[str, int] | None = None  # full normalised usage, None when the response had none
    input_only: dict[str, int] | None = None  # Anthropic stream cut before message_delta: input known
    service_tier: str = ""
    output_texts: list[str] = field(default_factory=list)
    complete: bool = True


def usage_kind(provider: str, method: str, path: str) -> str | None:
    """chat / completions / responses / embeddings / messages for a billable call, else None."""
    if method.upper() != "POST":
        return None
    p = path.split("?", 1)[0].rstrip("/")
    if provider == "anthropic":
        return "messages" if p.endswith("/messages") or p == "/messages" else None
    for suffix, kind in _KINDS_OPENAI.items():
        if p.endswith(suffix):
            if kind == "completions" and p.endswith("/chat/completions"):
                return "chat"
            return kind
    return None


def hash_api_key(key: str) -> str:
    """A stable, non-reversible id of an API key (sha256 prefix); never store the key itself."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:16] if key else ""


def api_key_from_headers(get: Any) -> str:
    """The API key of a request from ``get(header_name)`` (Authorization bearer or x-api-key)."""
    key = get("x-api-key") or ""
    if not key:
        auth = get("authorization") or ""
        if auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
    return key


def decode_body(body: bytes, content_encoding: str) -> bytes | None:
    """The body with its Content-Encoding removed; None when the encoding cannot be decoded here."""
    enc = content_encoding.strip().lower()
    if not enc or enc == "identity" or not body:
        return body
    try:
        if enc in ("gzip", "x-gzip", "deflate"):
            # wbits 47 = auto-detect gzip or zlib header; raw deflate needs -15.
            try:
                return zlib.decompressobj(47).decompress(body)
            except zlib.error:
                return zlib.decompressobj(-15).decompress(body)
        if enc == "br":
            import brotli  # type: ignore[import-not-found]

            return brotli.decompress(body)
        if enc == "zstd":
            import zstandard  # type: ignore[import-not-found]

            return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    except Exception:  # corrupt or truncated body, or the codec is not installed
        return None
    return None


# -- requests -----------------------------------------------------------------------------------------


def _content_texts(content: Any, out: list[str]) -> None:
    if isinstance(content, str):
        out.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict):
                for key in ("text", "input_text", "content", "thinking"):
                    v = part.get(key)
                    if isinstance(v, str):
                        out.append(v)
                    elif isinstance(v, list):
                        _content_texts(v, out)


def parse_request(provider: str, kind: str, body: bytes) -> RequestInfo:
    """Model, user, stream flag and prompt texts of a request body (tolerant: bad JSON gives empty info)."""
    info = RequestInfo()
    try:
        data = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return info
    if not isinstance(data, dict):
        return info
    info.model = str(data.get("model") or "")
    info.stream = bool(data.get("stream"))
    user = data.get("user")
    if provider == "anthropic":
        meta = data.get("metadata")
        user = meta.get("user_id") if isinstance(meta, dict) else None
    info.user = str(user) if isinstance(user, str | int) else ""
    texts = info.texts
    if kind == "chat" or kind == "messages":
        system = data.get("system")
        if system is not None:
            _content_texts(system, texts)
        for m in data.get("messages") or []:
            if isinstance(m, dict):
                info.messages += 1
                if m.get("name"):
                    info.names += 1
                    texts.append(str(m["name"]))
                _content_texts(m.get("content"), texts)
                for call in m.get("tool_calls") or []:
                    fn = call.get("function") if isinstance(call, dict) else None
                    if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                        texts.append(fn["arguments"])
        if kind == "messages":
            info.messages = 0  # Anthropic framing is not published; count the text only
    elif kind == "responses":
        if isinstance(data.get("instructions"), str):
            texts.append(data["instructions"])
        inp = data.get("input")
        if isinstance(inp, str):
            texts.append(inp)
        elif isinstance(inp, list):
            for item in inp:
                if isinstance(item, dict):
                    _content_texts(item.get("content"), texts)
                    if isinstance(item.get("output"), str):
                        texts.append(item["output"])
                    if isinstance(item.get("arguments"), str):
                        texts.append(item["arguments"])
    else:  # embeddings, completions
        inp = data.get("input") if kind == "embeddings" else data.get("prompt")
        if isinstance(inp, str):
            texts.append(inp)
        elif isinstance(inp, list):
            for item in inp:
                if isinstance(item, str):
                    texts.append(item)
                elif isinstance(item, int):
                    info.token_inputs += 1
                elif isinstance(item, list):
                    info.token_inputs += len(item)
    return info


# -- usage objects ------------------------------------------------------------------------------------


def _int(d: Any, key: str) -> int:
    v = d.get(key) if isinstance(d, dict) else None
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0


def openai_tokens(usage: dict[str, Any]) -> dict[str, int]:
    """Normalised tokens of an OpenAI ``usage`` object (Chat Completions, Responses or Embeddings)."""
    if "prompt_tokens" in usage:  # chat / completions / embeddings
        ind = usage.get("prompt_tokens_details") or {}
        outd = usage.get("completion_tokens_details") or {}
        inp, out = _int(usage, "prompt_tokens"), _int(usage, "completion_tokens")
    else:  # Responses API
        ind = usage.get("input_tokens_details") or {}
        outd = usage.get("output_tokens_details") or {}
        inp, out = _int(usage, "input_tokens"), _int(usage, "output_tokens")
    cached = min(_int(ind, "cached_tokens"), inp)
    return {
        "input_tokens": inp,
        "cached_input_tokens": cached,
        "cache_write_tokens": min(_int(ind, "cache_write_tokens"), inp - cached),
        "cache_write_1h_tokens": 0,
        "output_tokens": out,
        "reasoning_tokens": min(_int(outd, "reasoning_tokens"), out),
    }


def anthropic_tokens(usage: dict[str, Any]) -> dict[str, int]:
    """Normalised tokens of an Anthropic ``usage``: input includes cache reads and writes."""
    read = _int(usage, "cache_read_input_tokens")
    write = _int(usage, "cache_creation_input_tokens")
    out = _int(usage, "output_tokens")
    return {
        "input_tokens": _int(usage, "input_tokens") + read + write,
        "cached_input_tokens": read,
        "cache_write_tokens": write,
        "cache_write_1h_tokens": min(_int(usage.get("cache_creation"), "ephemeral_1h_input_tokens"), write),
        "output_tokens": out,
        "reasoning_tokens": min(_int(usage.get("output_tokens_details"), "thinking_tokens"), out),
    }


def _openai_tier(value: Any) -> str:
    return _OPENAI_TIERS.get(value, "") if isinstance(value, str) else ""


def _anthropic_tier(usage: Any) -> str:
    if not isinstance(usage, dict):
        return ""
    if usage.get("speed") == "fast":
        return "fast"
    return _ANTHROPIC_TIERS.get(usage.get("service_tier"), "")


# -- responses ----------------------------------------------------------------------------------------


def parse_json_response(provider: str, kind: str, body: bytes) -> ParsedResponse:
    """Id, model, usage and service tier of a non-streamed response body."""
    res = ParsedResponse()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        res.complete = False
        return res
    if not isinstance(data, dict):
        return res
    res.response_id = str(data.get("id") or "")
    res.model = str(data.get("model") or "")
    usage = data.get("usage")
    if provider == "anthropic":
        if isinstance(usage, dict):
            res.tokens = anthropic_tokens(usage)
            res.service_tier = _anthropic_tier(usage)
        _anthropic_content_texts(data.get("content"), res.output_texts)
    else:
        if isinstance(usage, dict):
            res.tokens = openai_tokens(usage)
        res.service_tier = _openai_tier(data.get("service_tier"))
        if kind == "chat":
            for ch in data.get("choices") or []:
                msg = ch.get("message") if isinstance(ch, dict) else None
                if isinstance(msg, dict) and isinstance(msg.get("content"), str):
                    res.output_texts.append(msg["content"])
    return res


def _anthropic_content_texts(content: Any, out: list[str]) -> None:
    for block in content or []:
        if isinstance(block, dict):
            for key in ("text", "thinking"):
                if isinstance(block.get(key), str):
                    out.append(block[key])


def iter_sse_data(body: bytes):
    """The ``data`` payloads of a server-sent-event stream (multi-line data joined with newlines)."""
    data: list[bytes] = []
    for line in body.splitlines():
        if not line:
            if data:
                yield b"\n".join(data)
                data = []
        elif line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
    if data:  # a stream cut before its final blank line: the event may be incomplete
        yield b"\n".join(data)


def parse_sse_response(provider: str, kind: str, body: bytes) -> ParsedResponse:
    """Id, model, usage and generated text of a streamed (SSE) response, complete or cut off."""
    res = ParsedResponse(complete=False)
    texts = res.output_texts
    start_usage: dict[str, Any] | None = None
    delta_usage: dict[str, Any] | None = None
    for payload in iter_sse_data(body):
        if payload == b"[DONE]":
            res.complete = True
            continue
        try:
            ev = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(ev, dict):
            continue
        if provider == "anthropic":
            t = ev.get("type")
            if t == "message_start":
                msg = ev.get("message") or {}
                res.response_id = str(msg.get("id") or "")
                res.model = str(msg.get("model") or "")
                start_usage = msg.get("usage") if isinstance(msg.get("usage"), dict) else None
            elif t == "content_block_delta":
                d = ev.get("delta") or {}
                for key in ("text", "partial_json", "thinking"):
                    if isinstance(d.get(key), str):
                        texts.append(d[key])
            elif t == "message_delta":
                if isinstance(ev.get("usage"), dict):
                    delta_usage = ev["usage"]
            elif t == "message_stop":
                res.complete = True
        elif kind == "responses":
            t = ev.get("type") or ""
            if t.endswith(".delta") and isinstance(ev.get("delta"), str):
                texts.append(ev["delta"])
            resp = ev.get("response")
            if isinstance(resp, dict):
                res.response_id = str(resp.get("id") or res.response_id)
                res.model = str(resp.get("model") or res.model)
                if t in ("response.completed", "response.incomplete", "response.failed"):
                    res.complete = True
                    if isinstance(resp.get("usage"), dict):
                        res.tokens = openai_tokens(resp["usage"])
                    res.service_tier = _openai_tier(resp.get("service_tier"))
        else:  # chat / completions chunks
            if not res.response_id:
                res.response_id = str(ev.get("id") or "")
                res.model = str(ev.get("model") or "")
            if ev.get("service_tier"):
                res.service_tier = _openai_tier(ev.get("service_tier"))
            for ch in ev.get("choices") or []:
                if not isinstance(ch, dict):
                    continue
                if isinstance(ch.get("text"), str):
                    texts.append(ch["text"])
                d = ch.get("delta")
                if isinstance(d, dict):
                    if isinstance(d.get("content"), str):
                        texts.append(d["content"])
                    for call in d.get("tool_calls") or []:
                        fn = call.get("function") if isinstance(call, dict) else None
                        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                            texts.append(fn["arguments"])
            if isinstance(ev.get("usage"), dict):
                res.tokens = openai_tokens(ev["usage"])
    if provider == "anthropic" and start_usage is not None:
        merged = {**start_usage, **(delta_usage or {})}
        if delta_usage is not None:
            res.tokens = anthropic_tokens(merged)
        else:
            res.input_only = anthropic_tokens({**start_usage, "output_tokens": 0})
        res.service_tier = _anthropic_tier(merged)
    return res


def parse_response(provider: str, kind: str, body: bytes, content_type: str) -> ParsedResponse:
    if "text/event-stream" in content_type.lower() or body.lstrip()[:6] in (b"data:", b"event:"):
        return parse_sse_response(provider, kind, body)
    return parse_json_response(provider, kind, body)


def make_record(
    call: CapturedCall,
    req: RequestInfo,
    resp: ParsedResponse,
    tokens: dict[str, int],
    *,
    estimated: bool,
) -> UsageRecord:
    """The usage record of a call. Dedup key: provider + response id (so the proxy and instrumentation
    recording the same call store it once), else a random uuid."""
    user = call.user or req.user or (f"key:{call.api_key_hash}" if call.api_key_hash else "")
    key = (
        f"{call.provider}:resp:{resp.response_id}"
        if resp.response_id
        else f"{call.provider}:call:{uuid.uuid4()}"
    )
    return UsageRecord(
        ts=int(call.ts),
        provider=call.provider,
        model=resp.model or req.model or "unknown",
        dedup_key=key,
        source=call.source,
        user=user,
        project=call.project,
        api_key_id=call.api_key_hash,
        service_tier=resp.service_tier,
        tokens_estimated=estimated,
        **tokens,
    )


# -- rate-limit headers -------------------------------------------------------------------------------

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|h|m|s)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(value: str) -> float | None:
    """Seconds of a Go duration string (``6m0s``, ``1s``, ``12ms``, ``1h2m3.5s``); None when malformed."""
    v = value.strip()
    if not v:
        return None
    if v == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _GO_DURATION.finditer(v):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return total if pos == len(v) else None


def parse_reset(value: str, now: float) -> float | None:
    """Seconds until a reset given as a Go duration (OpenAI) or an RFC 3339 time (Anthropic)."""
    secs = parse_go_duration(value)
    if secs is not None:
        return secs
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - now, 0.0)


def _num(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def rate_limit_snapshot(
    provider: str, headers: list[tuple[str, str]], *, now: float, model: str = "", api_key_hash: str = ""
) -> dict[str, Any] | None:
    """A ``ratelimit_snapshots`` row from a response's rate-limit headers, or None when it had none."""
    h = {k.lower(): v for k, v in headers}
    if not any(k.startswith(RATE_LIMIT_PREFIXES) for k in h):
        return None
    if provider == "anthropic":
        name = "anthropic-ratelimit-{kind}-{what}"
    else:
        name = "x-ratelimit-{what}-{kind}"

    def get(kind: str, what: str) -> str | None:
        return h.get(name.format(kind=kind, what=what))

    def reset(kind: str) -> float | None:
        v = get(kind, "reset")
        return parse_reset(v, now) if v is not None else None

    return {
        "ts": int(now),
        "provider": provider,
        "model": model,
        "api_key_hash": api_key_hash,
        "limit_requests": _num(get("requests", "limit")),
        "remaining_requests": _num(get("requests", "remaining")),
        "reset_requests_s": reset("requests"),
        "limit_tokens": _num(get("tokens", "limit")),
        "remaining_tokens": _num(get("tokens", "remaining")),
        "reset_tokens_s": reset("tokens"),
        "raw_json": orjson.dumps(dict(sorted(h.items()))).decode(),
    }
