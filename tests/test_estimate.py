"""Offline token counting (vendored tiktoken encodings) and `oaim estimate`."""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
from importlib import resources

import pytest

from openai_monitor.errors import InputError
from openai_monitor.pricing.engine import Pricer, utc_ts
from openai_monitor.service.estimate import (
    count_prompt,
    count_tokens,
    encoding_name_for,
    estimate_call,
    load_encoding,
)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails: the encodings must load from package data."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_vendored_files_are_openais_exact_files():
    # The same SHA-256 tiktoken pins in tiktoken_ext/openai_public.py.
    import tiktoken_ext.openai_public as op

    src = open(op.__file__).read()
    for name in ("o200k_base", "cl100k_base"):
        raw = gzip.decompress(
            resources.files("openai_monitor").joinpath(f"data/{name}.tiktoken.gz").read_bytes()
        )
        digest = hashlib.sha256(raw).hexdigest()
        assert f'expected_hash="{digest}"' in src


def test_known_token_ids_offline(no_network):
    load_encoding.cache_clear()
    o200k = load_encoding("o200k_base")
    cl100k = load_encoding("cl100k_base")
    # Token ids published for "hello world" by tiktoken's own tests / docs.
    assert o200k.encode("hello world") == [24912, 2375]
    assert cl100k.encode("hello world") == [15339, 1917]
    text = "Grüße aus Köln! 日本語のテキスト, emojis 🎉 and code: def f(x): return x**2"
    assert o200k.decode(o200k.encode(text)) == text


def test_model_to_encoding_and_labels():
    assert encoding_name_for("gpt-4o-mini") == ("o200k_base", True)
    assert encoding_name_for("gpt-4") == ("cl100k_base", True)
    assert encoding_name_for("gpt-3.5-turbo") == ("cl100k_base", True)
    assert encoding_name_for("gpt-9-future") == ("o200k_base", True)
    assert encoding_name_for("claude-sonnet-4-6") == ("o200k_base", False)
    assert count_tokens("hello world", "gpt-4o")[1] == "tiktoken:o200k_base"
    assert count_tokens("hello world", "claude-sonnet-4-6")[1] == "approx:o200k_base"


def test_chat_framing_added_per_message():
    n, _ = count_tokens("hi\nthere", "gpt-4o")
    framed, _ = count_prompt(["hi", "there"], "gpt-4o", messages=2)
    assert framed == n + 2 * 3 + 3


def test_cost_range_spells_out_the_arithmetic():
    pricer = Pricer()
    now = utc_ts(2026, 6, 1)
    est = estimate_call("hello world " * 50, "gpt-4o-mini", max_output_tokens=2000, pricer=pricer, now=now)
    price = pricer.lookup("openai", "gpt-4o-mini", now)
    tokens = count_tokens("hello world " * 50, "gpt-4o-mini")[0]
    assert est.input_tokens == tokens
    assert est.cost_min_usd == pytest.approx(tokens * price.input / 1e6)
    assert est.cost_max_usd == pytest.approx((tokens * price.input + 2000 * price.output) / 1e6)
    assert est.provider == "openai" and est.method == "tiktoken:o200k_base"


def test_bad_values_raise_input_errors():
    with pytest.raises(InputError, match="--model"):
        estimate_call("x", " ", max_output_tokens=1, pricer=Pricer())
    with pytest.raises(InputError, match="--max-output"):
        estimate_call("x", "gpt-4o", max_output_tokens=-1, pricer=Pricer())


def test_cli_estimate_text_json_file_and_errors(run_cli, tmp_path):
    r = run_cli("estimate", "Summarise this report", "--model", "gpt-4o-mini", "--max-output", "500")
    assert r.exit_code == 0
    assert "tiktoken:o200k_base, exact for this text" in r.stdout and "$" in r.stdout
    f = tmp_path / "prompt.txt"
    f.write_text("Bonjour " * 100)
    r = run_cli("estimate", "--file", str(f), "--model", "claude-sonnet-4-6", "--json")
    data = json.loads(r.stdout)
    assert data["method"] == "approx:o200k_base" and data["provider"] == "anthropic"
    assert data["input_tokens"] == count_tokens("Bonjour " * 100, "claude-sonnet-4-6")[0]
    assert 0 < data["cost_min_usd"] < data["cost_max_usd"]
    r = run_cli("estimate", "hello", "--model", "no-such-model-xyz")
    assert r.exit_code == 0 and "unknown: no price for no-such-model-xyz" in r.stdout
    r = run_cli("estimate", "--file", str(tmp_path / "missing.txt"), "--model", "gpt-4o")
    assert r.exit_code == 2 and "cannot read" in r.stderr
    r = run_cli("estimate", "--model", "gpt-4o")
    assert r.exit_code == 2 and "give a prompt" in r.stderr
