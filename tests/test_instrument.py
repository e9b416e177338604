"""SDK instrumentation: real openai / anthropic clients (sync and async) against the fake upstream."""

from __future__ import annotations

import asyncio
import sqlite3

import anthropic
import openai
import pytest
from fake_llm_upstream import REPLY_TEXT, STREAM_TEXT, FakeUpstream

from openai_monitor import instrument
from openai_monitor.pricing.engine import Pricer
from openai_monitor.service.estimate import count_tokens
from openai_monitor.service.recorder import Recorder
from openai_monitor.store import Store

MSG = [{"role": "user", "content": "hi there"}]


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def recorder(db_url):
    rec = Recorder(Store(db_url), Pricer()).start()
    yield rec
    rec.close()


def records(db_url: str) -> list[dict]:
    con = sqlite3.connect(db_url.split(":///", 1)[1])
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM usage_records ORDER BY id")]
    finally:
        con.close()


def tokens(r: dict) -> tuple[int, int, int, int]:
    return r["input_tokens"], r["cached_input_tokens"], r["output_tokens"], r["tokens_estimated"]


def test_sync_openai_plain_and_streaming(upstream, recorder, db_url):
    client = openai.OpenAI(base_url=upstream.url + "/v1", api_key="sk-inst", max_retries=0)
    with instrument(client, recorder=recorder, user="carol", project="p1") as c:
        out = c.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        assert out.choices[0].message.content == REPLY_TEXT  # the caller sees the normal result
        chunks = list(
            c.chat.completions.create(
                model="gpt-4o-mini", messages=MSG, stream=True, stream_options={"include_usage": True}
            )
        )
        assert chunks[-1].usage.completion_tokens == 10
        text = "".join(
            ch.choices[0].delta.content or ""
            for ch in c.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
            if ch.choices
        )
        assert text == "".join(STREAM_TEXT)
        emb = c.embeddings.create(model="text-embedding-3-small", input="abc")  # gzip on the wire
        assert emb.usage.prompt_tokens == 8
    plain, streamed, no_usage, embedding = records(db_url)
    assert tokens(plain) == (1200, 1024, 300, 0)
    assert plain["dedup_key"] == f"openai:resp:{out.id}" and plain["source"] == "sdk"
    assert (plain["user_name"], plain["project"]) == ("carol", "p1")
    assert tokens(streamed) == (19, 0, 10, 0)
    assert no_usage["tokens_estimated"] == 1
    assert no_usage["output_tokens"] == count_tokens("".join(STREAM_TEXT), "gpt-4o-mini")[0]
    assert (embedding["input_tokens"], embedding["model"]) == (8, "text-embedding-3-small")
    # the context manager removed its hook: later calls are not recorded
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    recorder.flush()
    assert len(records(db_url)) == 4
    assert client._client.event_hooks["response"] == []


def test_sync_anthropic_plain_and_streaming(upstream, recorder, db_url):
    client = anthropic.Anthropic(base_url=upstream.url, api_key="sk-ant-inst", max_retries=0)
    inst = instrument(client, recorder=recorder)
    msg = client.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=MSG)
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=20, messages=MSG) as s:
        assert s.get_final_text() == "".join(STREAM_TEXT)
    inst.flush()
    inst.uninstall()
    plain, streamed = records(db_url)
    assert tokens(plain) == (15 + 2089 + 16399, 16399, 445, 0)
    assert plain["dedup_key"] == f"anthropic:resp:{msg.id}"
    assert plain["api_key_id"].startswith("sha256:") and plain["user_name"] == "key:" + plain["api_key_id"]
    assert tokens(streamed) == (108, 100, 12, 0)


def test_async_clients_of_both_sdks(upstream, recorder, db_url):
    async def run() -> None:
        oa = openai.AsyncOpenAI(base_url=upstream.url + "/v1", api_key="k", max_retries=0)
        an = anthropic.AsyncAnthropic(base_url=upstream.url, api_key="k", max_retries=0)
        with instrument(oa, recorder=recorder), instrument(an, recorder=recorder):
            r = await oa.responses.create(model="gpt-4o", input="hello")
            assert r.usage.input_tokens == 5000
            stream = await oa.chat.completions.create(
                model="gpt-4o-mini", messages=MSG, stream=True, stream_options={"include_usage": True}
            )
            async for _ in stream:
                pass
            m = await an.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=MSG)
            assert m.content[0].text == REPLY_TEXT
            async with an.messages.stream(model="claude-sonnet-4-6", max_tokens=20, messages=MSG) as s:
                assert await s.get_final_text() == "".join(STREAM_TEXT)
        await oa.close()
        await an.close()

    asyncio.run(run())
    rs = records(db_url)
    assert [(r["provider"], tokens(r)) for r in rs] == [
        ("openai", (5000, 4096, 800, 0)),
        ("openai", (19, 0, 10, 0)),
        ("anthropic", (18503, 16399, 445, 0)),
        ("anthropic", (108, 100, 12, 0)),
    ]


def test_stream_abandoned_by_caller_is_recorded_as_estimated(upstream, recorder, db_url):
    client = openai.OpenAI(base_url=upstream.url + "/v1", api_key="k", max_retries=0)
    with instrument(client, recorder=recorder):
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MSG,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"X-Fake-Delay-Ms": "20"},
        )
        for _chunk in stream:
            break  # the caller stops reading after the first chunk
        stream.close()
    [r] = records(db_url)
    assert r["tokens_estimated"] == 1  # the usage chunk never arrived
    assert r["input_tokens"] == count_tokens("hi there", "gpt-4o-mini")[0] + 6


def test_errors_pass_to_the_caller_and_bill_nothing(upstream, recorder, db_url):
    client = openai.OpenAI(base_url=upstream.url + "/v1", api_key="k", max_retries=0)
    with instrument(client, recorder=recorder):
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="m", messages=MSG, extra_headers={"X-Fake-Status": "429"})
    assert records(db_url) == []
    assert recorder.stats.passthrough == 1 and recorder.stats.snapshots == 1


def test_default_recorder_writes_to_the_configured_database(upstream, db_url, monkeypatch):
    monkeypatch.setenv("OAIM_DATABASE_URL", db_url)
    client = openai.OpenAI(base_url=upstream.url + "/v1", api_key="k", max_retries=0)
    with instrument(client):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    [r] = records(db_url)
    assert r["input_tokens"] == 1200 and r["cost_usd"] is not None


def test_rejects_objects_that_are_not_sdk_clients(recorder):
    with pytest.raises(TypeError, match="openai.OpenAI"):
        instrument(object(), recorder=recorder)
