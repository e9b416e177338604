"""Token estimation without the network: tiktoken with the encodings vendored in ``openai_monitor/data``.

tiktoken downloads its BPE rank files on first use; here the files ship with the package (see
``data/TIKTOKEN_NOTICE.md``) and are checked against the SHA-256 that tiktoken itself expects, so counts for
OpenAI models are exact for the text given. Methods, as labelled on every result:

* ``tiktoken:<encoding>``: an OpenAI model, counted with its own encoding (tiktoken's model table).
* ``approx:o200k_base``: any other provider (Anthropic, Gemini, ...). Their tokenizers are not public, so
  the text is counted with o200k_base, a BPE of similar vocabulary size; expect a difference of some 10-20%.
* ``approx:chars/4``: the vendored files are unreadable; OpenAI's rule of thumb of ~4 characters of English
  per token (help.openai.com "What are tokens and how to count them?").

Chat requests add the per-message framing from the OpenAI Cookbook "How to count tokens with tiktoken"
(3 tokens per message, 1 per name, 3 priming the reply), which holds for the gpt-3.5/4/4o families.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import logging
import math
import time
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from ..domain import UsageRecord
from ..errors import InputError

log = logging.getLogger(__name__)

# sha256 of the expanded .tiktoken files, as pinned in tiktoken_ext/openai_public.py.
_EXPECTED_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
# Split patterns and special tokens of the two encodings, from tiktoken_ext/openai_public.py (MIT).
_PATTERNS = {
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}
_SPECIAL = {
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}
CHARS_PER_TOKEN = 4  # OpenAI help centre rule of thumb for English text
TOKENS_PER_MESSAGE = 3  # OpenAI Cookbook, gpt-3.5-turbo-0613 and later
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3


@functools.lru_cache(maxsize=4)
def load_encoding(name: str) -> Any:
    """The tiktoken ``Encoding`` ``name`` built from the vendored rank file (no download). Raises
    ``InputError`` when the file is missing or does not match tiktoken's pinned hash."""
    import tiktoken

    if name not in _EXPECTED_SHA256:
        raise InputError(f"no vendored tokenizer {name!r}; use one of {', '.join(_EXPECTED_SHA256)}")
    try:
        raw = gzip.decompress(
            resources.files("openai_monitor").joinpath(f"data/{name}.tiktoken.gz").read_bytes()
        )
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise InputError(f"cannot read the vendored tokenizer {name}: {e}; reinstall openai-monitor") from e
    if hashlib.sha256(raw).hexdigest() != _EXPECTED_SHA256[name]:
        raise InputError(
            f"the vendored tokenizer {name} is damaged (hash mismatch); reinstall openai-monitor"
        )
    ranks = {
        base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in raw.splitlines() if line)
    }
    return tiktoken.Encoding(
        name=name, pat_str=_PATTERNS[name], mergeable_ranks=ranks, special_tokens=_SPECIAL[name]
    )


def _is_openai_model(model: str) -> bool:
    ref = model.lower().rsplit("/", 1)[-1]
    return ref.startswith(
        ("gpt-", "o1", "o3", "o4", "chatgpt", "text-embedding", "davinci", "babbage", "ft:gpt")
    )


def encoding_name_for(model: str) -> tuple[str, bool]:
    """(encoding, exact): the encoding tiktoken maps ``model`` to when it is an OpenAI model we can load,
    else o200k_base as the approximation."""
    if _is_openai_model(model):
        from tiktoken.model import encoding_name_for_model

        try:
            name = encoding_name_for_model(model.rsplit("/", 1)[-1].removeprefix("ft:").split(":", 1)[0])
        except KeyError:
            name = "o200k_base"  # newer OpenAI models than this tiktoken knows all use o200k
        if name in _EXPECTED_SHA256:
            return name, True
    return "o200k_base", False


@functools.lru_cache(maxsize=256)
def _plan(model: str) -> tuple[Any, str]:
    name, exact = encoding_name_for(model)
    try:
        enc = load_encoding(name)
    except InputError as e:
        log.warning("%s; counting tokens as characters / %d", e, CHARS_PER_TOKEN)
        return None, f"approx:chars/{CHARS_PER_TOKEN}"
    return enc, (f"tiktoken:{name}" if exact else f"approx:{name}")


def count_tokens(text: str, model: str) -> tuple[int, str]:
    """(tokens, method) of ``text`` for ``model``; ``method`` says how exact the count is."""
    enc, method = _plan(model)
    if not text:
        return 0, method
    if enc is None:
        return math.ceil(len(text) / CHARS_PER_TOKEN), method
    return len(enc.encode_ordinary(text)), method


def count_prompt(texts: list[str], model: str, *, messages: int = 0, names: int = 0) -> tuple[int, str]:
    """Tokens of a request's input texts, plus chat framing when it had ``messages`` chat messages."""
    n, method = count_tokens("\n".join(texts), model) if texts else count_tokens("", model)
    if messages:
        n += messages * TOKENS_PER_MESSAGE + names * TOKENS_PER_NAME + REPLY_PRIMING_TOKENS
    return n, method


@dataclass
class Estimate:
    model: str
    provider: str
    input_tokens: int
    method: str
    max_output_tokens: int
    cost_min_usd: float | None  # the prompt alone (0 output tokens)
    cost_max_usd: float | None  # the prompt plus max_output_tokens of output
    price_version: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_call(
    prompt: str, model: str, *, max_output_tokens: int, pricer: Any, now: int | None = None
) -> Estimate:
    """Tokens of ``prompt`` and the cost range of sending it to ``model`` with up to ``max_output_tokens``."""
    if not model.strip():
        raise InputError("a model is needed to estimate; pass --model, e.g. --model gpt-4o-mini")
    if max_output_tokens < 0:
        raise InputError("--max-output must be 0 or more tokens")
    ts = int(time.time()) if now is None else now
    tokens, method = count_tokens(prompt, model)
    provider = pricer.infer_provider(model)
    base = UsageRecord(ts=ts, provider=provider, model=model, dedup_key="estimate", input_tokens=tokens)
    low, version = pricer.cost(base)
    base.output_tokens = max_output_tokens
    high, _ = pricer.cost(base)
    return Estimate(model, provider, tokens, method, max_output_tokens, low, high, version)


def estimate_usage(model: str, req: Any, resp: Any) -> dict[str, int]:
    """Normalised tokens of a call whose response carried no usage (a stream without ``include_usage`` or
    cut off): input from the request's prompt texts (or the exact input of an Anthropic ``message_start``),
    output from the text generated so far. ``req``/``resp`` are ``sources.responses`` RequestInfo /
    ParsedResponse."""
    if resp.input_only is not None:
        tokens = dict(resp.input_only)
    else:
        n, _ = count_prompt(req.texts, model, messages=req.messages, names=req.names)
        tokens = {
            "input_tokens": n + req.token_inputs,
            "cached_input_tokens": 0,
            "cache_write_tokens": 0,
            "cache_write_1h_tokens": 0,
            "reasoning_tokens": 0,
        }
    tokens["output_tokens"], _ = count_tokens("".join(resp.output_texts), model)
    tokens["reasoning_tokens"] = 0  # reasoning is not streamed as text; it cannot be counted
    return tokens
