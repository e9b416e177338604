"""The recording proxy with the real openai / anthropic SDKs against a fake upstream on 127.0.0.1."""

from __future__ import annotations

import calendar
import json
import logging
import sqlite3
import threading
import time

import anthropic
import httpx2 as httpx
import openai
import pytest
from fake_llm_upstream import (
    ANTHROPIC_USAGE,
    CHAT_USAGE,
    REPLY_TEXT,
    STREAM_TEXT,
    FakeUpstream,
)

from openai_monitor.errors import ConfigError
from openai_monitor.pricing.engine import Pricer
from openai_monitor.service.estimate import count_tokens
from openai_monitor.service.proxy import ProxyServer, parse_upstreams, route, upstream_url
from openai_monitor.service.recorder import Recorder
from openai_monitor.sources.responses import (
    anthropic_tokens,
    openai_tokens,
    parse_go_duration,
    parse_reset,
)
from openai_monitor.store import Store

MSG = [{"role": "user", "content": "hi there"}]


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def pricer():
    return Pricer()


@pytest.fixture
def proxy(upstream, db_url, pricer):
    rec = Recorder(Store(db_url), pricer)
    server = ProxyServer(rec, parse_upstreams([f"openai={upstream.url} anthropic={upstream.url}"])).start()
    yield server
    server.stop()


def records(db_url: str) -> list[dict]:
    path = db_url.split(":///", 1)[1]
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM usage_records ORDER BY id")]
    finally:
        con.close()


def snapshots(db_url: str) -> list[dict]:
    con = sqlite3.connect(db_url.split(":///", 1)[1])
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM ratelimit_snapshots ORDER BY id")]
    finally:
        con.close()


def settle(server: ProxyServer) -> None:
    assert server.drain(30)


def oai(server: ProxyServer, key: str = "sk-test-123") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def claude(server: ProxyServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="sk-ant-test", max_retries=0)


# -- SDKs through the proxy -------------------------------------------------------------------------------


def test_chat_completion_recorded_with_normalised_tokens(proxy, db_url):
    out = oai(proxy).chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert out.choices[0].message.content == REPLY_TEXT
    assert out.usage.prompt_tokens == CHAT_USAGE["prompt_tokens"]
    settle(proxy)
    [r] = records(db_url)
    assert (r["provider"], r["model"], r["source"]) == ("openai", "gpt-4o-mini", "proxy")
    # OpenAI prompt_tokens already include the cached part; completion includes reasoning.
    assert (r["input_tokens"], r["cached_input_tokens"], r["output_tokens"], r["reasoning_tokens"]) == (
        1200,
        1024,
        300,
        192,
    )
    assert r["tokens_estimated"] == 0
    assert r["dedup_key"] == f"openai:resp:{out.id}"
    assert r["cost_usd"] is not None and r["cost_usd"] > 0
    # attributed by the API key's hash, never the key itself
    assert r["api_key_id"].startswith("sha256:") and "sk-test-123" not in json.dumps(r)
    assert r["user_name"] == "key:" + r["api_key_id"]


def test_chat_stream_with_usage_chunk(proxy, db_url):
    stream = oai(proxy).chat.completions.create(
        model="gpt-4o-mini", messages=MSG, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(STREAM_TEXT)
    assert chunks[-1].usage.prompt_tokens == 19
    settle(proxy)
    [r] = records(db_url)
    assert (r["input_tokens"], r["output_tokens"], r["tokens_estimated"]) == (19, 10, 0)


def test_chat_stream_without_usage_is_estimated(proxy, db_url):
    list(oai(proxy).chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
    settle(proxy)
    [r] = records(db_url)
    assert r["tokens_estimated"] == 1
    # output: the streamed text through o200k_base; input: the prompt text plus chat framing
    # (3 tokens per message + 3 priming the reply, OpenAI cookbook).
    assert r["output_tokens"] == count_tokens("".join(STREAM_TEXT), "gpt-4o-mini")[0]
    assert r["input_tokens"] == count_tokens("hi there", "gpt-4o-mini")[0] + 3 + 3
    assert r["cost_usd"] is not None


def test_responses_api_plain_and_streamed(proxy, db_url):
    client = oai(proxy)
    client.responses.create(model="gpt-4o", input="hello")
    with client.responses.stream(model="gpt-4o", input="hello") as s:
        text = "".join(e.delta for e in s if e.type == "response.output_text.delta")
    assert text == "".join(STREAM_TEXT)
    settle(proxy)
    rs = records(db_url)
    assert len(rs) == 2
    for r in rs:
        assert (r["input_tokens"], r["cached_input_tokens"], r["output_tokens"], r["reasoning_tokens"]) == (
            5000,
            4096,
            800,
            512,
        )
        assert r["tokens_estimated"] == 0


def test_embeddings_gzip_body_passes_and_is_parsed(proxy, db_url):
    emb = oai(proxy).embeddings.create(model="text-embedding-3-small", input="abc")
    assert emb.data[0].embedding == [0.25, -0.5, 0.125]
    settle(proxy)
    [r] = records(db_url)
    assert (r["model"], r["input_tokens"], r["output_tokens"]) == ("text-embedding-3-small", 8, 0)


def test_anthropic_messages_input_includes_cache_tokens(proxy, db_url):
    msg = claude(proxy).messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=MSG)
    assert msg.content[0].text == REPLY_TEXT
    with claude(proxy).messages.stream(model="claude-sonnet-4-6", max_tokens=50, messages=MSG) as s:
        assert s.get_final_text() == "".join(STREAM_TEXT)
    settle(proxy)
    plain, streamed = records(db_url)
    u = ANTHROPIC_USAGE
    assert (
        plain["input_tokens"]
        == 15 + 2089 + 16399
        == (u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"])
    )
    assert (plain["cached_input_tokens"], plain["cache_write_tokens"], plain["cache_write_1h_tokens"]) == (
        16399,
        2089,
        1000,
    )
    assert plain["output_tokens"] == 445
    # stream: input and cache from message_start (8 + 0 + 100), output from the cumulative message_delta
    assert (streamed["input_tokens"], streamed["cached_input_tokens"], streamed["output_tokens"]) == (
        108,
        100,
        12,
    )
    assert streamed["provider"] == "anthropic" and streamed["tokens_estimated"] == 0


def test_cut_anthropic_stream_keeps_exact_input_and_estimates_output(proxy, db_url):
    body = {"model": "claude-sonnet-4-6", "max_tokens": 50, "messages": MSG, "stream": True}
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01", "X-Fake-Cut": "3"}
    got = b""
    with httpx.Client() as c, c.stream("POST", proxy.url + "/v1/messages", json=body, headers=headers) as r:
        with pytest.raises(httpx.HTTPError):
            for chunk in r.iter_raw():
                got += chunk
    assert b"message_start" in got and b"message_stop" not in got  # the client saw the cut
    settle(proxy)
    [r] = records(db_url)
    assert r["tokens_estimated"] == 1
    assert (r["input_tokens"], r["cached_input_tokens"]) == (108, 100)
    assert r["output_tokens"] == count_tokens(STREAM_TEXT[0], "claude-sonnet-4-6")[0]


def test_upstream_errors_pass_through_unchanged(proxy, db_url, upstream):
    client = oai(proxy)
    with pytest.raises(openai.RateLimitError) as e429:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MSG, extra_headers={"X-Fake-Status": "429"}
        )
    assert e429.value.status_code == 429
    assert e429.value.response.headers["retry-after"] == "7"
    assert e429.value.body["message"] == "fake 429"
    with pytest.raises(anthropic.InternalServerError) as e500:
        claude(proxy).messages.create(
            model="claude-sonnet-4-6", max_tokens=5, messages=MSG, extra_headers={"X-Fake-Status": "500"}
        )
    assert e500.value.status_code == 500
    settle(proxy)
    assert records(db_url) == []  # errors bill nothing
    assert proxy.recorder.stats.passthrough == 2
    snaps = snapshots(db_url)
    assert any(json.loads(s["raw_json"]).get("retry-after") == "7" for s in snaps)


def test_rate_limit_snapshots(proxy, db_url):
    oai(proxy).chat.completions.create(model="gpt-4o-mini", messages=MSG)
    claude(proxy).messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=MSG)
    settle(proxy)
    by = {s["provider"]: s for s in snapshots(db_url)}
    o = by["openai"]
    assert (o["limit_requests"], o["remaining_requests"], o["limit_tokens"], o["remaining_tokens"]) == (
        5000,
        4999,
        450000,
        448500,
    )
    assert o["reset_requests_s"] == pytest.approx(0.012)  # "12ms"
    assert o["reset_tokens_s"] == pytest.approx(360.0)  # "6m0s"
    assert o["model"] == "gpt-4o-mini" and o["api_key_hash"].startswith("sha256:")
    a = by["anthropic"]
    assert (a["limit_requests"], a["remaining_tokens"]) == (4000, 1981000)
    reset_at = calendar.timegm((2100, 1, 1, 0, 0, 0))
    assert a["reset_tokens_s"] == pytest.approx(reset_at - a["ts"], abs=2)


def test_attribution_headers_recorded_and_not_forwarded(proxy, db_url, upstream):
    h = {"X-OAIM-User": "alice", "X-OAIM-Project": "search", "Authorization": "Bearer sk-a"}
    seen = httpx.get(proxy.url + "/v1/echo-headers?x=1&y=%2F", headers=h).json()
    names = {k.lower() for k, _ in seen["headers"]}
    assert "x-oaim-user" not in names and "x-oaim-project" not in names
    assert "authorization" in names
    assert seen["path_qs"] == "/v1/echo-headers?x=1&y=%2F"  # forwarded byte for byte
    oai(proxy).with_options(
        default_headers={"X-OAIM-User": "alice", "X-OAIM-Project": "search"}
    ).chat.completions.create(model="gpt-4o-mini", messages=MSG)
    oai(proxy).chat.completions.create(model="gpt-4o-mini", messages=MSG, user="bob")
    settle(proxy)
    alice, bob = records(db_url)
    assert (alice["user_name"], alice["project"]) == ("alice", "search")
    assert bob["user_name"] == "bob"


# -- transparency ---------------------------------------------------------------------------------------

_VOLATILE = {"date", "server", "transfer-encoding", "content-length", "connection", "keep-alive"}


def _raw(client: httpx.Client, url: str, method: str, body: dict | None, headers: dict) -> tuple:
    with client.stream(method, url, json=body, headers=headers) as r:
        data = b"".join(r.iter_raw())
        kept = sorted((k.lower(), v) for k, v in r.headers.multi_items() if k.lower() not in _VOLATILE)
        return r.status_code, r.reason_phrase, kept, data


@pytest.mark.parametrize(
    "method,path,body,extra",
    [
        ("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MSG}, {}),
        ("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MSG, "stream": True}, {}),
        ("POST", "/v1/responses", {"model": "gpt-4o", "input": "x", "stream": True}, {}),
        ("POST", "/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"}, {}),
        (
            "POST",
            "/v1/messages",
            {"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": MSG, "stream": True},
            {},
        ),
        ("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MSG}, {"X-Fake-Status": "429"}),
        (
            "POST",
            "/v1/messages",
            {"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": MSG},
            {"X-Fake-Status": "500"},
        ),
        ("GET", "/v1/models", None, {}),
    ],
)
def test_responses_byte_identical_with_and_without_proxy(proxy, upstream, method, path, body, extra):
    headers = {"X-Fake-Id": "fixed-id-1", "Authorization": "Bearer sk-x", "Accept-Encoding": "gzip", **extra}
    with httpx.Client() as c:
        direct = _raw(c, upstream.url + path, method, body, headers)
        proxied = _raw(c, proxy.url + path, method, body, headers)
    assert proxied == direct
    if path == "/v1/embeddings":
        assert dict(direct[2])["content-encoding"] == "gzip"  # compressed bytes relayed as they are


def test_stream_relayed_chunk_by_chunk(proxy):
    body = {"model": "gpt-4o-mini", "messages": MSG, "stream": True}
    headers = {"Authorization": "Bearer sk-x", "X-Fake-Delay-Ms": "250"}
    arrivals = []
    start = time.perf_counter()
    with (
        httpx.Client() as c,
        c.stream("POST", proxy.url + "/v1/chat/completions", json=body, headers=headers) as r,
    ):
        for _ in r.iter_raw():
            arrivals.append(time.perf_counter() - start)
    total = arrivals[-1]
    assert total > 1.2  # 6 events, 250 ms apart
    assert arrivals[0] < 0.5  # the first event arrived long before the stream finished: not buffered
    assert len(arrivals) >= 4


def test_unreachable_upstream_gives_502_naming_the_fix(db_url, pricer):
    rec = Recorder(Store(db_url), pricer)
    with ProxyServer(rec, parse_upstreams(["openai=http://127.0.0.1:9"])) as server:
        r = httpx.post(server.url + "/v1/chat/completions", json={"model": "m"})
    assert r.status_code == 502
    assert "--upstream openai=URL" in r.json()["error"]["message"]


def test_database_failure_does_not_break_the_client(upstream, db_url, pricer, caplog):
    store = Store(db_url)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE usage_records")
    rec = Recorder(store, pricer)
    with caplog.at_level(logging.ERROR, logger="openai_monitor.recorder"):
        with ProxyServer(rec, parse_upstreams([f"openai={upstream.url}"])) as server:
            out = oai(server).chat.completions.create(model="gpt-4o-mini", messages=MSG)
            assert out.choices[0].message.content == REPLY_TEXT
            stream = oai(server).chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
            assert len(list(stream)) == len(STREAM_TEXT) + 1
            assert rec.flush(30)
    assert rec.stats.failed == 2 and rec.stats.recorded == 0
    assert any("could not write" in m for m in caplog.messages)


def test_shutdown_flushes_every_queued_call(upstream, db_url, pricer):
    rec = Recorder(Store(db_url), pricer)
    server = ProxyServer(rec, parse_upstreams([f"openai={upstream.url}"])).start()
    client = oai(server)
    n, workers = 60, 6

    def work() -> None:
        for _ in range(n // workers):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    server.stop()  # no explicit flush: stopping must write what is queued
    assert len(records(db_url)) == n
    assert rec.stats.recorded == n


# -- pure parts -------------------------------------------------------------------------------------------


def test_route_and_upstream_join():
    assert route("/v1/chat/completions", False) == ("openai", "/v1/chat/completions")
    assert route("/v1/messages?beta=true", False) == ("anthropic", "/v1/messages?beta=true")
    assert route("/v1/messages/count_tokens", False)[0] == "anthropic"
    assert route("/v1/models", True) == ("anthropic", "/v1/models")  # anthropic-version header
    assert route("/openai/v1/embeddings", True) == ("openai", "/v1/embeddings")
    assert route("/anthropic/v1/models", False) == ("anthropic", "/v1/models")
    assert upstream_url("https://api.openai.com", "/v1/models") == "https://api.openai.com/v1/models"
    assert upstream_url("http://gw:1/v1", "/v1/models") == "http://gw:1/v1/models"


def test_bad_upstream_option_names_the_fix(run_cli):
    with pytest.raises(ConfigError, match="provider=URL"):
        parse_upstreams(["mistral=http://x"])
    result = run_cli("proxy", "--upstream", "openai=ftp://x")
    assert result.exit_code == 2
    assert "give an http(s) URL" in result.stderr and "Traceback" not in result.stderr


def test_go_durations_and_resets():
    assert parse_go_duration("6m0s") == 360
    assert parse_go_duration("1s") == 1
    assert parse_go_duration("12ms") == pytest.approx(0.012)
    assert parse_go_duration("1h2m3.5s") == pytest.approx(3723.5)
    assert parse_go_duration("soon") is None and parse_go_duration("5x") is None
    now = calendar.timegm((2025, 8, 21, 12, 40, 0))
    assert parse_reset("2025-08-21T12:40:59Z", now) == pytest.approx(59)
    assert parse_reset("2025-08-21T12:00:00Z", now) == 0.0  # already passed


def test_usage_normalisation_matches_formats_reference():
    # formats.md 3.1 / 3.2 / 3.4 examples
    chat = openai_tokens(CHAT_USAGE)
    assert (
        chat["input_tokens"],
        chat["cached_input_tokens"],
        chat["output_tokens"],
        chat["reasoning_tokens"],
    ) == (
        1200,
        1024,
        300,
        192,
    )
    resp = openai_tokens(
        {
            "input_tokens": 5000,
            "input_tokens_details": {"cached_tokens": 4096, "cache_write_tokens": 100},
            "output_tokens": 800,
            "output_tokens_details": {"reasoning_tokens": 512},
        }
    )
    assert (resp["input_tokens"], resp["cached_input_tokens"], resp["cache_write_tokens"]) == (
        5000,
        4096,
        100,
    )
    ant = anthropic_tokens(
        {
            "input_tokens": 15,
            "cache_creation_input_tokens": 2089,
            "cache_read_input_tokens": 16399,
            "output_tokens": 445,
        }
    )
    assert ant["input_tokens"] == 15 + 2089 + 16399
    assert (ant["cached_input_tokens"], ant["cache_write_tokens"], ant["output_tokens"]) == (16399, 2089, 445)
