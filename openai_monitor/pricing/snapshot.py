"""Build the offline price snapshot that :mod:`openai_monitor.pricing.engine` evaluates.

The snapshot is generated from the data bundled with genai-prices (pydantic/genai-prices, MIT), which
keeps dated prices, cache read/write rates, long-context tiers and batch / service-tier variants. Our
engine evaluates the JSON itself, so genai-prices (Python >= 3.11) is needed only to *build* it:

    python -m openai_monitor.pricing.snapshot openai_monitor/pricing/data/prices_snapshot.json

The same converter reads a genai-prices ``data.json`` (v2: a JSON array of providers), which is what
``oaim pricing update`` downloads. Snapshot format (``format`` = ``openai-monitor-prices/1``)::

    {"format", "snapshot_version", "generated_at", "source": {...}, "cache_fallbacks": {...},
     "providers": [{"id", "name", "model_match", "provider_match", "fallback_model_providers",
                    "models": [{"id", "name", "match", "context_window", "deprecated",
                                "prices": [{"start_date"?, "time_of_day"?, "prices": {KEY: RATE}}],
                                "variants": [{"when", "start_date"?, "prices": {KEY: RATE}}]}]}]}

KEY is one of :data:`PRICE_KEYS` (USD per 1M tokens); RATE is a number or, for long-context tiers,
``{"base": X, "tiers": [{"start": N, "price": Y}]}`` where a request whose total input tokens exceed
``start`` pays ``price`` for every token (genai-prices' "cliff" model). Match clauses keep the
genai-prices shape: ``{"equals"|"starts_with"|"ends_with"|"contains"|"regex": str}``,
``{"or"|"and": [clause, ...]}``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timezone
from typing import Any

from openai_monitor.errors import PricingError

SNAPSHOT_FORMAT = "openai-monitor-prices/1"
GENAI_PRICES_REPO = "https://github.com/pydantic/genai-prices"
GENAI_PRICES_DATA_URL = (
    "https://raw.githubusercontent.com/pydantic/genai-prices/refs/heads/main/prices/new_data/v2/data.json"
)

# Token price keys we evaluate (USD per 1M tokens). Audio, image, per-search and per-request prices are
# dropped: UsageRecord does not carry those counts.
PRICE_KEYS = (
    "input_mtok",
    "cache_read_mtok",
    "cache_write_mtok",
    "cache_write_5m_mtok",
    "cache_write_1h_mtok",
    "output_mtok",
    "output_reasoning_mtok",
)

# Rates used when the data lacks a cache figure, as multiples of the (tier's) input rate. Data-driven
# first: these apply only where the snapshot has no number. ``cache_write_1h: None`` means "same as the
# 5-minute write rate", which is how genai-prices prices 1h writes for a model without a 1h figure.
# Anthropic: https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching#pricing (checked
# 2026-11-23): reads 0.1x, 5-minute writes 1.25x, 1-hour writes 2x the base input price.
# Everyone else (OpenAI, Google, Mistral, ...): genai-prices and LiteLLM price an unlisted cache read or
# write at the input rate; OpenAI does not charge for cache writes, so they cost ordinary input.
CACHE_FALLBACKS: dict[str, dict[str, Any]] = {
    "default": {
        "cache_read": 1.0,
        "cache_write_5m": 1.0,
        "cache_write_1h": None,
        "source": "genai-prices / LiteLLM convention: an unlisted cache rate is the input rate",
    },
    "anthropic": {
        "cache_read": 0.1,
        "cache_write_5m": 1.25,
        "cache_write_1h": 2.0,
        "source": "https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching#pricing (2026-11-23)",
    },
}

_CLAUSE_LEAVES = ("equals", "starts_with", "ends_with", "contains", "regex")


# ---------------------------------------------------------------------------------------------------
# genai-prices Python objects -> raw v2 dicts (the shape of upstream data.json)
# ---------------------------------------------------------------------------------------------------


def _num(value: Any) -> float:
    return float(str(value))


def _clause_obj_to_raw(clause: Any) -> dict[str, Any]:
    for leaf in _CLAUSE_LEAVES:
        if hasattr(clause, leaf):
            return {leaf: getattr(clause, leaf)}
    if hasattr(clause, "or_"):
        return {"or": [_clause_obj_to_raw(c) for c in clause.or_]}
    if hasattr(clause, "and_"):
        return {"and": [_clause_obj_to_raw(c) for c in clause.and_]}
    raise PricingError(
        f"unsupported genai-prices match clause {type(clause).__name__}: upgrade openai-monitor"
    )


def _price_value_obj_to_raw(value: Any) -> Any:
    if hasattr(value, "tiers"):
        return {
            "base": _num(value.base),
            "tiers": [{"start": int(t.start), "price": _num(t.price)} for t in value.tiers],
        }
    return _num(value)


def _model_price_obj_to_raw(mp: Any) -> dict[str, Any]:
    return {
        k: _price_value_obj_to_raw(v) for k, v in vars(mp).items() if v is not None and not k.startswith("_")
    }


def _utc_time_str(value: time) -> str:
    if value.tzinfo is not None:
        value = datetime.combine(date(2000, 1, 1), value).astimezone(timezone.utc).time()
    return value.strftime("%H:%M:%S")


def _constraint_obj_to_raw(constraint: Any) -> dict[str, Any] | None:
    if constraint is None:
        return None
    if hasattr(constraint, "start_date"):
        return {"start_date": constraint.start_date.isoformat()}
    return {
        "start_time": _utc_time_str(constraint.start_time),
        "end_time": _utc_time_str(constraint.end_time),
    }


def _provider_obj_to_raw(provider: Any) -> dict[str, Any]:
    models = []
    for m in provider.models:
        if isinstance(m.prices, list):
            prices: Any = []
            for cp in m.prices:
                entry: dict[str, Any] = {"prices": _model_price_obj_to_raw(cp.prices)}
                constraint = _constraint_obj_to_raw(cp.constraint)
                if constraint is not None:
                    entry["constraint"] = constraint
                prices.append(entry)
        else:
            prices = _model_price_obj_to_raw(m.prices)
        raw_model: dict[str, Any] = {
            "id": m.id,
            "name": m.name,
            "match": _clause_obj_to_raw(m.match),
            "context_window": m.context_window,
            "deprecated": m.deprecated,
            "prices": prices,
        }
        if m.price_variants:
            variants = []
            for v in m.price_variants:
                raw_v: dict[str, Any] = {"when": dict(v.when), "prices": _model_price_obj_to_raw(v.prices)}
                constraint = _constraint_obj_to_raw(v.constraint)
                if constraint is not None:
                    raw_v["constraint"] = constraint
                variants.append(raw_v)
            raw_model["price_variants"] = variants
        models.append(raw_model)
    return {
        "id": provider.id,
        "name": provider.name,
        "pricing_urls": provider.pricing_urls,
        "model_match": _clause_obj_to_raw(provider.model_match) if provider.model_match else None,
        "provider_match": _clause_obj_to_raw(provider.provider_match) if provider.provider_match else None,
        "fallback_model_providers": provider.fallback_model_providers,
        "models": models,
    }


# ---------------------------------------------------------------------------------------------------
# raw v2 dicts -> our snapshot
# ---------------------------------------------------------------------------------------------------


def _bad(where: str, what: str) -> PricingError:
    return PricingError(
        f"price data is not in genai-prices v2 format ({where}: {what}); give a genai-prices "
        f"data.json such as {GENAI_PRICES_DATA_URL} or an openai-monitor prices snapshot"
    )


def _convert_clause(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise _bad(where, "a match clause must be an object with one key")
    (key, value), *_ = raw.items()
    if key in _CLAUSE_LEAVES:
        if not isinstance(value, str):
            raise _bad(where, f"clause {key!r} needs a string")
        return {key: value}
    if key in ("or", "and"):
        if not isinstance(value, list) or not value:
            raise _bad(where, f"clause {key!r} needs a non-empty list")
        return {key: [_convert_clause(c, where) for c in value]}
    raise _bad(where, f"unknown match clause {key!r}")


def _convert_rate(raw: Any, where: str) -> Any:
    if isinstance(raw, bool):
        raise _bad(where, "a price must be a number")
    if isinstance(raw, (int, float, str)):
        try:
            value = float(raw)
        except ValueError as exc:
            raise _bad(where, f"price {raw!r} is not a number") from exc
        if not value >= 0:
            raise _bad(where, f"price {raw!r} is negative or not finite")
        return value
    if isinstance(raw, Mapping) and "base" in raw and isinstance(raw.get("tiers"), list):
        tiers = []
        for t in raw["tiers"]:
            if not isinstance(t, Mapping) or "start" not in t or "price" not in t:
                raise _bad(where, "a tier needs start and price")
            tiers.append({"start": int(t["start"]), "price": _convert_rate(t["price"], where)})
        tiers.sort(key=lambda t: t["start"])
        return {"base": _convert_rate(raw["base"], where), "tiers": tiers}
    raise _bad(where, "a price must be a number or {base, tiers}")


def _convert_prices(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise _bad(where, "prices must be an object")
    return {k: _convert_rate(v, f"{where}.{k}") for k, v in raw.items() if k in PRICE_KEYS and v is not None}


def _time_str(raw: Any, where: str) -> str:
    """Accept ``HH:MM[:SS]`` with an optional ``Z`` / ``+00:00``; other offsets are shifted to UTC."""
    if not isinstance(raw, str):
        raise _bad(where, "start_time/end_time must be strings")
    text = raw.strip().replace("Z", "+00:00")
    try:
        parsed = time.fromisoformat(text)
    except ValueError as exc:
        raise _bad(where, f"bad time of day {raw!r}") from exc
    return _utc_time_str(parsed)


def _convert_constraint(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _bad(where, "constraint must be an object")
    if "start_date" in raw:
        try:
            return {"start_date": date.fromisoformat(str(raw["start_date"])[:10]).isoformat()}
        except ValueError as exc:
            raise _bad(where, f"bad start_date {raw['start_date']!r}") from exc
    if "start_time" in raw and "end_time" in raw:
        return {"time_of_day": [_time_str(raw["start_time"], where), _time_str(raw["end_time"], where)]}
    raise _bad(where, "constraint needs start_date or start_time/end_time")


def _convert_model(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str) or "match" not in raw:
        raise _bad(where, "a model needs id and match")
    where = f"{where}/{raw['id']}"
    raw_prices = raw.get("prices")
    entries: list[dict[str, Any]] = []
    if isinstance(raw_prices, list):
        for cp in raw_prices:
            if not isinstance(cp, Mapping):
                raise _bad(where, "a conditional price must be an object")
            entry = _convert_constraint(cp.get("constraint"), where)
            entry["prices"] = _convert_prices(cp.get("prices"), where)
            entries.append(entry)
    else:
        entries.append({"prices": _convert_prices(raw_prices, where)})
    model: dict[str, Any] = {
        "id": raw["id"],
        "name": raw.get("name") or raw["id"],
        "match": _convert_clause(raw["match"], where),
        "prices": entries,
    }
    # A model priced only per image, audio hour, search or request cannot be priced from token counts.
    # It stays in the data (so its name still resolves to it, not to another provider's model of the
    # same name) but is flagged so the engine reports it unpriced instead of $0.
    if not any("input_mtok" in e["prices"] or "output_mtok" in e["prices"] for e in entries):
        model["token_priced"] = False
    if raw.get("context_window"):
        model["context_window"] = int(raw["context_window"])
    if raw.get("deprecated"):
        model["deprecated"] = True
    variants = []
    for v in raw.get("price_variants") or ():
        if not isinstance(v, Mapping) or not isinstance(v.get("when"), Mapping):
            raise _bad(where, "a price variant needs when")
        prices = _convert_prices(v.get("prices"), where)
        if not prices:
            continue
        variant = {"when": {str(k): str(val) for k, val in v["when"].items()}}
        variant.update(_convert_constraint(v.get("constraint"), where))
        variant["prices"] = prices
        variants.append(variant)
    if variants:
        model["variants"] = variants
    return model


def convert_providers(raw: Any) -> list[dict[str, Any]]:
    """Convert a genai-prices v2 provider array (parsed ``data.json``) into our provider list."""
    if not isinstance(raw, list) or not raw:
        raise _bad("top level", "expected a non-empty JSON array of providers")
    providers = []
    for i, rp in enumerate(raw):
        if not isinstance(rp, Mapping) or not isinstance(rp.get("id"), str):
            raise _bad(f"provider #{i}", "a provider needs an id")
        where = str(rp["id"])
        raw_models = rp.get("models") or []
        if not isinstance(raw_models, list):
            raise _bad(where, "models must be a list")
        models = [_convert_model(rm, where) for rm in raw_models]
        provider: dict[str, Any] = {"id": rp["id"], "name": rp.get("name") or rp["id"]}
        if rp.get("pricing_urls"):
            provider["pricing_urls"] = list(rp["pricing_urls"])
        for key in ("model_match", "provider_match"):
            if rp.get(key):
                provider[key] = _convert_clause(rp[key], f"{where}.{key}")
        if rp.get("fallback_model_providers"):
            provider["fallback_model_providers"] = [str(p) for p in rp["fallback_model_providers"]]
        provider["models"] = models
        providers.append(provider)
    return providers


def snapshot_version_for(providers: Sequence[Mapping[str, Any]], package: str, version: str) -> str:
    """A version string that changes exactly when the price data changes (content hash)."""
    digest = hashlib.sha256(
        json.dumps(providers, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()[:10]
    return f"{package}-{version}+{digest}"


def make_snapshot(
    raw_providers: Any,
    *,
    package: str,
    version: str,
    url: str,
    generated_at: datetime | None = None,
) -> dict[str, Any]:
    """Wrap converted providers with the metadata every snapshot carries."""
    providers = convert_providers(raw_providers)
    when = (generated_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return {
        "format": SNAPSHOT_FORMAT,
        "snapshot_version": snapshot_version_for(providers, package, version),
        "generated_at": when.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "source": {"package": package, "version": version, "url": url, "repository": GENAI_PRICES_REPO},
        "cache_fallbacks": CACHE_FALLBACKS,
        "providers": providers,
    }


def build_snapshot(generated_at: datetime | None = None) -> dict[str, Any]:
    """Build our snapshot from the genai-prices package installed here (needs Python >= 3.11).

    Deterministic apart from ``generated_at``: ``snapshot_version`` is a hash of the price data.
    """
    try:
        from importlib.metadata import version as dist_version

        from genai_prices.data import providers
    except ImportError as exc:
        raise PricingError(
            "building a price snapshot needs genai-prices (Python >= 3.11): pip install genai-prices"
        ) from exc
    raw = [_provider_obj_to_raw(p) for p in providers]
    return make_snapshot(
        raw,
        package="genai-prices",
        version=dist_version("genai-prices"),
        url=f"{GENAI_PRICES_REPO} (bundled genai_prices/data.py)",
        generated_at=generated_at,
    )


def main(argv: Sequence[str] | None = None) -> int:
    from pathlib import Path

    from openai_monitor.pricing.update import save_snapshot

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m openai_monitor.pricing.snapshot OUT.json", file=sys.stderr)
        return 2
    snap = build_snapshot()
    save_snapshot(snap, Path(args[0]))
    n_models = sum(len(p["models"]) for p in snap["providers"])
    print(
        f"wrote {args[0]}: {snap['snapshot_version']}, {len(snap['providers'])} providers, {n_models} models"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
