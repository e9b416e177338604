"""Record usage from OpenAI and Anthropic SDK clients in-process.

::

    from openai_monitor import instrument
    client = openai.OpenAI()
    instrument(client)                      # from now on, every call is recorded
    with instrument(anthropic.Anthropic(), user="alice") as claude:
        claude.messages.create(...)         # recorded; the database is flushed on exit

Works with ``openai.OpenAI`` / ``AsyncOpenAI`` and ``anthropic.Anthropic`` / ``AsyncAnthropic`` (any client
with an httpx-style ``_client``). A response event hook on the SDK's HTTP client wraps the raw response
stream in a pass-through tee: the SDK reads exactly the bytes it would have read, and the copy goes to the
same parsing and :class:`~openai_monitor.service.recorder.Recorder` as the recording proxy (so streamed
calls, calls cut off by the caller, usage-less streams and rate-limit headers are handled the same way).
Nothing is written on the caller's thread: records are parsed and stored by the recorder's thread, and
a database error is logged, never raised into the caller's code.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from .sources.responses import (
    RATE_LIMIT_PREFIXES,
    RETRY_HEADERS,
    CapturedCall,
    api_key_from_headers,
    hash_api_key,
    usage_kind,
)

__all__ = ["instrument", "Instrumentation"]

log = logging.getLogger("openai_monitor.instrument")

_shared: dict[str, Any] = {}
_shared_lock = threading.Lock()


def _shared_recorder(database_url: str | None) -> Any:
    """One recorder per database per process, closed (flushed) at interpreter exit."""
    from .config import default_database_url, load_settings
    from .service.pricing import make_pricer
    from .service.recorder import Recorder
    from .store import Store

    url = database_url or default_database_url()
    with _shared_lock:
        rec = _shared.get(url)
        if rec is None:
            rec = Recorder(Store(url), make_pricer(load_settings())).start()
            _shared[url] = rec
            atexit.register(rec.close)
        return rec


def _http_lib(http_client: Any) -> Any:
    """The httpx-compatible package (``httpx`` or ``httpx2``) the SDK's HTTP client comes from."""
    for cls in type(http_client).__mro__:
        root = cls.__module__.split(".", 1)[0]
        if root.startswith("httpx"):
            return importlib.import_module(root)
    raise TypeError(
        f"{type(http_client).__name__} is not an httpx client; instrument() supports the openai and "
        "anthropic SDK clients"
    )


class Instrumentation:
    """Hooks installed on one SDK client. A context manager: on exit the hooks are removed and the
    recorded calls flushed to the database."""

    def __init__(
        self, client: Any, recorder: Any, *, user: str = "", project: str = "", source: str = "sdk"
    ) -> None:
        http_client = getattr(client, "_client", None)
        if http_client is None or not hasattr(http_client, "event_hooks"):
            raise TypeError(
                f"cannot instrument {type(client).__name__}: pass an openai.OpenAI/AsyncOpenAI or "
                "anthropic.Anthropic/AsyncAnthropic client"
            )
        self.client = client
        self.recorder = recorder
        self.user = user
        self.project = project
        self.source = source
        self.provider = "anthropic" if type(client).__module__.startswith("anthropic") else "openai"
        self._http = http_client
        lib = _http_lib(http_client)
        self._async = isinstance(http_client, lib.AsyncClient)
        self._sync_base = lib.SyncByteStream
        self._async_base = lib.AsyncByteStream
        self._hook: Callable[..., Any] = self._async_hook if self._async else self._sync_hook
        self.installed = False

    # -- lifecycle ---------------------------------------------------------------------------------------
    def install(self) -> Instrumentation:
        if not self.installed:
            self._http.event_hooks["response"].append(self._hook)
            self.installed = True
        return self

    def uninstall(self) -> None:
        if self.installed:
            hooks = self._http.event_hooks["response"]
            if self._hook in hooks:
                hooks.remove(self._hook)
            self.installed = False

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until the calls recorded so far are in the database."""
        return self.recorder.flush(timeout)

    def __enter__(self) -> Any:
        self.install()
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.uninstall()
        self.flush()

    # -- hooks -------------------------------------------------------------------------------------------
    def _prepare(self, response: Any) -> tuple[CapturedCall, bool] | None:
        request = response.request
        path = request.url.path
        kind = usage_kind(self.provider, request.method, path)
        rate = [
            (k, v)
            for k, v in response.headers.items()
            if k.lower().startswith(RATE_LIMIT_PREFIXES) or k.lower() in RETRY_HEADERS
        ]
        if kind is None and not rate:
            return None
        try:
            body = request.content if kind else b""
        except Exception:  # a streamed upload: its bytes are gone, estimation falls back to the response
            body = b""
        h = request.headers
        call = CapturedCall(
            provider=self.provider,
            path=path,
            ts=time.time(),
            status=response.status_code,
            request_body=body,
            response_body=b"",
            content_type=response.headers.get("content-type", ""),
            content_encoding=response.headers.get("content-encoding", ""),
            rate_headers=rate,
            user=self.user or h.get("x-oaim-user", ""),
            project=self.project or h.get("x-oaim-project", ""),
            api_key_hash=hash_api_key(api_key_from_headers(h.get)),
            source=self.source,
            method=request.method,
        )
        return call, kind is not None

    def _finish(self, call: CapturedCall, chunks: list[bytes], complete: bool) -> None:
        call.response_body = b"".join(chunks)
        call.complete = complete
        self.recorder.submit(call)

    def _attach(self, response: Any, make_tee: Callable[..., Any], base: type) -> None:
        try:
            prepared = self._prepare(response)
            if prepared is None:
                return
            call, capture = prepared
            if not capture:
                self.recorder.submit(call)
                return
            response.stream = make_tee(base, response.stream, call, self._finish)
        except Exception:  # instrumentation must never break the caller's request
            log.exception("could not instrument a response; it is not recorded")

    def _sync_hook(self, response: Any) -> None:
        self._attach(response, _make_sync_tee, self._sync_base)

    async def _async_hook(self, response: Any) -> None:
        self._attach(response, _make_async_tee, self._async_base)


class _TeeEnd:
    """What both tees share: collect the chunks and hand them to ``finish`` exactly once."""

    def __init__(self, call: CapturedCall, finish: Callable[..., None]) -> None:
        self.chunks: list[bytes] = []
        self.done = False
        self._call = call
        self._finish_call = finish

    def _end(self, complete: bool) -> None:
        if not self.done:
            self.done = True
            try:
                self._finish_call(self._call, self.chunks, complete)
            except Exception:
                log.exception("could not queue a call for recording")


def _make_sync_tee(base: type, inner: Any, call: CapturedCall, finish: Callable[..., None]) -> Any:
    class SyncTee(_TeeEnd, base):  # type: ignore[misc, valid-type]
        def __iter__(self) -> Iterator[bytes]:
            for chunk in inner:
                self.chunks.append(chunk)
                yield chunk
            self._end(True)

        def close(self) -> None:
            try:
                inner.close()
            finally:
                self._end(False)

    return SyncTee(call, finish)


def _make_async_tee(base: type, inner: Any, call: CapturedCall, finish: Callable[..., None]) -> Any:
    class AsyncTee(_TeeEnd, base):  # type: ignore[misc, valid-type]
        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in inner:
                self.chunks.append(chunk)
                yield chunk
            self._end(True)

        async def aclose(self) -> None:
            try:
                await inner.aclose()
            finally:
                self._end(False)

    return AsyncTee(call, finish)


def instrument(
    client: Any,
    *,
    user: str = "",
    project: str = "",
    database_url: str | None = None,
    recorder: Any = None,
) -> Instrumentation:
    """Record every API call ``client`` makes (installed immediately; also usable as ``with``).

    ``user`` / ``project`` attribute the calls (default: the request's ``X-OAIM-User`` header, the OpenAI
    ``user`` field or Anthropic ``metadata.user_id``, else the API key's hash). Records go to
    ``database_url`` (default: ``OAIM_DATABASE_URL`` or the usage database under ``OAIM_HOME``), or to a
    :class:`~openai_monitor.service.recorder.Recorder` you pass.
    """
    rec = recorder if recorder is not None else _shared_recorder(database_url)
    return Instrumentation(client, rec, user=user, project=project).install()
