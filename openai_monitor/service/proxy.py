"""The recording proxy: a transparent local HTTP proxy in front of the OpenAI and Anthropic APIs.

Clients set ``OPENAI_BASE_URL=http://127.0.0.1:8787/v1`` or ``ANTHROPIC_BASE_URL=http://127.0.0.1:8787``.
Routing, by path: ``/openai/...`` and ``/anthropic/...`` choose the upstream explicitly (the prefix is
removed); otherwise ``/v1/messages...``, ``/v1/complete`` or an ``anthropic-version`` header mean
Anthropic and everything else OpenAI. The request path and query are forwarded byte for byte; when an
upstream URL already ends in ``/v1`` and the path starts with ``/v1/``, one ``/v1`` is dropped.

Transparency: methods, bodies, status codes, reasons and headers pass through unchanged, except the
hop-by-hop headers (RFC 9110 section 7.6.1), ``Host``/``Content-Length`` (recomputed for the same bytes)
and the proxy's own ``X-OAIM-User`` / ``X-OAIM-Project`` attribution headers, which are removed before
forwarding so internal user names never reach the provider. Bodies are not decompressed (the upstream's
``Content-Encoding`` reaches the client as sent), no cookies are kept, nothing is retried. Event streams
(and any body without a length) are relayed chunk by chunk as they arrive. Upstream errors are returned
as they are; only when the upstream cannot be reached at all does the proxy answer itself (502, with a JSON
error in the OpenAI shape naming the fix).

Recording happens after the response is sent or while it streams, by handing a
:class:`~openai_monitor.sources.responses.CapturedCall` to the :class:`Recorder` queue; parsing, estimation,
pricing and database writes all run on the recorder's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, DummyCookieJar, TCPConnector, web
from multidict import CIMultiDict
from yarl import URL

from ..errors import ConfigError
from ..sources.responses import (
    RATE_LIMIT_PREFIXES,
    RETRY_HEADERS,
    CapturedCall,
    api_key_from_headers,
    hash_api_key,
    usage_kind,
)

log = logging.getLogger("openai_monitor.proxy")

DEFAULT_UPSTREAMS = {"openai": "https://api.openai.com", "anthropic": "https://api.anthropic.com"}
USER_HEADER = "x-oaim-user"
PROJECT_HEADER = "x-oaim-project"
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_REQUEST_DROP = HOP_BY_HOP | {"host", "content-length", USER_HEADER, PROJECT_HEADER}
_RESPONSE_DROP = HOP_BY_HOP | {"content-length"}
MAX_REQUEST_BYTES = 256 * 1024 * 1024  # image / audio / file uploads can be large
# Buffer (rather than stream) bodies with a known length up to this size: one write, less overhead.
_BUFFER_LIMIT = 8 * 1024 * 1024


def parse_upstreams(specs: list[str] | None) -> dict[str, str]:
    """``["openai=URL", "anthropic=URL"]`` over the defaults. Raises ConfigError naming the fix."""
    out = dict(DEFAULT_UPSTREAMS)
    for spec in specs or []:
        for part in spec.split():
            name, sep, url = part.partition("=")
            name = name.strip().lower()
            if not sep or name not in out:
                raise ConfigError(
                    f"bad --upstream {part!r}; write provider=URL with provider openai or anthropic, "
                    "e.g. --upstream openai=http://127.0.0.1:9000"
                )
            parsed = URL(url.strip())
            if parsed.scheme not in ("http", "https") or not parsed.host:
                raise ConfigError(f"bad upstream URL {url!r} for {name}; give an http(s) URL with a host")
            out[name] = url.strip().rstrip("/")
    return out


def route(raw_path: str, has_anthropic_version: bool) -> tuple[str, str]:
    """(provider, path to forward) of a request's raw path (query included)."""
    for prefix in ("openai", "anthropic"):
        lead = f"/{prefix}"
        if raw_path == lead or raw_path.startswith((lead + "/", lead + "?")):
            rest = raw_path[len(lead) :]
            return prefix, rest if rest.startswith("/") else "/" + rest
    path = raw_path.split("?", 1)[0]
    if path.startswith("/v1/messages") or path == "/v1/complete" or has_anthropic_version:
        return "anthropic", raw_path
    return "openai", raw_path


def upstream_url(base: str, path: str) -> str:
    if base.endswith("/v1") and (path.startswith("/v1/") or path == "/v1"):
        path = path[3:]
    return base + path


class ProxyHandler:
    """The aiohttp handler: forward, relay, capture."""

    def __init__(self, recorder: Any, upstreams: dict[str, str]) -> None:
        self.recorder = recorder
        self.upstreams = upstreams
        self.session: ClientSession | None = None
        self.calls = 0
        self.in_flight = 0

    async def open(self, _app: web.Application | None = None) -> None:
        self.session = ClientSession(
            connector=TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True),
            auto_decompress=False,  # pass bytes through exactly as the upstream encoded them
            cookie_jar=DummyCookieJar(),  # a proxy must not replay one client's cookies to another's calls
            timeout=ClientTimeout(total=None, sock_connect=30, sock_read=None),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )

    async def close(self, _app: web.Application | None = None) -> None:
        if self.session is not None:
            await self.session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        try:
            return await self._handle(request)
        finally:
            self.in_flight -= 1

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started = time.time()
        in_headers = request.headers
        raw_path = request.raw_path
        provider, path = route(raw_path, "anthropic-version" in in_headers)
        base = self.upstreams[provider]
        method = request.method
        body = await request.read()
        headers = CIMultiDict((k, v) for k, v in in_headers.items() if k.lower() not in _REQUEST_DROP)
        assert self.session is not None
        try:
            upstream = await self.session.request(
                method,
                URL(upstream_url(base, path), encoded=True),
                headers=headers,
                data=body if body else None,
                allow_redirects=False,
            )
        except (ClientError, OSError, asyncio.TimeoutError) as e:
            log.warning("upstream %s unreachable: %s", base, e)
            return web.json_response(
                {
                    "error": {
                        "message": f"oaim proxy: cannot reach the {provider} upstream {base} ({e}); "
                        f"check the network or the --upstream {provider}=URL option",
                        "type": "proxy_upstream_unreachable",
                    }
                },
                status=502,
            )
        bare_path = path.split("?", 1)[0]
        capture = usage_kind(provider, method, bare_path) is not None
        complete = True
        async with upstream:
            up_headers = upstream.headers
            out_headers = CIMultiDict(
                (k, v) for k, v in up_headers.items() if k.lower() not in _RESPONSE_DROP
            )
            ctype = up_headers.get("Content-Type", "")
            length = upstream.content_length
            if length is not None and length <= _BUFFER_LIMIT and "text/event-stream" not in ctype:
                data = await upstream.read()
                resp: web.StreamResponse = web.Response(
                    status=upstream.status, reason=upstream.reason, headers=out_headers, body=data
                )
                # Send before recording so that waking the recorder thread cannot delay this response.
                await resp.prepare(request)
                await resp.write_eof()
            else:
                resp = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=out_headers)
                await resp.prepare(request)
                chunks: list[bytes] = []
                complete = False
                try:
                    async for chunk in upstream.content.iter_any():
                        if capture:
                            chunks.append(chunk)
                        await resp.write(chunk)
                    complete = True
                    await resp.write_eof()
                except (ClientError, OSError, asyncio.TimeoutError) as e:
                    # Client went away or the upstream broke off: the client must see a cut stream too.
                    log.info("stream %s %s ended early: %s", method, bare_path, e)
                    if request.transport is not None:
                        request.transport.close()
                except asyncio.CancelledError:
                    self._record(
                        request, provider, bare_path, method, started, upstream, body, chunks, False, capture
                    )
                    raise
                data = b"".join(chunks)
            self._record(
                request, provider, bare_path, method, started, upstream, body, data, complete, capture
            )
        return resp

    def _record(
        self,
        request: web.Request,
        provider: str,
        path: str,
        method: str,
        started: float,
        upstream: Any,
        body: bytes,
        data: bytes | list[bytes],
        complete: bool,
        capture: bool = True,
    ) -> None:
        up_headers = upstream.headers
        rate = [
            (k, v)
            for k, v in up_headers.items()
            if k.lower().startswith(RATE_LIMIT_PREFIXES) or k.lower() in RETRY_HEADERS
        ]
        if not capture and not rate:
            return
        self.calls += 1
        h = request.headers
        self.recorder.submit(
            CapturedCall(
                provider=provider,
                path=path,
                ts=started,
                status=upstream.status,
                request_body=body if capture else b"",
                response_body=(b"".join(data) if isinstance(data, list) else data) if capture else b"",
                content_type=up_headers.get("Content-Type", ""),
                content_encoding=up_headers.get("Content-Encoding", ""),
                rate_headers=rate,
                complete=complete,
                user=h.get(USER_HEADER, ""),
                project=h.get(PROJECT_HEADER, ""),
                api_key_hash=hash_api_key(api_key_from_headers(h.get)),
                source="proxy",
                method=method,
            )
        )


HANDLER_KEY = web.AppKey("oaim_proxy_handler", ProxyHandler)


def make_app(recorder: Any, upstreams: dict[str, str]) -> web.Application:
    handler = ProxyHandler(recorder, upstreams)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES, handler_args={"tcp_keepalive": True})
    app[HANDLER_KEY] = handler
    app.on_startup.append(handler.open)
    app.on_cleanup.append(handler.close)
    app.router.add_route("*", "/{tail:.*}", handler.handle)
    return app


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (about 1.6x the throughput here, benchmarks/proxy.py), unless OAIM_NO_UVLOOP."""
    if not os.environ.get("OAIM_NO_UVLOOP"):
        try:
            import uvloop  # type: ignore[import-not-found]

            return uvloop.new_event_loop()
        except ImportError:
            pass
    return asyncio.new_event_loop()


async def _start(recorder: Any, upstreams: dict[str, str], host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(make_app(recorder, upstreams), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}; choose another --port") from e
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, bound


def _handler(runner: web.AppRunner | None) -> ProxyHandler | None:
    app = runner.app if runner is not None else None
    return app[HANDLER_KEY] if app is not None else None


class ProxyServer:
    """The proxy on its own event-loop thread (tests, benchmarks, embedding). ``port=0`` picks a free one."""

    def __init__(self, recorder: Any, upstreams: dict[str, str], host: str = "127.0.0.1", port: int = 0):
        self.recorder = recorder
        self.upstreams = upstreams
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ProxyServer:
        ready = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = self._loop = _new_loop()
            asyncio.set_event_loop(loop)
            try:
                self._runner, self.port = loop.run_until_complete(
                    _start(self.recorder, self.upstreams, self.host, self.port)
                )
            except BaseException as e:  # reported to the starting thread
                error.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="oaim-proxy", daemon=True)
        self._thread.start()
        ready.wait(30)
        if error:
            raise error[0]
        return self

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until no call is in progress and every finished call is written to the store."""
        deadline = time.monotonic() + timeout
        handler = _handler(self._runner)
        while handler is not None and handler.in_flight and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.recorder.flush(max(deadline - time.monotonic(), 0.1))

    def stop(self) -> None:
        """Stop serving (in-flight calls finish first) and close the recorder, flushing its queue."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self.recorder.close()

    def __enter__(self) -> ProxyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_proxy(
    recorder: Any,
    upstreams: dict[str, str],
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, then finish in-flight calls and flush the recorder."""
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    runner: web.AppRunner | None = None
    try:
        runner, bound = loop.run_until_complete(_start(recorder, upstreams, host, port))
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        recorder.start()
        if on_ready is not None:
            on_ready(bound)
        loop.run_until_complete(stop.wait())
    finally:
        if runner is not None:
            loop.run_until_complete(runner.cleanup())
        loop.close()
        recorder.close()
