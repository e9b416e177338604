"""Price usage records by their own timestamp from a dated snapshot plus user overrides.

Arithmetic (rates in USD per 1M tokens, token semantics of :mod:`openai_monitor.domain`)::

    uncached = input - cached - cache_write
    cost = (uncached * input_rate + cached * cache_read_rate
            + (cache_write - cache_write_1h) * cache_write_5m_rate + cache_write_1h * cache_write_1h_rate
            + output * output_rate + reasoning * (reasoning_rate - output_rate)) / 1e6

``reasoning_rate`` is None for nearly every model: reasoning tokens are part of ``output`` and pay the
output rate. Long-context tiers use genai-prices' cliff model: when a request's total input tokens
(cache reads and writes included) exceed a tier's start, every token of that request pays the tier
rate. A bucket record (``requests > 1``) only knows totals, so the tier is chosen by the average input
per request, ``input_tokens / requests``; an aggregate of many small requests is never priced as one
giant request.

Missing cache rates come from the snapshot's ``cache_fallbacks`` (see ``snapshot.CACHE_FALLBACKS``):
Anthropic 0.1x input for reads, 1.25x / 2x for 5-minute / 1-hour writes; every other provider pays the
input rate for an unlisted cache read or write (OpenAI does not charge for writes, so written tokens
are ordinary input) and the 5-minute rate for an unlisted 1-hour write. Wherever the snapshot has the
figure, the figure is used; ``ModelPrice.estimated`` names the rates that came from the fallback.

Batch / flex / priority / fast prices come from the snapshot's price variants, selected by
``UsageRecord.service_tier``, from the date the data says they are known (genai-prices verified them
from October 2026; earlier records pay standard rates, exactly as genai-prices prices them).

An unknown model is never priced as another model and never as $0: ``lookup`` returns None and
``apply`` leaves ``cost_usd`` None so reports can count and flag it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from openai_monitor.domain import FIELD_INDEX, UsageRecord
from openai_monitor.errors import PricingError
from openai_monitor.pricing.snapshot import CACHE_FALLBACKS

__all__ = ["ModelPrice", "Pricer", "infer_provider", "MAIN_PROVIDERS", "SERVICE_TIERS"]

MAIN_PROVIDERS = ("openai", "anthropic", "google", "mistral")

# UsageRecord.service_tier -> genai-prices price context. Anthropic spells its fast mode ``speed``.
_TIER_CONTEXT: dict[str, dict[str, str]] = {
    "batch": {"processing": "batch"},
    "flex": {"service_tier": "flex"},
    "priority": {"service_tier": "priority"},
    "fast": {"service_tier": "fast", "speed": "fast"},
}
SERVICE_TIERS = tuple(_TIER_CONTEXT)

_EPOCH = date(1970, 1, 1)
_COMPACT_DATE_RE = re.compile(r"(-)(20\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?=-|:|$)")
_OVERRIDE_KEYS = {
    "input",
    "output",
    "cached_input",
    "cache_write",
    "cache_write_5m",
    "cache_write_1h",
    "reasoning",
    "provider",
    "valid_from",
}

Rates = tuple[
    float, float, float, float, float, float
]  # in, cache read, write 5m, write 1h, out, reasoning delta
Entry = tuple[Rates, tuple[tuple[int, Rates], ...], str]


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Prices of one model at one moment, USD per 1M tokens."""

    provider: str
    model: str  # model id in the price data, or the override's model name
    input: float
    cached_input: float
    cache_write_5m: float
    cache_write_1h: float
    output: float
    reasoning: float | None = None  # None: reasoning tokens pay the output rate
    # Long-context tiers, ascending: (threshold, prices) used when input tokens per request > threshold.
    tiers: tuple[tuple[int, ModelPrice], ...] = ()
    # Service-tier prices ("batch", "flex", "priority", "fast") where the data has them at this moment.
    variants: tuple[tuple[str, ModelPrice], ...] = ()
    valid_from: str | None = None  # ISO date these prices started, None: since the data's first entry
    source: str = ""
    price_version: str = ""
    estimated: tuple[str, ...] = ()  # rates filled from the cache-fallback policy, not from the data
    name: str = ""

    def for_service_tier(self, service_tier: str) -> ModelPrice:
        """Prices for a service tier; standard prices when the data has no variant for it."""
        for tier, price in self.variants:
            if tier == service_tier:
                return price
        return self

    def for_input(self, input_tokens_per_request: float) -> ModelPrice:
        """The long-context tier a request with this many input tokens pays (cliff model)."""
        chosen = self
        for threshold, price in self.tiers:
            if input_tokens_per_request > threshold:
                chosen = price
        return chosen

    def rates(self) -> Rates:
        delta = 0.0 if self.reasoning is None else self.reasoning - self.output
        return (self.input, self.cached_input, self.cache_write_5m, self.cache_write_1h, self.output, delta)


def _cost(rates: Rates, inp: int, cached: int, cw: int, cw1h: int, out: int, reasoning: int) -> float:
    r_in, r_cr, r_cw5, r_cw1, r_out, r_rs = rates
    total = (inp - cached - cw) * r_in + cached * r_cr + (cw - cw1h) * r_cw5 + cw1h * r_cw1 + out * r_out
    if r_rs:
        total += reasoning * r_rs
    return total / 1_000_000


# ---------------------------------------------------------------------------------------------------
# compiled snapshot
# ---------------------------------------------------------------------------------------------------


def _compile_clause(clause: Mapping[str, Any]) -> Callable[[str], bool]:
    """Match clauses run on the lower-cased model name, as genai-prices does."""
    (key, value), *_ = clause.items()
    if key == "equals":
        target = value.lower()
        return lambda s: s == target
    if key == "starts_with":
        prefix = value.lower()
        return lambda s: s.startswith(prefix)
    if key == "ends_with":
        suffix = value.lower()
        return lambda s: s.endswith(suffix)
    if key == "contains":
        part = value.lower()
        return lambda s: part in s
    if key == "regex":
        search = re.compile(value).search
        return lambda s: search(s) is not None
    if key == "or":
        any_of = [_compile_clause(c) for c in value]
        return lambda s: any(p(s) for p in any_of)
    if key == "and":
        all_of = [_compile_clause(c) for c in value]
        return lambda s: all(p(s) for p in all_of)
    raise PricingError(f"unknown match clause {key!r} in the price snapshot: run `oaim pricing update`")


def _day_index(iso: str) -> int:
    return (date.fromisoformat(iso) - _EPOCH).days


def _seconds_of_day(hms: str) -> int:
    h, m, s = (int(x) for x in (hms.split(":") + ["0", "0"])[:3])
    return h * 3600 + m * 60 + s


class _Model:
    __slots__ = ("id", "name", "match", "prices", "variants", "time_dependent", "token_priced")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.id: str = raw["id"]
        self.name: str = raw.get("name") or raw["id"]
        self.match = _compile_clause(raw["match"])
        # (start day index | None, (start s, end s) | None, iso start date | None, prices)
        self.prices: list[tuple[int | None, tuple[int, int] | None, str | None, Mapping[str, Any]]] = []
        for entry in raw["prices"]:
            start = entry.get("start_date")
            tod = entry.get("time_of_day")
            self.prices.append(
                (
                    _day_index(start) if start else None,
                    (_seconds_of_day(tod[0]), _seconds_of_day(tod[1])) if tod else None,
                    start,
                    entry["prices"],
                )
            )
        self.variants: list[tuple[Mapping[str, str], int | None, Mapping[str, Any]]] = [
            (v["when"], _day_index(v["start_date"]) if v.get("start_date") else None, v["prices"])
            for v in raw.get("variants") or ()
        ]
        self.time_dependent = any(tod is not None for _, tod, _, _ in self.prices)
        self.token_priced: bool = raw.get("token_priced", True)

    def state_at(self, day: int, second: int) -> tuple[int, int]:
        """(index of the active conditional price, bit mask of variants already started)."""
        index = 0
        for i in range(len(self.prices) - 1, -1, -1):
            start, tod, _, _ = self.prices[i]
            if start is not None and day < start:
                continue
            if tod is not None:
                lo, hi = tod
                if not (lo <= second < hi if lo <= hi else second >= lo or second < hi):
                    continue
            index = i
            break
        # The last active conditional price wins; none active: the first (genai-prices rule).
        mask = 0
        for i, (_, start, _) in enumerate(self.variants):
            if start is None or day >= start:
                mask |= 1 << i
        return index, mask


class _Provider:
    __slots__ = (
        "id",
        "name",
        "model_match",
        "provider_match",
        "fallbacks",
        "_raw_models",
        "_models",
        "policy",
    )

    def __init__(self, raw: Mapping[str, Any], policy: Mapping[str, Any]) -> None:
        self.id: str = raw["id"]
        self.name: str = raw.get("name") or raw["id"]
        self.model_match = _compile_clause(raw["model_match"]) if raw.get("model_match") else None
        self.provider_match = _compile_clause(raw["provider_match"]) if raw.get("provider_match") else None
        self.fallbacks: list[str] = list(raw.get("fallback_model_providers") or ())
        self._raw_models: list[Mapping[str, Any]] = list(raw["models"])
        self._models: list[_Model] | None = None
        self.policy = policy

    @property
    def models(self) -> list[_Model]:
        """The provider's models, compiled when first needed: the snapshot's 2,300 models took 31 ms to
        compile, which each parsing process of an import paid to price one provider's records."""
        if self._models is None:
            try:
                self._models = [_Model(m) for m in self._raw_models]
            except (KeyError, TypeError, ValueError, AttributeError, re.error) as exc:
                raise PricingError(_malformed(exc)) from exc
        return self._models


@dataclass(frozen=True, slots=True)
class _Override:
    key: str
    provider: str | None
    valid_from_day: int | None
    price: ModelPrice


def _malformed(exc: BaseException) -> str:
    return (
        f"the price snapshot is malformed ({type(exc).__name__}: {exc}); run `oaim pricing update` "
        "or delete the saved snapshot to use the bundled one"
    )


_Hit = tuple[_Provider, _Model, bool]  # provider whose data priced it, model, reached via fallback provider


_F_TS, _F_PROVIDER, _F_MODEL, _F_TIER = (
    FIELD_INDEX["ts"],
    FIELD_INDEX["provider"],
    FIELD_INDEX["model"],
    FIELD_INDEX["service_tier"],
)
_F_REPORTED, _F_COST, _F_VERSION = (
    FIELD_INDEX["cost_reported"],
    FIELD_INDEX["cost_usd"],
    FIELD_INDEX["price_version"],
)
_F_INPUT, _F_CACHED, _F_REQUESTS = (
    FIELD_INDEX["input_tokens"],
    FIELD_INDEX["cached_input_tokens"],
    FIELD_INDEX["requests"],
)
_F_CW, _F_CW1 = FIELD_INDEX["cache_write_tokens"], FIELD_INDEX["cache_write_1h_tokens"]
_F_OUTPUT, _F_REASONING = FIELD_INDEX["output_tokens"], FIELD_INDEX["reasoning_tokens"]


class Pricer:
    """Prices records from a snapshot (bundled by default) plus user overrides (which win)."""

    def __init__(
        self,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        snapshot: Mapping[str, Any] | None = None,
    ) -> None:
        if snapshot is None:
            from openai_monitor.pricing.update import load_snapshot

            snapshot = load_snapshot(None)
        try:
            self._version: str = snapshot["snapshot_version"]
            source = snapshot.get("source") or {}
            self._source = f"{source.get('package', 'unknown')} {source.get('version', '')}".strip()
            fallbacks = {**CACHE_FALLBACKS, **(snapshot.get("cache_fallbacks") or {})}
            self._providers = [
                _Provider(p, fallbacks.get(p["id"], fallbacks["default"])) for p in snapshot["providers"]
            ]
        except (KeyError, TypeError, ValueError, AttributeError, re.error) as exc:
            raise PricingError(_malformed(exc)) from exc
        self._fallback_policies = fallbacks
        self._by_id = {p.id: p for p in self._providers}
        self._main = [self._by_id[p] for p in MAIN_PROVIDERS if p in self._by_id]
        self._provider_cache: dict[str, _Provider | None] = {}
        self._hit_cache: dict[tuple[str, str], _Hit | None] = {}
        self._entry_cache: dict[tuple[str, str, str, int], Entry | None | bool] = {}
        self._minute_cache: dict[tuple[str, str, str, int], Entry | None] = {}
        self._price_cache: dict[tuple[Any, ...], ModelPrice] = {}
        self._overrides: dict[str, _Override] = {}
        for model, spec in (overrides or {}).items():
            ov = self._compile_override(model, spec)
            self._overrides[ov.key] = ov

    # -- public API -------------------------------------------------------------------------------

    @property
    def price_version(self) -> str:
        """Version of the snapshot in use (records priced by an override carry ``override:<hash>``)."""
        return self._version

    def infer_provider(self, model: str) -> str:
        """openai / anthropic / google / mistral from the model name, else ``other``."""
        ref = model.strip().lower()
        if "/" in ref:
            prefix, rest = ref.split("/", 1)
            prov = self._provider(prefix)
            if prov is not None and prov.id in MAIN_PROVIDERS:
                return prov.id
            return self.infer_provider(rest)
        for prov in self._main:
            if prov.model_match is not None and prov.model_match(ref):
                return prov.id
        for prov in self._main:
            if self._find_in(prov, ref) is not None:
                return prov.id
        return "other"

    def lookup(self, provider: str, model: str, ts: int) -> ModelPrice | None:
        """Prices of ``model`` at Unix time ``ts`` (UTC), or None when the model is unknown."""
        day, second = divmod(int(ts), 86400)
        override = self._override_for(provider, model, day)
        if override is not None:
            return override
        hit = self._hit(provider, model)
        if hit is None:
            return None
        return self._model_price(hit, day, second, "")

    def cost(self, rec: UsageRecord) -> tuple[float | None, str | None]:
        """(USD, price_version) of a record, or (None, None) when its model has no price."""
        entry = self._entry(rec.provider, rec.model, rec.service_tier, rec.ts)
        if entry is None:
            return None, None
        rates, tiers, version = entry
        if tiers:
            per_request = rec.input_tokens / (rec.requests if rec.requests > 0 else 1)
            for threshold, tier_rates in tiers:
                if per_request > threshold:
                    rates = tier_rates
        return (
            _cost(
                rates,
                rec.input_tokens,
                rec.cached_input_tokens,
                rec.cache_write_tokens,
                rec.cache_write_1h_tokens,
                rec.output_tokens,
                rec.reasoning_tokens,
            ),
            version,
        )

    def apply(self, records: Iterable[UsageRecord]) -> Iterator[UsageRecord]:
        """Fill ``cost_usd`` / ``price_version`` of records whose cost the source did not report.

        Records are updated in place and yielded; a computed cost is recomputed (so adding a price
        reprices old records); unknown models get ``cost_usd = None``. Lookups are cached per
        (provider, model, service tier, UTC day).
        """
        cache = self._entry_cache
        entry_for = self._entry
        for rec in records:
            if rec.cost_reported:
                yield rec
                continue
            ts = rec.ts
            entry = cache.get((rec.provider, rec.model, rec.service_tier, ts // 86400), False)
            if entry is False or entry is True:
                entry = entry_for(rec.provider, rec.model, rec.service_tier, ts)
            if entry is None:
                rec.cost_usd = None
                rec.price_version = None
                yield rec
                continue
            rates, tiers, version = entry
            inp = rec.input_tokens
            if tiers:
                n = rec.requests
                per_request = inp / n if n > 0 else inp
                for threshold, tier_rates in tiers:
                    if per_request > threshold:
                        rates = tier_rates
            cached = rec.cached_input_tokens
            cw = rec.cache_write_tokens
            cw1 = rec.cache_write_1h_tokens
            r_in, r_cr, r_cw5, r_cw1, r_out, r_rs = rates
            total = (inp - cached - cw) * r_in + cached * r_cr + (cw - cw1) * r_cw5 + cw1 * r_cw1
            total += rec.output_tokens * r_out
            if r_rs:
                total += rec.reasoning_tokens * r_rs
            rec.cost_usd = total / 1_000_000
            rec.price_version = version
            yield rec

    def apply_columns(self, cols: list[list]) -> None:
        """``apply`` on records held as columns (one list per UsageRecord field, in field order): fills
        the cost_usd and price_version lists in place, with the same arithmetic as ``apply``."""
        cost_c, version_c = cols[_F_COST], cols[_F_VERSION]
        cache = self._entry_cache
        entry_for = self._entry
        fields = (_F_REPORTED, _F_PROVIDER, _F_MODEL, _F_TIER, _F_TS, _F_INPUT, _F_REQUESTS)
        fields += (_F_CACHED, _F_CW, _F_CW1, _F_OUTPUT, _F_REASONING)
        # One zip over the columns used (indexing twelve lists per record cost a third more).
        for i, (reported, prov, model, tier, ts, inp, n, cached, cw, cw1, out, rs) in enumerate(
            zip(*[cols[f] for f in fields])
        ):
            if reported:
                continue
            entry = cache.get((prov, model, tier, ts // 86400), False)
            if entry is False or entry is True:
                entry = entry_for(prov, model, tier, ts)
            if entry is None:
                cost_c[i] = None
                version_c[i] = None
                continue
            rates, tiers, version = entry
            if tiers:
                per_request = inp / n if n > 0 else inp
                for threshold, tier_rates in tiers:
                    if per_request > threshold:
                        rates = tier_rates
            r_in, r_cr, r_cw5, r_cw1, r_out, r_rs = rates
            total = (inp - cached - cw) * r_in + cached * r_cr + (cw - cw1) * r_cw5 + cw1 * r_cw1
            total += out * r_out
            if r_rs:
                total += rs * r_rs
            cost_c[i] = total / 1_000_000
            version_c[i] = version

    def list_models(self, ts: int, providers: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Models with their prices per 1M tokens at ``ts``; overrides first (for ``oaim models``)."""
        wanted = {p.lower() for p in providers} if providers is not None else None
        day, second = divmod(int(ts), 86400)
        rows: list[dict[str, Any]] = []
        for ov in self._overrides.values():
            if wanted is None or (ov.provider or self.infer_provider(ov.key)) in wanted:
                active = ov.valid_from_day is None or day >= ov.valid_from_day
                rows.append({**_row(ov.price), "active": active})
        for prov in self._providers:
            if wanted is not None and prov.id not in wanted:
                continue
            for model in prov.models:
                if not model.token_priced:
                    continue
                rows.append(
                    {**_row(self._model_price((prov, model, False), day, second, "")), "active": True}
                )
        return rows

    # -- matching ---------------------------------------------------------------------------------

    def _provider(self, provider: str) -> _Provider | None:
        key = provider.strip().lower()
        if key in self._provider_cache:
            return self._provider_cache[key]
        found = self._by_id.get(key)
        if found is None and key:
            found = next((p for p in self._providers if p.provider_match and p.provider_match(key)), None)
        self._provider_cache[key] = found
        return found

    def _match_in(self, prov: _Provider, ref: str, allow_fallback: bool = True) -> _Hit | None:
        for model in prov.models:
            if model.match(ref):
                return prov, model, False
        if allow_fallback:
            # e.g. Azure serves OpenAI models and has no price of its own for them (data-driven list).
            for fid in prov.fallbacks:
                fallback = self._by_id.get(fid)
                hit = self._match_in(fallback, ref, False) if fallback else None
                if hit is not None:
                    return hit[0], hit[1], True
        return None

    def _find_in(self, prov: _Provider, ref: str) -> _Hit | None:
        hit = self._match_in(prov, ref)
        if hit is None:
            # Compact dates (`-20251211`) as LiteLLM writes them; the data uses `-2025-12-11`.
            normalized = _COMPACT_DATE_RE.sub(_dash_date, ref)
            if normalized != ref:
                hit = self._match_in(prov, normalized)
        return hit

    def _hit(self, provider: str, model: str) -> _Hit | None:
        key = (provider, model)
        if key not in self._hit_cache:
            hit = self._resolve(provider, model.strip().lower())
            # Found, but priced per image / audio hour / request only: unpriced, not $0.
            self._hit_cache[key] = hit if hit is None or hit[1].token_priced else None
        return self._hit_cache[key]

    def _resolve(self, provider: str, ref: str) -> _Hit | None:
        if not ref:
            return None
        prov = self._provider(provider)
        if prov is not None:
            hit = self._find_in(prov, ref)
            if hit is not None or prov.id not in MAIN_PROVIDERS:
                # A reseller or host (Groq, Bedrock, OpenRouter, Copilot, ...) has its own prices: a
                # model it does not list is unknown, not priced at another provider's rate.
                return hit
        if "/" in ref:
            # `gemini/gemini-2.5-pro`, `openai/gpt-4o`, `models/gemini-2.5-flash`: a provider prefix
            # picks the provider; any other prefix is dropped. The rest must still match exactly.
            prefix, rest = ref.split("/", 1)
            prefixed = self._provider(prefix)
            if prefixed is not None:
                hit = self._find_in(prefixed, rest)
                if hit is not None:
                    return hit
            return self._resolve(provider, rest)
        # No (or the wrong) provider: the providers whose name pattern claims the model, in data order
        # (genai-prices' inference), then the main providers' own model clauses.
        for candidate in self._providers:
            if candidate is not prov and candidate.model_match is not None and candidate.model_match(ref):
                hit = self._find_in(candidate, ref)
                if hit is not None:
                    return hit
        for candidate in self._main:
            if candidate is not prov:
                hit = self._find_in(candidate, ref)
                if hit is not None:
                    return hit
        return None

    # -- prices -----------------------------------------------------------------------------------

    def _model_price(
        self, hit: _Hit, day: int, second: int, service_tier: str, with_variants: bool = True
    ) -> ModelPrice:
        """Prices of a matched model at a moment; memoised per (price period, active variants, tier)."""
        prov, model, via_fallback = hit
        index, mask = model.state_at(day, second)
        key = (id(model), prov.id, via_fallback, index, mask, service_tier, with_variants)
        cached = self._price_cache.get(key)
        if cached is not None:
            return cached
        _, _, valid_from, prices = model.prices[index]
        context = _TIER_CONTEXT.get(service_tier)
        if context is not None and not via_fallback:
            # First matching variant wins per price key; genai-prices ignores variants for a model
            # borrowed from a fallback provider (its tiers belong to the other provider).
            overrides: dict[str, Any] = {}
            for i, (when, _, vprices) in enumerate(model.variants):
                if mask >> i & 1 and all(context.get(k) == v for k, v in when.items()):
                    for k, v in vprices.items():
                        overrides.setdefault(k, v)
            if overrides:
                prices = {**prices, **overrides}
        price = self._build(prov, model, prices, valid_from)
        if with_variants and service_tier == "" and not via_fallback and model.variants:
            variants = []
            for tier in SERVICE_TIERS:
                tier_price = self._model_price(hit, day, second, tier, with_variants=False)
                if tier_price != price:
                    variants.append((tier, tier_price))
            if variants:
                price = _replace(price, variants=tuple(variants))
        self._price_cache[key] = price
        return price

    def _build(
        self, prov: _Provider, model: _Model, prices: Mapping[str, Any], valid_from: str | None
    ) -> ModelPrice:
        starts = sorted({t["start"] for v in prices.values() if isinstance(v, Mapping) for t in v["tiers"]})

        def at(level: int | None) -> ModelPrice:
            flat: dict[str, float] = {}
            for key, value in prices.items():
                if isinstance(value, Mapping):
                    rate = value["base"]
                    if level is not None:
                        for tier in value["tiers"]:
                            if tier["start"] <= level:
                                rate = tier["price"]
                    flat[key] = float(rate)
                else:
                    flat[key] = float(value)
            return _from_rates(
                flat,
                prov.policy,
                provider=prov.id,
                model=model.id,
                name=model.name,
                valid_from=valid_from,
                source=self._source,
                version=self._version,
            )

        base = at(None)
        if not starts:
            return base
        return _replace(base, tiers=tuple((s, at(s)) for s in starts))

    def _entry(self, provider: str, model: str, service_tier: str, ts: int) -> Entry | None:
        day, second = divmod(int(ts), 86400)
        key = (provider, model, service_tier, day)
        cached = self._entry_cache.get(key, False)
        if cached is not True and cached is not False:
            return cached
        if cached is True:
            minute_key = (provider, model, service_tier, int(ts) // 60)
            if minute_key not in self._minute_cache:
                hit = self._hit(provider, model)
                assert hit is not None
                self._minute_cache[minute_key] = _entry_of(
                    self._model_price(hit, day, second, service_tier, False)
                )
            return self._minute_cache[minute_key]
        override = self._override_for(provider, model, day)
        if override is not None:
            entry: Entry | None = _entry_of(override)
        else:
            hit = self._hit(provider, model)
            if hit is None:
                entry = None
            elif hit[1].time_dependent:
                # Off-peak prices (DeepSeek) change within a day: cache per minute instead.
                self._entry_cache[key] = True
                return self._entry(provider, model, service_tier, ts)
            else:
                entry = _entry_of(self._model_price(hit, day, second, service_tier, False))
        self._entry_cache[key] = entry
        return entry

    # -- overrides --------------------------------------------------------------------------------

    def _compile_override(self, model: str, spec: Mapping[str, Any]) -> _Override:
        fix = f"fix it with `oaim pricing set {model} --input X --output Y` (USD per 1M tokens)"
        if not isinstance(spec, Mapping):
            raise PricingError(f"price override for {model!r} must be a table of prices; {fix}")
        unknown = set(spec) - _OVERRIDE_KEYS
        if unknown:
            raise PricingError(
                f"price override for {model!r} has unknown keys {sorted(unknown)}; "
                f"use {sorted(_OVERRIDE_KEYS)}"
            )

        def rate(name: str, required: bool = False) -> float | None:
            value = spec.get(name)
            if value is None:
                if required:
                    raise PricingError(f"price override for {model!r} needs {name!r}; {fix}")
                return None
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise PricingError(
                    f"price override for {model!r}: {name} = {value!r} is not a number; {fix}"
                ) from None
            if not number >= 0 or number == float("inf"):
                raise PricingError(f"price override for {model!r}: {name} must be >= 0; {fix}")
            return number

        provider = spec.get("provider")
        provider = str(provider).strip().lower() if provider else None
        valid_from = spec.get("valid_from")
        valid_from_day = None
        if valid_from:
            text = valid_from.isoformat() if isinstance(valid_from, (date, datetime)) else str(valid_from)
            try:
                valid_from_day = _day_index(text[:10])
            except ValueError:
                raise PricingError(
                    f"price override for {model!r}: valid_from {valid_from!r} is not a date (YYYY-MM-DD)"
                ) from None
            valid_from = text[:10]
        flat = {"input_mtok": rate("input", True), "output_mtok": rate("output", True)}
        for ours, theirs in (
            ("cached_input", "cache_read_mtok"),
            ("cache_write", "cache_write_mtok"),
            ("cache_write_5m", "cache_write_5m_mtok"),
            ("cache_write_1h", "cache_write_1h_mtok"),
            ("reasoning", "output_reasoning_mtok"),
        ):
            value = rate(ours)
            if value is not None:
                flat[theirs] = value
        owner = provider or self.infer_provider(model)
        policy = self._fallback_policies.get(owner, self._fallback_policies["default"])
        canonical = json.dumps(
            {"model": model, **{k: spec[k] for k in sorted(spec)}}, default=str, sort_keys=True
        )
        version = "override:" + hashlib.sha256(canonical.encode()).hexdigest()[:10]
        price = _from_rates(
            {k: v for k, v in flat.items() if v is not None},
            policy,
            provider=owner,
            model=model,
            name=model,
            valid_from=valid_from,
            source="override",
            version=version,
        )
        return _Override(model.strip().lower(), provider, valid_from_day, price)

    def _override_for(self, provider: str, model: str, day: int) -> ModelPrice | None:
        if not self._overrides:
            return None
        ref = model.strip().lower()
        ov = self._overrides.get(ref)
        if ov is None and "/" in ref:
            ov = self._overrides.get(ref.rsplit("/", 1)[1])
        if ov is None:
            hit = self._hit(provider, model)
            if hit is not None:
                ov = self._overrides.get(hit[1].id.lower())
        if ov is None:
            return None
        if ov.valid_from_day is not None and day < ov.valid_from_day:
            return None
        if ov.provider is not None:
            given = provider.strip().lower()
            prov = self._provider(given)
            names = {given, prov.id if prov else "", self.infer_provider(model)}
            hit = self._hit(provider, model)
            if hit is not None:
                names.add(hit[0].id)
            if ov.provider not in names:
                return None
        return ov.price


def _dash_date(match: re.Match[str]) -> str:
    year, month, day = (int(match.group(i)) for i in range(2, 5))
    try:
        date(year, month, day)
    except ValueError:
        return match.group(0)
    return f"-{year:04d}-{month:02d}-{day:02d}"


def _from_rates(
    flat: Mapping[str, float],
    policy: Mapping[str, Any],
    *,
    provider: str,
    model: str,
    name: str,
    valid_from: str | None,
    source: str,
    version: str,
) -> ModelPrice:
    estimated = []
    r_in = flat.get("input_mtok", 0.0)
    r_cr = flat.get("cache_read_mtok")
    if r_cr is None:
        r_cr = r_in * policy["cache_read"]
        estimated.append("cached_input")
    r_cw5 = flat.get("cache_write_5m_mtok", flat.get("cache_write_mtok"))
    if r_cw5 is None:
        r_cw5 = r_in * policy["cache_write_5m"]
        estimated.append("cache_write_5m")
    r_cw1 = flat.get("cache_write_1h_mtok")
    if r_cw1 is None:
        mult = policy.get("cache_write_1h")
        r_cw1 = r_cw5 if mult is None else r_in * mult
        estimated.append("cache_write_1h")
    return ModelPrice(
        provider=provider,
        model=model,
        input=r_in,
        cached_input=r_cr,
        cache_write_5m=r_cw5,
        cache_write_1h=r_cw1,
        output=flat.get("output_mtok", 0.0),
        reasoning=flat.get("output_reasoning_mtok"),
        valid_from=valid_from,
        source=source,
        price_version=version,
        estimated=tuple(estimated),
        name=name,
    )


def _replace(price: ModelPrice, **changes: Any) -> ModelPrice:
    from dataclasses import replace

    return replace(price, **changes)


def _entry_of(price: ModelPrice) -> Entry:
    return price.rates(), tuple((t, p.rates()) for t, p in price.tiers), price.price_version


def _row(price: ModelPrice) -> dict[str, Any]:
    return {
        "provider": price.provider,
        "model": price.model,
        "name": price.name,
        "input": price.input,
        "cached_input": price.cached_input,
        "cache_write_5m": price.cache_write_5m,
        "cache_write_1h": price.cache_write_1h,
        "output": price.output,
        "reasoning": price.reasoning,
        "long_context": [
            {"above_input_tokens": t, "input": p.input, "cached_input": p.cached_input, "output": p.output}
            for t, p in price.tiers
        ],
        "service_tiers": sorted(tier for tier, _ in price.variants),
        "valid_from": price.valid_from,
        "source": price.source,
        "price_version": price.price_version,
        "estimated": list(price.estimated),
    }


@functools.lru_cache(maxsize=1)
def _default_pricer() -> Pricer:
    return Pricer()


def infer_provider(model: str) -> str:
    """openai / anthropic / google / mistral from a model name (bundled snapshot), else ``other``."""
    return _default_pricer().infer_provider(model)


def utc_ts(year: int, month: int, day: int, hour: int = 0) -> int:
    """Unix seconds of a UTC moment (handy for callers and tests)."""
    return int(datetime(year, month, day, hour, tzinfo=timezone.utc).timestamp())
