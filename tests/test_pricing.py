"""Pricing engine: the arithmetic is spelled out, rates per 1M tokens from the bundled genai-prices 0.2.3
snapshot (see formats.md section 5 for the same figures from the upstream sources)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from openai_monitor.domain import UsageRecord
from openai_monitor.errors import PricingError
from openai_monitor.pricing import (
    BUNDLED_SNAPSHOT,
    Pricer,
    fetch_prices,
    infer_provider,
    load_snapshot,
    save_snapshot,
)
from openai_monitor.pricing.engine import utc_ts
from openai_monitor.pricing.snapshot import SNAPSHOT_FORMAT, build_snapshot

M = 1_000_000
TS_2025 = utc_ts(2025, 3, 1)
TS_LATE_2026 = utc_ts(2026, 11, 1)  # after genai-prices' batch / service-tier data starts (2026-10-12/14)


@pytest.fixture(scope="module")
def pricer() -> Pricer:
    return Pricer()


def rec(model: str, provider: str = "", ts: int = TS_2025, **tokens: int | str) -> UsageRecord:
    return UsageRecord(ts=ts, provider=provider, model=model, dedup_key=f"{model}-{ts}", **tokens)


def cost(pricer: Pricer, r: UsageRecord) -> float:
    usd, version = pricer.cost(r)
    assert usd is not None and version is not None
    return usd


# --- OpenAI ----------------------------------------------------------------------------------------


def test_gpt_4o(pricer: Pricer) -> None:
    r = rec("gpt-4o", "openai", input_tokens=1000, output_tokens=500)
    assert cost(pricer, r) == pytest.approx((1000 * 2.50 + 500 * 10.00) / M)


def test_gpt_4o_mini_dated_name_with_cached_input_and_inferred_provider(pricer: Pricer) -> None:
    r = rec("gpt-4o-mini-2024-07-18", "", input_tokens=10_000, cached_input_tokens=4_000, output_tokens=1_000)
    # uncached 6000 at 0.15, cached 4000 at 0.075, output at 0.60
    assert cost(pricer, r) == pytest.approx((6_000 * 0.15 + 4_000 * 0.075 + 1_000 * 0.60) / M)


def test_litellm_compact_date_is_the_same_model(pricer: Pricer) -> None:
    a = cost(pricer, rec("gpt-4o-mini-20240718", "openai", input_tokens=1000, output_tokens=10))
    assert a == pytest.approx((1000 * 0.15 + 10 * 0.60) / M)


def test_o3_price_change_on_2025_06_10(pricer: Pricer) -> None:
    tokens = {"input_tokens": 10_000, "cached_input_tokens": 2_000, "output_tokens": 1_000}
    before = rec("o3", "openai", ts=utc_ts(2025, 6, 9, 23), **tokens)
    after = rec("o3", "openai", ts=utc_ts(2025, 6, 10, 0), **tokens)
    assert cost(pricer, before) == pytest.approx((8_000 * 10 + 2_000 * 0.50 + 1_000 * 40) / M)
    assert cost(pricer, after) == pytest.approx((8_000 * 2 + 2_000 * 0.50 + 1_000 * 8) / M)
    assert pricer.lookup("openai", "o3", utc_ts(2025, 6, 10)).valid_from == "2025-06-10"
    assert pricer.lookup("openai", "o3", utc_ts(2025, 6, 9)).valid_from is None


def test_reasoning_tokens_are_priced_as_output(pricer: Pricer) -> None:
    # output_tokens already includes the 800 reasoning tokens: they pay the output rate, once.
    with_reasoning = rec(
        "o3", "openai", ts=TS_LATE_2026, input_tokens=100, output_tokens=1000, reasoning_tokens=800
    )
    assert cost(pricer, with_reasoning) == pytest.approx((100 * 2 + 1000 * 8) / M)


def test_openai_cache_write_has_no_surcharge(pricer: Pricer) -> None:
    # OpenAI publishes no cache-write price: written tokens are ordinary input (fallback, flagged).
    r = rec("gpt-4o", "openai", input_tokens=1000, cache_write_tokens=600, output_tokens=0)
    assert cost(pricer, r) == pytest.approx(1000 * 2.50 / M)
    assert "cache_write_5m" in pricer.lookup("openai", "gpt-4o", TS_2025).estimated


def test_batch_and_priority_tiers_when_the_data_has_them(pricer: Pricer) -> None:
    tokens = {"input_tokens": 1000, "output_tokens": 500}
    batch = rec("gpt-4o", "openai", ts=TS_LATE_2026, service_tier="batch", **tokens)
    priority = rec("gpt-4o", "openai", ts=TS_LATE_2026, service_tier="priority", **tokens)
    assert cost(pricer, batch) == pytest.approx((1000 * 1.25 + 500 * 5.00) / M)
    assert cost(pricer, priority) == pytest.approx((1000 * 4.25 + 500 * 17.00) / M)
    # genai-prices models batch prices only from 2026-10-14: earlier batch records pay standard rates.
    early = rec("gpt-4o", "openai", ts=TS_2025, service_tier="batch", **tokens)
    assert cost(pricer, early) == pytest.approx((1000 * 2.50 + 500 * 10.00) / M)
    tiers = dict(pricer.lookup("openai", "gpt-4o", TS_LATE_2026).variants)
    assert tiers["batch"].input == 1.25 and tiers["batch"].output == 5.0


# --- Anthropic -------------------------------------------------------------------------------------


def test_claude_sonnet_4_5_cache_read_and_5m_and_1h_writes(pricer: Pricer) -> None:
    r = rec(
        "claude-sonnet-4-5-20250929",
        "anthropic",
        input_tokens=10_000,  # normalised: includes 2000 cache reads and 3000 cache writes
        cached_input_tokens=2_000,
        cache_write_tokens=3_000,
        cache_write_1h_tokens=1_000,
        output_tokens=800,
    )
    expected = (5_000 * 3.00 + 2_000 * 0.30 + 2_000 * 3.75 + 1_000 * 6.00 + 800 * 15.00) / M
    assert cost(pricer, r) == pytest.approx(expected)


def test_claude_long_context_cliff_above_200k(pricer: Pricer) -> None:
    big = rec(
        "claude-sonnet-4-5",
        "anthropic",
        input_tokens=250_000,
        cached_input_tokens=50_000,
        output_tokens=1_000,
    )
    # Over 200k input tokens every token pays the tier rate (cliff, as genai-prices applies it).
    assert cost(pricer, big) == pytest.approx((200_000 * 6.00 + 50_000 * 0.60 + 1_000 * 22.50) / M)
    edge = rec("claude-sonnet-4-5", "anthropic", input_tokens=200_000, output_tokens=1_000)
    assert cost(pricer, edge) == pytest.approx((200_000 * 3.00 + 1_000 * 15.00) / M)


def test_claude_batch_halves_cache_rates_too(pricer: Pricer) -> None:
    r = rec(
        "claude-sonnet-4-5",
        "anthropic",
        ts=TS_LATE_2026,
        service_tier="batch",
        input_tokens=10_000,
        cached_input_tokens=2_000,
        cache_write_tokens=3_000,
        cache_write_1h_tokens=1_000,
        output_tokens=800,
    )
    expected = (5_000 * 1.50 + 2_000 * 0.15 + 2_000 * 1.875 + 1_000 * 3.00 + 800 * 7.50) / M
    assert cost(pricer, r) == pytest.approx(expected)


# --- Google and Mistral ----------------------------------------------------------------------------


def test_gemini_2_5_pro_tier_above_200k_with_litellm_prefix(pricer: Pricer) -> None:
    big = rec(
        "gemini/gemini-2.5-pro", "", input_tokens=300_000, cached_input_tokens=100_000, output_tokens=2_000
    )
    assert cost(pricer, big) == pytest.approx((200_000 * 2.50 + 100_000 * 0.25 + 2_000 * 15.00) / M)
    small = rec("gemini-2.5-pro", "google", input_tokens=100_000, output_tokens=2_000)
    assert cost(pricer, small) == pytest.approx((100_000 * 1.25 + 2_000 * 10.00) / M)


def test_bucket_record_uses_average_input_per_request_for_tiers(pricer: Pricer) -> None:
    # 2 requests of 150k input each: neither crossed 200k, so the base rate applies to the total.
    bucket = rec("gemini-2.5-pro", "google", requests=2, input_tokens=300_000, output_tokens=2_000)
    assert cost(pricer, bucket) == pytest.approx((300_000 * 1.25 + 2_000 * 10.00) / M)


def test_mistral_large_and_codestral(pricer: Pricer) -> None:
    large = rec("mistral-large-latest", "mistral", input_tokens=1000, output_tokens=500)
    assert cost(pricer, large) == pytest.approx((1000 * 2.00 + 500 * 6.00) / M)
    code = rec("codestral-latest", "", input_tokens=1000, output_tokens=500)
    assert cost(pricer, code) == pytest.approx((1000 * 0.30 + 500 * 0.90) / M)


def test_time_of_day_prices(pricer: Pricer) -> None:
    # DeepSeek's data: standard rate 00:30-16:30 UTC, off-peak otherwise.
    day = rec("deepseek-chat", "", ts=utc_ts(2025, 3, 1, 12), input_tokens=1000, output_tokens=1000)
    night = rec("deepseek-chat", "", ts=utc_ts(2025, 3, 1, 20), input_tokens=1000, output_tokens=1000)
    assert cost(pricer, day) == pytest.approx((1000 * 0.27 + 1000 * 1.10) / M)
    assert cost(pricer, night) == pytest.approx((1000 * 0.135 + 1000 * 0.55) / M)
    assert [r.cost_usd for r in pricer.apply([day, night])] == [cost(pricer, day), cost(pricer, night)]


# --- unknown models --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-4o-ultra-9000"),
        ("", "claude-sonnet-99"),
        ("openai", "gpt-4o-mini-turbo-x"),
        ("", "llama-local"),
        ("groq", "gpt-4o"),  # a host's own price list decides, not OpenAI's
        ("openai", "whisper-1"),  # priced per audio minute only: unpriced, not $0
    ],
)
def test_unknown_model_is_never_priced(pricer: Pricer, provider: str, model: str) -> None:
    r = rec(model, provider, input_tokens=1000, output_tokens=500)
    assert pricer.lookup(provider, model, TS_2025) is None
    assert pricer.cost(r) == (None, None)
    (out,) = pricer.apply([r])
    assert out.cost_usd is None and out.price_version is None


def test_fine_tune_pays_its_own_rate_not_the_base_model(pricer: Pricer) -> None:
    ft = pricer.lookup("openai", "ft:gpt-4o-mini-2024-07-18:acme::abc123", TS_2025)
    assert ft is not None and ft.model == "ft:gpt-4o-mini"
    assert (ft.input, ft.output) != (0.15, 0.60)


# --- overrides -------------------------------------------------------------------------------------


def test_override_wins_from_valid_from() -> None:
    p = Pricer(
        overrides={"gpt-4o": {"input": 1.0, "output": 2.0, "cached_input": 0.5, "valid_from": "2025-01-01"}}
    )
    tokens = {"input_tokens": 1000, "cached_input_tokens": 200, "output_tokens": 500}
    before = rec("gpt-4o-2024-08-06", "openai", ts=utc_ts(2024, 12, 31), **tokens)
    after = rec("gpt-4o-2024-08-06", "openai", ts=utc_ts(2025, 1, 1), **tokens)
    usd, version = p.cost(before)
    assert usd == pytest.approx((800 * 2.50 + 200 * 1.25 + 500 * 10.00) / M)
    assert version == p.price_version
    usd, version = p.cost(after)
    assert usd == pytest.approx((800 * 1.0 + 200 * 0.5 + 500 * 2.0) / M)
    assert version is not None and version.startswith("override:")


def test_override_prices_an_unknown_model_retroactively() -> None:
    records = [rec("acme-llm", "", input_tokens=1000, output_tokens=100)]
    assert next(Pricer().apply(records)).cost_usd is None
    p = Pricer(overrides={"acme-llm": {"input": 3, "output": 4}})
    (out,) = p.apply(records)
    assert out.cost_usd == pytest.approx((1000 * 3 + 100 * 4) / M)
    # unlisted cache read on a non-Anthropic override: the input rate (fallback policy)
    assert p.lookup("", "acme-llm", TS_2025).cached_input == 3


def test_override_restricted_to_its_provider() -> None:
    p = Pricer(overrides={"gpt-4o": {"input": 1, "output": 1, "provider": "azure"}})
    assert p.lookup("openai", "gpt-4o", TS_2025).input == 2.50
    assert p.lookup("azure", "gpt-4o", TS_2025).input == 1


@pytest.mark.parametrize(
    "spec",
    [
        {"output": 1},
        {"input": -1, "output": 1},
        {"input": "cheap", "output": 1},
        {"input": 1, "output": 1, "colour": "red"},
        {"input": 1, "output": 1, "valid_from": "yesterday"},
    ],
)
def test_bad_override_is_a_clear_error(spec: dict) -> None:
    with pytest.raises(PricingError, match="override for 'm'"):
        Pricer(overrides={"m": spec})


# --- apply -----------------------------------------------------------------------------------------


def test_apply_matches_cost_and_keeps_reported_costs(pricer: Pricer) -> None:
    records = [
        rec("gpt-4o", "openai", input_tokens=1000, output_tokens=10),
        rec("claude-sonnet-4-5", "anthropic", input_tokens=300_000, cache_write_tokens=1000, output_tokens=5),
        rec("gemini-2.5-pro", "google", requests=3, input_tokens=900_000, output_tokens=5),
        rec("o3", "openai", ts=TS_LATE_2026, service_tier="flex", input_tokens=100, output_tokens=100),
        rec("nope", "", input_tokens=1, output_tokens=1),
    ]
    reported = rec("gpt-4o", "openai", input_tokens=1000, output_tokens=10)
    reported.cost_usd, reported.cost_reported = 42.0, True
    expected = [pricer.cost(r) for r in records]
    out = list(pricer.apply([*records, reported]))
    assert [(r.cost_usd, r.price_version) for r in out[:-1]] == expected
    assert out[-1].cost_usd == 42.0 and out[-1].price_version is None
    # flex o3 from the data: 1 / 4 per 1M
    assert out[3].cost_usd == pytest.approx((100 * 1 + 100 * 4) / M)


# --- synthetic snapshot: rules the bundled data does not exercise ------------------------------------


def _tiny_snapshot() -> dict:
    return {
        "format": SNAPSHOT_FORMAT,
        "snapshot_version": "test-1",
        "generated_at": "2026-01-01T00:00:00Z",
        "source": {"package": "test", "version": "1"},
        "providers": [
            {
                "id": "anthropic",
                "model_match": {"contains": "claude"},
                "models": [
                    {
                        "id": "claude-x",
                        "match": {"equals": "claude-x"},
                        "prices": [{"prices": {"input_mtok": 4, "output_mtok": 20}}],
                    }
                ],
            },
            {
                "id": "openai",
                "model_match": {"starts_with": "gpt-"},
                "models": [
                    {
                        "id": "gpt-r",
                        "match": {"equals": "gpt-r"},
                        "prices": [
                            {"prices": {"input_mtok": 1, "output_mtok": 4, "output_reasoning_mtok": 6}}
                        ],
                    }
                ],
            },
        ],
    }


def test_anthropic_cache_fallback_multipliers_when_the_data_lacks_them() -> None:
    p = Pricer(snapshot=_tiny_snapshot())
    price = p.lookup("anthropic", "claude-x", TS_2025)
    assert (price.cached_input, price.cache_write_5m, price.cache_write_1h) == pytest.approx((0.4, 5.0, 8.0))
    assert set(price.estimated) == {"cached_input", "cache_write_5m", "cache_write_1h"}
    r = rec(
        "claude-x",
        "anthropic",
        input_tokens=1000,
        cached_input_tokens=100,
        cache_write_tokens=300,
        cache_write_1h_tokens=100,
        output_tokens=10,
    )
    assert cost(p, r) == pytest.approx((600 * 4 + 100 * 0.4 + 200 * 5.0 + 100 * 8.0 + 10 * 20) / M)


def test_separate_reasoning_rate_when_the_data_has_one() -> None:
    p = Pricer(snapshot=_tiny_snapshot())
    r = rec("gpt-r", "openai", input_tokens=100, output_tokens=1000, reasoning_tokens=700)
    assert cost(p, r) == pytest.approx((100 * 1 + 300 * 4 + 700 * 6) / M)


def test_malformed_snapshot_is_a_pricing_error() -> None:
    snap = _tiny_snapshot()
    del snap["providers"][0]["id"]
    with pytest.raises(PricingError, match="oaim pricing update"):
        Pricer(snapshot=snap)


def test_malformed_model_is_a_pricing_error_when_its_provider_is_first_used() -> None:
    """A provider's models are compiled when first needed (an import prices one or two providers): a
    malformed one is then the same PricingError, and the other providers still price."""
    snap = _tiny_snapshot()
    del snap["providers"][0]["models"][0]["match"]
    p = Pricer(snapshot=snap)
    assert p.lookup("openai", "gpt-r", utc_ts(2025, 6, 1)) is not None
    with pytest.raises(PricingError, match="oaim pricing update"):
        p.lookup("anthropic", "claude-x", utc_ts(2025, 6, 1))


# --- listing and provider inference ------------------------------------------------------------------


def test_list_models(pricer: Pricer) -> None:
    before = {r["model"]: r for r in pricer.list_models(utc_ts(2025, 6, 1), providers=["openai"])}
    after = {r["model"]: r for r in pricer.list_models(utc_ts(2025, 7, 1), providers=["openai"])}
    assert (before["o3"]["input"], before["o3"]["output"]) == (10.0, 40.0)
    assert (after["o3"]["input"], after["o3"]["output"], after["o3"]["valid_from"]) == (
        2.0,
        8.0,
        "2025-06-10",
    )
    assert {r["provider"] for r in before.values()} == {"openai"}
    assert "whisper-1" not in before  # not priced per token
    row = after["o3"]
    for key in ("cached_input", "cache_write_5m", "cache_write_1h", "source", "price_version"):
        assert key in row
    p = Pricer(overrides={"acme-llm": {"input": 3, "output": 4, "provider": "openai"}})
    first = p.list_models(TS_2025, providers=["openai"])[0]
    assert (first["model"], first["source"], first["input"]) == ("acme-llm", "override", 3.0)


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gpt-4o-mini", "openai"),
        ("o3-mini", "openai"),
        ("text-embedding-3-small", "openai"),
        ("claude-3-5-haiku-20241022", "anthropic"),
        ("gemini-2.5-flash", "google"),
        ("models/gemini-2.5-flash", "google"),
        ("gemini/gemini-2.5-pro", "google"),
        ("codestral-2508", "mistral"),
        ("mistral-large-latest", "mistral"),
        ("deepseek-chat", "other"),
        ("llama-local", "other"),
    ],
)
def test_infer_provider(model: str, provider: str) -> None:
    assert infer_provider(model) == provider


# --- snapshot build, load and update ----------------------------------------------------------------


def test_bundled_snapshot_metadata_and_build_reproducibility() -> None:
    bundled = load_snapshot(None)
    assert bundled["format"] == SNAPSHOT_FORMAT
    assert bundled["source"]["package"] == "genai-prices" and bundled["source"]["version"] == "0.2.3"
    assert bundled["source"]["repository"] == "https://github.com/pydantic/genai-prices"
    datetime.fromisoformat(bundled["generated_at"].replace("Z", "+00:00"))
    assert {"openai", "anthropic", "google", "mistral"} <= {p["id"] for p in bundled["providers"]}
    try:
        import genai_prices  # noqa: F401  (Python >= 3.11 only)
    except ImportError:
        with pytest.raises(PricingError, match="pip install genai-prices"):
            build_snapshot()
        return
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    built = build_snapshot(generated_at=when)
    # the checked-in file is exactly what the installed genai-prices produces
    assert built["snapshot_version"] == bundled["snapshot_version"]
    assert built["providers"] == bundled["providers"]
    assert build_snapshot(generated_at=when) == built


def test_save_and_load_user_snapshot(tmp_path: Path) -> None:
    target = tmp_path / "home" / "prices_snapshot.json"
    assert load_snapshot(target)["snapshot_version"] == load_snapshot(None)["snapshot_version"]
    snap = _tiny_snapshot()
    save_snapshot(snap, target)
    assert [p.name for p in target.parent.iterdir()] == ["prices_snapshot.json"]  # no temp file left
    assert load_snapshot(target) == snap
    assert Pricer(snapshot=load_snapshot(target)).price_version == "test-1"
    target.write_text("{not json")
    with pytest.raises(PricingError, match=r"not valid JSON.*delete .*prices_snapshot.json"):
        load_snapshot(target)


GENAI_STYLE = [
    {
        "id": "openai",
        "name": "OpenAI",
        "model_match": {"starts_with": "gpt-"},
        "provider_match": {"contains": "openai"},
        "extractors": [],
        "models": [
            {
                "id": "gpt-test",
                "match": {"or": [{"equals": "gpt-test"}, {"equals": "gpt-test-2030-01-01"}]},
                "prices": [
                    {"prices": {"input_mtok": 5, "output_mtok": 15, "web_searches_kcount": 10}},
                    {
                        "constraint": {"start_date": "2030-01-01"},
                        "prices": {"input_mtok": "1.5", "output_mtok": 3},
                    },
                ],
                "price_variants": [
                    {"when": {"processing": "batch"}, "prices": {"input_mtok": 0.5, "output_mtok": 1}},
                    {"when": {"service_tier": "default"}, "prices": {}},
                ],
            },
            {
                "id": "gpt-long",
                "match": {"equals": "gpt-long"},
                "prices": {
                    "input_mtok": {"base": 1, "tiers": [{"start": 128000, "price": 2}]},
                    "output_mtok": 4,
                },
            },
            {"id": "gpt-image", "match": {"equals": "gpt-image"}, "prices": {"output_image_mtok": 40}},
        ],
    }
]


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        status, body = self.routes.get(self.path, (404, b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    _Handler.routes = {
        "/data.json": (200, orjson.dumps(GENAI_STYLE)),
        "/bad.json": (200, b'[{"id": "openai", "models": [ truncated'),
        "/object.json": (200, b'{"hello": "world"}'),
        "/snapshot.json": (200, orjson.dumps(_tiny_snapshot())),
        "/error": (500, b"boom"),
    }
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_fetch_genai_prices_data_over_http(server: str) -> None:
    snap = fetch_prices(f"{server}/data.json", timeout=5)
    assert snap["format"] == SNAPSHOT_FORMAT and snap["snapshot_version"].startswith("genai-prices-data-v2+")
    p = Pricer(snapshot=snap)
    old = rec("gpt-test", "openai", ts=utc_ts(2029, 12, 31), input_tokens=1000, output_tokens=100)
    new = rec("gpt-test-2030-01-01", "", ts=utc_ts(2030, 1, 1), input_tokens=1000, output_tokens=100)
    batch = rec(
        "gpt-test",
        "openai",
        ts=utc_ts(2030, 1, 1),
        service_tier="batch",
        input_tokens=1000,
        output_tokens=100,
    )
    long = rec("gpt-long", "openai", input_tokens=130_000, output_tokens=100)
    assert cost(p, old) == pytest.approx((1000 * 5 + 100 * 15) / M)
    assert cost(p, new) == pytest.approx((1000 * 1.5 + 100 * 3) / M)
    assert cost(p, batch) == pytest.approx((1000 * 0.5 + 100 * 1) / M)
    assert cost(p, long) == pytest.approx((130_000 * 2 + 100 * 4) / M)
    assert p.lookup("openai", "gpt-image", TS_2025) is None
    # our own format passes through unchanged
    assert fetch_prices(f"{server}/snapshot.json") == _tiny_snapshot()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing.json", "HTTP 404"),
        ("/error", "HTTP 500"),
        ("/bad.json", "not valid JSON"),
        ("/object.json", "expected a JSON array of providers"),
    ],
)
def test_fetch_errors_are_pricing_errors(server: str, path: str, message: str) -> None:
    with pytest.raises(PricingError, match=message):
        fetch_prices(f"{server}{path}", timeout=5)


def test_fetch_from_files_and_shape_errors(tmp_path: Path) -> None:
    good = tmp_path / "data.json"
    good.write_bytes(orjson.dumps(GENAI_STYLE))
    assert Pricer(snapshot=fetch_prices(str(good))).lookup("openai", "gpt-long", TS_2025).input == 1
    with pytest.raises(PricingError, match="does not exist"):
        fetch_prices(str(tmp_path / "nope.json"))
    broken = copy.deepcopy(GENAI_STYLE)
    broken[0]["models"][0]["prices"][0]["prices"]["input_mtok"] = -1
    good.write_bytes(orjson.dumps(broken))
    with pytest.raises(PricingError, match="negative"):
        fetch_prices(str(good))
    broken = copy.deepcopy(GENAI_STYLE)
    broken[0]["models"][1]["match"] = {"fuzzy": "gpt"}
    good.write_bytes(orjson.dumps(broken))
    with pytest.raises(PricingError, match="unknown match clause"):
        fetch_prices(str(good))


def test_bundled_file_is_packaged_data() -> None:
    assert BUNDLED_SNAPSHOT.name == "prices_snapshot.json" and BUNDLED_SNAPSHOT.is_file()
