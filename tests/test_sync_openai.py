"""OpenAI Usage/Costs API sync against a local server speaking the documented format (127.0.0.1)."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from typing import Any

import pytest

from openai_monitor.errors import CollectorError
from openai_monitor.service.sync import RetryPolicy, SyncResult, sync_openai
from openai_monitor.sources.openai_usage import model_of_line_item
from openai_monitor.store import Store
from tests.fake_provider_api import OPENAI_KEY, FakeProviderAPI

DAY0 = 1_763_251_200  # 2025-11-16T00:00:00Z
NOW = DAY0 + 2 * 86400 + 15 * 3600 + 1800  # day 2, 15:30 UTC
FAST = RetryPolicy(base_delay_s=0.01)


def _completions(api: FakeProviderAPI) -> list[dict]:
    """Hourly completions over 2.6 days, two models, two projects, one batch group."""
    events = []
    t = DAY0 + 1800
    i = 0
    while t < NOW:
        events.append(
            {
                "endpoint": "completions",
                "ts": t,
                "model": "gpt-4o-mini-2024-07-18" if i % 3 else "gpt-4o-2024-08-06",
                "project_id": "proj_a" if i % 2 else "proj_b",
                "user_id": "user_1",
                "api_key_id": "key_1",
                "batch": i % 7 == 0,
                "input_tokens": 1000 + i,
                "input_cached_tokens": 200,
                "output_tokens": 100 + i,
                "input_cache_write_tokens": 50,
                "num_model_requests": 2,
            }
        )
        t += 3600
        i += 1
    api.openai_usage.extend(events)
    return events


def _sync_completions(store: Store, api: FakeProviderAPI, **kw: Any) -> SyncResult:
    """Sync the completions usage endpoint only (no costs) from ``api`` at ``NOW``; ``kw`` overrides."""
    return sync_openai(
        store,
        OPENAI_KEY,
        **{"base_url": api.url, "now": NOW, "endpoints": ["completions"], "costs": False, **kw},
    )


def _db_totals(store: Store) -> tuple[int, int, int, int, int]:
    with sqlite3.connect(store.url.split(":///", 1)[1]) as c:
        return c.execute(
            "SELECT COUNT(*), SUM(input_tokens), SUM(cached_input_tokens), SUM(output_tokens), SUM(requests) "
            "FROM usage_records WHERE source = 'openai-usage-api' AND bucket_seconds > 0 AND model LIKE 'gpt-4o%'"
        ).fetchone()


def _rollup_input(store: Store) -> int:
    with sqlite3.connect(store.url.split(":///", 1)[1]) as c:
        return c.execute(
            "SELECT SUM(input_tokens) FROM rollup WHERE grain = 'd' AND dim = 'model'"
        ).fetchone()[0]


def test_hourly_sync_follows_next_page_across_mid_day_pages(db_url: str) -> None:
    store = Store(db_url)
    with FakeProviderAPI(now=NOW, page_buckets=5) as api:
        events = _completions(api)
        res = _sync_completions(store, api, since=DAY0, bucket="1h")
        pages = [e for e in api.log if e["path"].endswith("/completions")]
    # 64 hourly buckets (day 0 00:00 .. day 2 15:00) in pages of 5: 13 pages, most ending mid-day.
    assert len(pages) == 13
    assert pages[1]["query"]["page"] and pages[0]["query"]["group_by"] == [
        "model",
        "project_id",
        "user_id",
        "api_key_id",
        "batch",
    ]
    ep = res.endpoints[0]
    assert ep.buckets == 64 and ep.records == len(events) and ep.new_records == len(events)
    n, inp, cached, out, reqs = _db_totals(store)
    assert n == len(events)
    assert inp == sum(e["input_tokens"] for e in events)
    assert cached == 200 * len(events) and out == sum(e["output_tokens"] for e in events)
    assert reqs == 2 * len(events)
    assert _rollup_input(store) == inp
    with sqlite3.connect(db_url.split(":///", 1)[1]) as c:
        row = c.execute(
            "SELECT provider, bucket_seconds, project, user_name, api_key_id, cache_write_tokens, "
            "service_tier FROM usage_records WHERE ts = ?",
            (DAY0,),
        ).fetchone()
    assert row == ("openai", 3600, "proj_b", "user_1", "key_1", 50, "batch")  # i=0: batch, proj_b


def test_old_payload_with_only_six_fields(db_url: str) -> None:
    store = Store(db_url)
    with FakeProviderAPI(now=NOW, old_payload=True) as api:
        events = _completions(api)
        res = _sync_completions(store, api, since=DAY0, bucket="1d")
    assert res.endpoints[0].skipped == 0
    n, inp, cached, out, _ = _db_totals(store)
    assert inp == sum(e["input_tokens"] for e in events) and out == sum(e["output_tokens"] for e in events)
    with sqlite3.connect(db_url.split(":///", 1)[1]) as c:
        assert c.execute(
            "SELECT SUM(cache_write_tokens), COUNT(DISTINCT bucket_seconds) FROM usage_records"
        ).fetchone() == (0, 1)


def test_resync_adds_nothing_and_a_growing_partial_bucket_is_replaced(db_url: str) -> None:
    store = Store(db_url)
    with FakeProviderAPI(now=NOW) as api:
        events = _completions(api)
        first = _sync_completions(store, api, since=DAY0, bucket="1d")
        assert first.endpoints[0].partial_buckets == 1
        assert first.endpoints[0].resume_ts == DAY0 + 2 * 86400  # today's bucket is still open
        before = _db_totals(store)

        second = _sync_completions(store, api, bucket="1d")
        assert second.new_records == 0
        assert api.log[-1]["query"]["start_time"] == [str(DAY0 + 2 * 86400)]  # resumed, not from --since
        assert _db_totals(store) == before

        # More usage lands in today's bucket (same groups): the stored partial copy is replaced.
        extra = dict(events[-1], ts=NOW - 60, input_tokens=5000, output_tokens=700, input_cached_tokens=0)
        api.openai_usage.append(extra)
        api.now = NOW + 600
        third = _sync_completions(store, api, bucket="1d", now=NOW + 600)
        assert third.new_records == 0 and third.endpoints[0].replaced >= 1
        n, inp, _, out, _ = _db_totals(store)
        assert n == before[0]
        assert inp == sum(e["input_tokens"] for e in events) + 5000
        assert out == sum(e["output_tokens"] for e in events) + 700
        assert _rollup_input(store) == inp


def test_429_with_retry_after_is_honoured(db_url: str) -> None:
    store = Store(db_url)
    with FakeProviderAPI(now=NOW) as api:
        events = _completions(api)
        api.fail_next.append((429, {"retry-after": "1"}))
        res = _sync_completions(store, api, since=DAY0, retry=RetryPolicy(base_delay_s=0.01))
        first, second = api.log[0], api.log[1]
    assert first["status"] == 429 and second["status"] == 200
    assert second["t"] - first["t"] >= 0.95  # the server's 1 s, not the 0.01 s backoff
    assert res.retries == 1
    assert _db_totals(store)[1] == sum(e["input_tokens"] for e in events)


def test_500_then_success(db_url: str) -> None:
    store = Store(db_url)
    with FakeProviderAPI(now=NOW) as api:
        _completions(api)
        api.fail_next.extend([(500, {}), (503, {})])
        res = _sync_completions(store, api, since=DAY0, retry=FAST)
    assert res.retries == 2 and [e["status"] for e in api.log[:3]] == [500, 503, 200]
    assert res.endpoints[0].records > 0


def test_persistent_5xx_gives_up_with_a_clear_error(db_url: str) -> None:
    store = Store(db_url)
    with FakeProviderAPI(now=NOW) as api:
        api.fail_next.extend([(502, {})] * 10)
        with pytest.raises(CollectorError, match="kept failing.*again later"):
            _sync_completions(store, api, since=DAY0, retry=RetryPolicy(attempts=3, base_delay_s=0.01))
        assert len(api.log) == 3


def test_costs_are_parsed_per_line_item_and_a_day_is_replaced(db_url: str) -> None:
    store = Store(db_url)
    with FakeProviderAPI(now=NOW) as api:
        api.openai_costs += [
            {"ts": DAY0 + 10, "project_id": "proj_a", "line_item": "gpt-4o-2024-08-06, input", "value": 0.06},
            {
                "ts": DAY0 + 20,
                "project_id": "proj_a",
                "line_item": "gpt-4o-2024-08-06, output",
                "value": 0.15,
            },
            {"ts": DAY0 + 30, "project_id": "proj_b", "line_item": "web search tool calls", "value": 0.025},
            {
                "ts": DAY0 + 2 * 86400 + 5,
                "project_id": "proj_a",
                "line_item": "gpt-4o-mini, cached input",
                "value": 0.01,
            },
        ]
        sync_openai(store, OPENAI_KEY, base_url=api.url, since=DAY0, now=NOW, endpoints=[], costs=True)
        api.openai_costs.append(
            {
                "ts": DAY0 + 2 * 86400 + 9,
                "project_id": "proj_a",
                "line_item": "gpt-4o-mini, cached input",
                "value": 0.02,
            }
        )
        res = sync_openai(store, OPENAI_KEY, base_url=api.url, now=NOW, endpoints=[], costs=True)
        assert api.log[-1]["query"]["start_time"] == [str(DAY0 + 2 * 86400)]
        assert api.log[-1]["query"]["group_by"] == ["line_item", "project_id"]
    assert res.endpoints[0].billed_rows == 1
    with sqlite3.connect(db_url.split(":///", 1)[1]) as c:
        rows = c.execute(
            "SELECT day, project, line_item, model, amount, currency, amount_usd FROM billed_costs "
            "ORDER BY day, line_item"
        ).fetchall()
    assert rows == [
        (DAY0, "proj_a", "gpt-4o-2024-08-06, input", "gpt-4o-2024-08-06", 0.06, "USD", 0.06),
        (DAY0, "proj_a", "gpt-4o-2024-08-06, output", "gpt-4o-2024-08-06", 0.15, "USD", 0.15),
        (DAY0, "proj_b", "web search tool calls", "", 0.025, "USD", 0.025),
        (
            DAY0 + 2 * 86400,
            "proj_a",
            "gpt-4o-mini, cached input",
            "gpt-4o-mini",
            pytest.approx(0.03),
            "USD",
            pytest.approx(0.03),
        ),
    ]


def test_model_of_line_item() -> None:
    assert model_of_line_item("gpt-4o, input") == "gpt-4o"
    assert model_of_line_item("gpt-4o-mini-2024-07-18, cached input") == "gpt-4o-mini-2024-07-18"
    assert (
        model_of_line_item("ft:gpt-4o-mini-2024-07-18:org::abc, output")
        == "ft:gpt-4o-mini-2024-07-18:org::abc"
    )
    assert model_of_line_item("web search tool calls") == ""
    assert model_of_line_item("") == ""


def test_images_are_counted_but_never_priced_as_zero(db_url: str) -> None:
    from openai_monitor.pricing.engine import Pricer

    store = Store(db_url)
    with FakeProviderAPI(now=NOW) as api:
        api.openai_usage.append(
            {
                "endpoint": "images",
                "ts": DAY0 + 100,
                "model": "gpt-image-1",
                "images": 4,
                "num_model_requests": 4,
                "project_id": "proj_a",
            }
        )
        _completions(api)
        sync_openai(
            store,
            OPENAI_KEY,
            base_url=api.url,
            since=DAY0,
            now=NOW,
            endpoints=["images", "completions"],
            costs=False,
            pricer=Pricer(),
        )
    with sqlite3.connect(db_url.split(":///", 1)[1]) as c:
        assert c.execute(
            "SELECT requests, cost_usd, input_tokens FROM usage_records WHERE model = 'gpt-image-1'"
        ).fetchone() == (4, None, 0)
        unpriced = c.execute(
            "SELECT COUNT(*) FROM usage_records WHERE model LIKE 'gpt-4o%' AND cost_usd IS NULL"
        ).fetchone()[0]
    assert unpriced == 0
    assert store.reprice(Pricer()) == 0  # still not priced at $0 by a later reprice


def test_changing_bucket_width_is_refused(db_url: str) -> None:
    store = Store(db_url)
    with FakeProviderAPI(now=NOW) as api:
        _completions(api)
        _sync_completions(store, api, since=DAY0)
        with pytest.raises(CollectorError, match="--bucket 1d"):
            _sync_completions(store, api, bucket="1h")


# -- CLI -------------------------------------------------------------------------------------------------


def _since_arg() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() - 2 * 86400))


def test_cli_invalid_key_names_the_fix(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeProviderAPI(now=int(time.time())) as api:
        for bad in ("sk-admin-wrong", "sk-proj-ordinary-project-key"):
            monkeypatch.setenv("OPENAI_ADMIN_KEY", bad)
            r = run_cli("sync", "openai", "--base-url", api.url, "--since", _since_arg())
            assert r.exit_code == 5
            err = r.stderr.strip()
            assert len(err.splitlines()) == 1 and "Traceback" not in r.output
            assert (
                "oaim keys set openai-admin" in err
                and "OPENAI_ADMIN_KEY" in err
                and "use an admin key" in err
            )
            assert bad not in err


def test_cli_without_key_and_unreachable_host(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    r = run_cli("sync", "openai")
    assert r.exit_code == 2 and "oaim keys set openai-admin" in r.stderr
    monkeypatch.setenv("OPENAI_ADMIN_KEY", OPENAI_KEY)
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_cli("sync", "openai", "--base-url", f"http://127.0.0.1:{port}/v1", "--since", _since_arg())
    assert r.exit_code == 5 and "--base-url" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_key_store_then_sync_json(run_cli, oaim_home, db_url: str) -> None:
    r = run_cli("keys", "set", "openai-admin", input=OPENAI_KEY + "\n")
    assert r.exit_code == 0 and OPENAI_KEY not in r.output
    path = oaim_home / "keys.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    listed = run_cli("keys", "list")
    assert "openai-admin" in listed.stdout and "sha256:" in listed.stdout and OPENAI_KEY not in listed.stdout
    now = int(time.time())
    with FakeProviderAPI(now=now) as api:
        api.openai_usage.append(
            {
                "endpoint": "completions",
                "ts": now - 3600,
                "model": "gpt-4o-mini",
                "input_tokens": 1234,
                "output_tokens": 56,
                "num_model_requests": 3,
            }
        )
        api.openai_costs.append(
            {"ts": now - 3600, "project_id": "proj_a", "line_item": "gpt-4o-mini, input", "value": 0.5}
        )
        r = run_cli("sync", "openai", "--base-url", api.url, "--since", _since_arg(), "--json")
        assert r.exit_code == 0, r.output
        import json

        data = json.loads(r.stdout)
        assert data["new_records"] == 1
        assert {e["endpoint"] for e in data["endpoints"]} >= {"completions", "images", "costs"}
        r2 = run_cli("sync", "openai", "--base-url", api.url)
        assert r2.exit_code == 0 and "0 new usage records" in r2.stdout
    raw = (oaim_home / "usage.db").read_bytes()
    assert OPENAI_KEY.encode() not in raw
    assert run_cli("keys", "rm", "openai-admin").exit_code == 0
    assert run_cli("keys", "rm", "openai-admin").exit_code == 2


def test_key_store_refuses_a_world_readable_file(run_cli, oaim_home) -> None:
    assert run_cli("keys", "set", "openai-admin", input="sk-admin-x\n").exit_code == 0
    os.chmod(oaim_home / "keys.json", 0o644)
    r = run_cli("keys", "list")
    assert r.exit_code == 2 and "chmod 600" in r.stderr
