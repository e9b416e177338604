"""Anthropic Admin API usage report / cost report sync against a local server speaking the documented format."""

from __future__ import annotations

import sqlite3

import pytest

from openai_monitor.errors import CollectorError
from openai_monitor.pricing.engine import Pricer
from openai_monitor.service.sync import RetryPolicy, sync_anthropic
from openai_monitor.sources.anthropic_usage import parse_cost_page, parse_usage_page
from openai_monitor.store import Store
from tests.fake_provider_api import ANTHROPIC_KEY, FakeProviderAPI

DAY0 = 1_763_251_200  # 2025-11-16T00:00:00Z
NOW = DAY0 + 2 * 86400 + 10 * 3600
MODEL = "claude-sonnet-4-5-20250929"


def _usage(api: FakeProviderAPI) -> list[dict]:
    events = []
    for i in range(20):
        events.append(
            {
                "ts": DAY0 + i * 3 * 3600,
                "model": MODEL,
                "workspace_id": "wrkspc_a",
                "api_key_id": "apikey_1",
                "service_tier": "standard",
                "context_window": "0-200k",
                "uncached_input_tokens": 100 + i,
                "cache_read_input_tokens": 1000,
                "cw5m": 300,
                "cw1h": 20,
                "output_tokens": 50 + i,
            }
        )
    api.anthropic_usage.extend(events)
    return events


def test_documented_example_page_parses() -> None:
    # The response example of "Get Messages Usage Report" / "Get Cost Report" in Anthropic's API reference.
    usage = {
        "data": [
            {
                "starting_at": "2025-08-01T00:00:00Z",
                "ending_at": "2025-08-02T00:00:00Z",
                "results": [
                    {
                        "account_id": "user_01WCz1FkmYMm4gnmykNKUu3Q",
                        "api_key_id": "apikey_01Rj2N8SVvo6BePZj99NhmiT",
                        "cache_creation": {
                            "ephemeral_1h_input_tokens": 1000,
                            "ephemeral_5m_input_tokens": 500,
                        },
                        "cache_read_input_tokens": 200,
                        "context_window": "0-200k",
                        "inference_geo": "global",
                        "model": "claude-opus-5",
                        "output_tokens": 500,
                        "server_tool_use": {"web_search_requests": 10},
                        "service_account_id": "svac_01Hk3R9TWxq7CfQak00OiVw4",
                        "service_tier": "standard",
                        "uncached_input_tokens": 1500,
                        "workspace_id": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
                    }
                ],
            }
        ],
        "has_more": True,
        "next_page": "page_MjAyNS0wNS0xNFQwMDowMDowMFo=",
    }
    [(start, end, rec, window)] = list(parse_usage_page(usage))
    assert (end - start, window) == (86400, "0-200k")
    # Normalised input = 1500 uncached + 200 read + 500 + 1000 written.
    assert (rec.input_tokens, rec.cached_input_tokens, rec.cache_write_tokens, rec.cache_write_1h_tokens) == (
        3200,
        200,
        1500,
        1000,
    )
    assert (rec.output_tokens, rec.project, rec.api_key_id, rec.requests) == (
        500,
        "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
        "apikey_01Rj2N8SVvo6BePZj99NhmiT",
        0,
    )
    cost = {
        "data": [
            {
                "ending_at": "2025-08-02T00:00:00Z",
                "starting_at": "2025-08-01T00:00:00Z",
                "results": [
                    {
                        "amount": "123.78912",
                        "context_window": "0-200k",
                        "cost_type": "tokens",
                        "currency": "USD",
                        "description": "Claude Opus 5 Usage - Input Tokens",
                        "inference_geo": "global",
                        "model": "claude-opus-5",
                        "service_tier": "standard",
                        "token_type": "uncached_input_tokens",
                        "workspace_id": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
                    }
                ],
            }
        ],
        "has_more": False,
        "next_page": None,
    }
    [(_, _, c)] = list(parse_cost_page(cost))
    assert c.amount == pytest.approx(1.2378912) and c.amount_usd == pytest.approx(
        1.2378912
    )  # cents -> dollars
    assert (c.model, c.line_item, c.project) == (
        "claude-opus-5",
        "Claude Opus 5 Usage - Input Tokens",
        "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
    )


def test_sync_usage_and_costs_incrementally(db_url: str) -> None:
    store = Store(db_url)
    with FakeProviderAPI(now=NOW, page_buckets=4) as api:
        events = _usage(api)
        api.anthropic_costs.append(
            {
                "ts": DAY0 + 5,
                "workspace_id": "wrkspc_a",
                "description": "Claude Sonnet 4.5 Usage - Output Tokens",
                "model": MODEL,
                "amount": "250.5",
            }
        )
        res = sync_anthropic(
            store, ANTHROPIC_KEY, base_url=api.url, since=DAY0, bucket="1h", now=NOW, pricer=Pricer()
        )
        first_q = api.log[0]["query"]
        assert first_q["starting_at"] == ["2025-11-16T00:00:00Z"]
        assert first_q["group_by[]"] == [
            "model",
            "workspace_id",
            "api_key_id",
            "service_tier",
            "context_window",
        ]
        assert (
            sum(1 for e in api.log if e["path"].endswith("/messages")) == 15
        )  # 59 hourly buckets (the last one open) / 4 per page
        again = sync_anthropic(store, ANTHROPIC_KEY, base_url=api.url, bucket="1h", now=NOW, pricer=Pricer())
    assert res.endpoints[0].records == len(events) and again.new_records == 0
    with sqlite3.connect(db_url.split(":///", 1)[1]) as c:
        inp, cached, cw, cw1h, out, n_null = c.execute(
            "SELECT SUM(input_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), SUM(cache_write_1h_tokens), "
            "SUM(output_tokens), SUM(cost_usd IS NULL) FROM usage_records WHERE provider = 'anthropic'"
        ).fetchone()
        billed = c.execute(
            "SELECT model, amount_usd, project FROM billed_costs WHERE provider = 'anthropic'"
        ).fetchall()
    assert inp == sum(e["uncached_input_tokens"] + 1000 + 320 for e in events)
    assert (cached, cw, cw1h) == (1000 * 20, 320 * 20, 20 * 20)
    assert out == sum(e["output_tokens"] for e in events) and n_null == 0
    assert billed == [(MODEL, pytest.approx(2.505), "wrkspc_a")]


def test_priced_at_the_base_tier_despite_unknown_request_count(db_url: str) -> None:
    store = Store(db_url)
    with FakeProviderAPI(now=NOW) as api:
        # 300k input tokens in one daily bucket from many small (0-200k) requests.
        api.anthropic_usage.append(
            {
                "ts": DAY0 + 60,
                "model": MODEL,
                "context_window": "0-200k",
                "uncached_input_tokens": 300_000,
                "output_tokens": 1000,
            }
        )
        sync_anthropic(
            store, ANTHROPIC_KEY, base_url=api.url, since=DAY0, now=NOW, pricer=Pricer(), costs=False
        )
    price = Pricer().lookup("anthropic", MODEL, DAY0)
    with sqlite3.connect(db_url.split(":///", 1)[1]) as c:
        cost = c.execute("SELECT cost_usd FROM usage_records").fetchone()[0]
    assert cost == pytest.approx((300_000 * price.input + 1000 * price.output) / 1e6)


def test_invalid_key_and_retry(db_url: str, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(db_url)
    with FakeProviderAPI(now=NOW) as api:
        with pytest.raises(CollectorError, match="oaim keys set anthropic-admin"):
            sync_anthropic(store, "sk-ant-api03-ordinary", base_url=api.url, since=DAY0, now=NOW)
        api.fail_next.append((529, {"retry-after-ms": "50"}))
        _usage(api)
        res = sync_anthropic(
            store,
            ANTHROPIC_KEY,
            base_url=api.url,
            since=DAY0,
            now=NOW,
            costs=False,
            retry=RetryPolicy(base_delay_s=5.0),
        )
        assert res.retries == 1 and res.endpoints[0].records > 0
        gap = api.log[2]["t"] - api.log[1]["t"]  # log[0] is the rejected key
        assert 0.04 <= gap < 2.0  # retry-after-ms (50 ms) honoured, not the 5 s backoff
        monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", "sk-ant-wrong")
        r = run_cli("sync", "anthropic", "--base-url", api.url, "--since", "2025-11-16")
        assert r.exit_code == 5 and "ANTHROPIC_ADMIN_KEY" in r.stderr and "sk-ant-wrong" not in r.stderr
