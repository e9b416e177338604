"""A local fake of the OpenAI and Anthropic HTTP APIs on 127.0.0.1, for proxy and instrumentation tests.

Speaks the documented shapes (formats.md section 3): Chat Completions, Responses, Embeddings, Anthropic
Messages, each streamed (SSE) or not, with rate-limit headers. Request headers steer it:

* ``X-Fake-Id``: the response id (default: a fresh one per call).
* ``X-Fake-Status``: answer with this error status (429 adds ``retry-after``) in the provider's error shape.
* ``X-Fake-Cut``: stream only this many events, then drop the connection (a cut-off stream).
* ``X-Fake-Delay-Ms``: pause between streamed events.

Embeddings are gzip-compressed when the client accepts gzip, as the real API does.
Run standalone: ``python tests/fake_llm_upstream.py --port 9000``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import json
import threading
import uuid

from aiohttp import web

CHAT_USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 192, "audio_tokens": 0},
}
STREAM_USAGE = {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}
RESPONSES_USAGE = {
    "input_tokens": 5000,
    "input_tokens_details": {"cached_tokens": 4096},
    "output_tokens": 800,
    "output_tokens_details": {"reasoning_tokens": 512},
    "total_tokens": 5800,
}
EMBEDDING_USAGE = {"prompt_tokens": 8, "total_tokens": 8}
ANTHROPIC_USAGE = {
    "input_tokens": 15,
    "cache_creation_input_tokens": 2089,
    "cache_read_input_tokens": 16399,
    "cache_creation": {"ephemeral_5m_input_tokens": 1089, "ephemeral_1h_input_tokens": 1000},
    "output_tokens": 445,
    "service_tier": "standard",
}
ANTHROPIC_STREAM_START_USAGE = {
    "input_tokens": 8,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 100,
    "output_tokens": 3,
    "service_tier": "standard",
}
ANTHROPIC_STREAM_DELTA_USAGE = {"output_tokens": 12}
STREAM_TEXT = ["Hello", ", streaming", " world", "!"]
REPLY_TEXT = "Hello from the fake upstream."

OPENAI_RATE_HEADERS = {
    "x-ratelimit-limit-requests": "5000",
    "x-ratelimit-limit-tokens": "450000",
    "x-ratelimit-remaining-requests": "4999",
    "x-ratelimit-remaining-tokens": "448500",
    "x-ratelimit-reset-requests": "12ms",
    "x-ratelimit-reset-tokens": "6m0s",
}
ANTHROPIC_RATE_HEADERS = {
    "anthropic-ratelimit-requests-limit": "4000",
    "anthropic-ratelimit-requests-remaining": "3999",
    "anthropic-ratelimit-requests-reset": "2100-01-01T00:00:00Z",
    "anthropic-ratelimit-tokens-limit": "2000000",
    "anthropic-ratelimit-tokens-remaining": "1981000",
    "anthropic-ratelimit-tokens-reset": "2100-01-01T00:00:00Z",
}

_counter = itertools.count(1)


def _new_id(request: web.Request, prefix: str) -> str:
    return request.headers.get("X-Fake-Id") or f"{prefix}{next(_counter)}_{uuid.uuid4().hex[:12]}"


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _error(request: web.Request, provider: str, status: int) -> web.Response:
    headers = dict(OPENAI_RATE_HEADERS if provider == "openai" else ANTHROPIC_RATE_HEADERS)
    headers["x-request-id"] = "req_fake_error"
    if status == 429:
        headers["retry-after"] = "7"
    if provider == "anthropic":
        body = {"type": "error", "error": {"type": "rate_limit_error", "message": f"fake {status}"}}
    else:
        body = {
            "error": {"message": f"fake {status}", "type": "requests", "param": None, "code": "rate_limit"}
        }
    return web.Response(status=status, body=_dumps(body), content_type="application/json", headers=headers)


async def _stream(request: web.Request, events: list[bytes], headers: dict[str, str]) -> web.StreamResponse:
    resp = web.StreamResponse(
        status=200, headers={**headers, "Content-Type": "text/event-stream; charset=utf-8"}
    )
    await resp.prepare(request)
    cut = int(request.headers.get("X-Fake-Cut", "0") or 0)
    delay = float(request.headers.get("X-Fake-Delay-Ms", "0") or 0) / 1000
    for i, ev in enumerate(events):
        if cut and i >= cut:
            assert request.transport is not None
            request.transport.close()  # drop the connection mid-stream
            return resp
        await resp.write(ev)
        if delay:
            await asyncio.sleep(delay)
    await resp.write_eof()
    return resp


def _sse(data: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + _dumps(data) + b"\n\n"


async def chat(request: web.Request) -> web.StreamResponse:
    if request.headers.get("X-Fake-Status"):
        return _error(request, "openai", int(request.headers["X-Fake-Status"]))
    req = await request.json()
    model = req.get("model", "gpt-4o-mini")
    rid = _new_id(request, "chatcmpl-")
    if not req.get("stream"):
        body = {
            "id": rid,
            "object": "chat.completion",
            "created": 1730000000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": REPLY_TEXT, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": CHAT_USAGE,
            "service_tier": "default",
        }
        return web.Response(body=_dumps(body), content_type="application/json", headers=OPENAI_RATE_HEADERS)
    base = {"id": rid, "object": "chat.completion.chunk", "created": 1730000000, "model": model}
    include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
    events = []
    for i, piece in enumerate(STREAM_TEXT):
        delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        if include_usage:
            chunk["usage"] = None
        events.append(_sse(chunk))
    end = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    if include_usage:
        end["usage"] = None
    events.append(_sse(end))
    if include_usage:
        events.append(_sse({**base, "choices": [], "usage": STREAM_USAGE}))
    events.append(b"data: [DONE]\n\n")
    return await _stream(request, events, OPENAI_RATE_HEADERS)


async def responses(request: web.Request) -> web.StreamResponse:
    if request.headers.get("X-Fake-Status"):
        return _error(request, "openai", int(request.headers["X-Fake-Status"]))
    req = await request.json()
    model = req.get("model", "gpt-4o-mini")
    rid = _new_id(request, "resp_")
    done = {
        "id": rid,
        "object": "response",
        "created_at": 1730000000,
        "status": "completed",
        "model": model,
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": REPLY_TEXT, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": RESPONSES_USAGE,
    }
    if not req.get("stream"):
        return web.Response(body=_dumps(done), content_type="application/json", headers=OPENAI_RATE_HEADERS)
    created = {**done, "status": "in_progress", "output": [], "usage": None}
    item = {"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    events = [
        _sse({"type": "response.created", "response": created, "sequence_number": 0}, "response.created"),
        _sse(
            {"type": "response.output_item.added", "output_index": 0, "item": item, "sequence_number": 1},
            "response.output_item.added",
        ),
        _sse(
            {
                "type": "response.content_part.added",
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "part": part,
                "sequence_number": 2,
            },
            "response.content_part.added",
        ),
    ]
    for i, piece in enumerate(STREAM_TEXT):
        ev = {
            "type": "response.output_text.delta",
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": piece,
            "logprobs": [],
            "sequence_number": i + 3,
        }
        events.append(_sse(ev, "response.output_text.delta"))
    events.append(
        _sse({"type": "response.completed", "response": done, "sequence_number": 9}, "response.completed")
    )
    return await _stream(request, events, OPENAI_RATE_HEADERS)


async def embeddings(request: web.Request) -> web.Response:
    if request.headers.get("X-Fake-Status"):
        return _error(request, "openai", int(request.headers["X-Fake-Status"]))
    req = await request.json()
    body = _dumps(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.125]}],
            "model": req.get("model", "text-embedding-3-small"),
            "usage": EMBEDDING_USAGE,
        }
    )
    headers = dict(OPENAI_RATE_HEADERS)
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        body = gzip.compress(body, mtime=0)
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, content_type="application/json", headers=headers)


async def messages(request: web.Request) -> web.StreamResponse:
    if request.headers.get("X-Fake-Status"):
        return _error(request, "anthropic", int(request.headers["X-Fake-Status"]))
    req = await request.json()
    model = req.get("model", "claude-sonnet-4-6")
    rid = _new_id(request, "msg_")
    msg = {
        "id": rid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": REPLY_TEXT}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": ANTHROPIC_USAGE,
    }
    if not req.get("stream"):
        return web.Response(body=_dumps(msg), content_type="application/json", headers=ANTHROPIC_RATE_HEADERS)
    start = {**msg, "content": [], "stop_reason": None, "usage": ANTHROPIC_STREAM_START_USAGE}
    events = [
        _sse({"type": "message_start", "message": start}, "message_start"),
        _sse(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        ),
    ]
    for piece in STREAM_TEXT:
        events.append(
            _sse(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
                "content_block_delta",
            )
        )
    events += [
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": ANTHROPIC_STREAM_DELTA_USAGE,
            },
            "message_delta",
        ),
        _sse({"type": "message_stop"}, "message_stop"),
    ]
    return await _stream(request, events, ANTHROPIC_RATE_HEADERS)


async def models(request: web.Request) -> web.Response:
    body = {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "owned_by": "openai"}]}
    return web.Response(body=_dumps(body), content_type="application/json")


async def echo_headers(request: web.Request) -> web.Response:
    """What the upstream received: lets tests check what the proxy forwards."""
    seen = {"headers": [[k, v] for k, v in request.headers.items()], "path_qs": request.raw_path}
    return web.Response(body=_dumps(seen), content_type="application/json")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/responses", responses)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/v1/models", models)
    app.router.add_route("*", "/v1/echo-headers", echo_headers)
    return app


class FakeUpstream:
    """The fake API on a background event-loop thread: ``with FakeUpstream() as up: up.url``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeUpstream:
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            runner = web.AppRunner(make_app(), access_log=None, handle_signals=False)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port)
            loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self._thread.start()
        ready.wait(30)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    args = ap.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
