"""OpenAI Codex CLI rollouts: ``~/.codex/sessions/YYYY/MM/DD/rollout-<ts>-<uuid>.jsonl`` (formats.md 4.2).

Every line is ``{"timestamp", "type", "payload"}``. Usage comes from ``event_msg`` / ``token_count``
events whose ``info.total_token_usage`` is cumulative per session; the model is not on those events but
on the latest ``turn_context``.

Rules (and where they differ from ccusage / toktrack):

* One record per ADVANCE of the cumulative totals: delta = total - previous total. Codex re-emits
  ``token_count`` with unchanged totals for UI and rate-limit refreshes; those are ignored. ccusage (at
  the HEAD in formats.md) adds ``last_token_usage`` for every event and so counts each re-emit again.
* When the totals go backwards (a reset), ``last_token_usage`` is that call's usage and the totals
  restart from there.
* Sub-agent / fork files (``thread_spawn`` in the first 16 KB) start by replaying the parent's events
  as a burst within one second; when the first two ``token_count`` events share a second, that burst
  is the baseline, not usage.
* Key = session id + reset epoch + cumulative position, so re-reading a file (or the same rollout in
  ``archived_sessions/``) gives the same keys. toktrack keeps only the last total per file, which puts a
  multi-day session on its last day.
* Codex counts cached input inside input and reasoning inside output: already the normalised semantics.
* A call whose model is unknown gets model ``codex-unknown`` (reported unpriced) instead of being priced
  as some default model.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import orjson

from openai_monitor.domain import PROVIDERS, ParseReport, UsageRecord
from openai_monitor.sources.base import (
    LONG_LINE,
    LineReader,
    as_int,
    begin_read,
    files_under,
    finish_read,
    json_error_reason,
    open_binary,
    parse_iso_ts,
    path_basename,
    start_roots,
)

UNKNOWN_MODEL = "codex-unknown"
_SESSION_IN_NAME = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})", re.I)
_ALIASES = {
    "input": ("input_tokens", "prompt_tokens", "input"),
    "cached": ("cached_input_tokens", "cache_read_input_tokens", "cached_tokens"),
    "output": ("output_tokens", "completion_tokens", "output"),
    "reasoning": ("reasoning_output_tokens", "reasoning_tokens"),
    "total": ("total_tokens",),
}
_FIELDS = ("input", "cached", "output", "reasoning", "total")


def _usage(obj: object) -> list[int] | None:
    """``[input, cached, output, reasoning, total]`` from a TokenUsage object (field aliases accepted)."""
    if not isinstance(obj, dict):
        return None
    out = []
    for f in _FIELDS:
        value = None
        for alias in _ALIASES[f]:
            if alias in obj:
                value = obj[alias]
                break
        out.append(as_int(value))
    if out[4] == 0:
        out[4] = out[0] + out[2]
    return out


class CodexAdapter:
    name = "codex"
    incremental = True
    replace = False

    def default_roots(self) -> list[Path]:
        home = Path(os.path.expanduser(os.environ.get("CODEX_HOME") or "~/.codex"))
        return [home / "sessions", home / "archived_sessions"]

    def discover(self, path: Path | None) -> list[Path]:
        roots, single = start_roots(
            path,
            self.default_roots(),
            none_found=f"no Codex sessions found in {self.default_roots()[0]}; pass --path DIR or set CODEX_HOME",
            missing=("no Codex sessions there", "pass --path DIR with the sessions directory"),
        )
        if single is not None:
            return [single]
        if path is not None:
            subs = [roots[0] / "sessions", roots[0] / "archived_sessions"]
            roots = [s for s in subs if s.is_dir()] or roots
        files: list[Path] = []
        for root in roots:
            # sessions/ first: when a rollout is also archived, the live copy is read first.
            files.extend(files_under(root, (".jsonl",)))
        return files

    def read(
        self,
        path: Path,
        *,
        offset: int,
        state: dict,
        run: dict,
        report: ParseReport,
        options: dict,
    ) -> Iterator[UsageRecord]:
        offset, lineno, skipping = begin_read(path, offset, state)
        fname = str(path)
        if offset == 0:
            m = _SESSION_IN_NAME.search(path.name)
            state.update(
                session_id=m.group(1) if m else path.stem,
                model="",
                project="",
                provider="openai",
                totals=None,
                epoch=0,
                phase=None,
            )
        with open_binary(path) as fh:
            if offset == 0:
                head = fh.read(16384)
                # A spawned sub-agent or fork replays its parent's events first (formats.md 4.2).
                state["phase"] = "start" if b"thread_spawn" in head else None
            reader = LineReader(fh, offset, lineno, incremental=True, skipping=skipping)
            for n, line in reader:
                if line is None:
                    report.error(fname, n, LONG_LINE)
                    continue
                if not (b'"token_count"' in line or b'"turn_context"' in line or b'"session_meta"' in line):
                    continue
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    report.error(fname, n, json_error_reason(line, exc))
                    continue
                if not isinstance(obj, dict) or not isinstance(obj.get("payload"), dict):
                    report.error(fname, n, "not a rollout line (no payload object)")
                    continue
                kind, payload = obj.get("type"), obj["payload"]
                if kind == "session_meta":
                    _session_meta(payload, state)
                elif kind == "turn_context":
                    if isinstance(payload.get("model"), str) and payload["model"]:
                        state["model"] = payload["model"]
                    if isinstance(payload.get("cwd"), str) and payload["cwd"]:
                        state["project"] = path_basename(payload["cwd"])
                elif kind == "event_msg" and payload.get("type") == "token_count":
                    try:
                        ts = parse_iso_ts(obj.get("timestamp"))
                        event = _event(payload, ts, state)
                    except (ValueError, TypeError) as exc:
                        report.error(fname, n, str(exc))
                        continue
                    if event is None:
                        continue
                    for rec in self._advance(event, state):
                        bad = rec.validate()
                        if bad:
                            report.error(fname, n, bad)
                            continue
                        report.records += 1
                        yield rec
            if state.get("phase") == "pending":
                # A lone first event at the end of what is written so far: not a burst.
                event = state["pending"]
                state["phase"] = "done"
                del state["pending"]
                for rec in self._emit(event, state):
                    report.records += 1
                    yield rec
        report.lines += reader.lineno - lineno
        finish_read(state, reader)

    def _advance(self, event: dict, state: dict) -> Iterator[UsageRecord]:
        """Apply the sub-agent replay rule, then emit the event's delta."""
        phase = state.get("phase")
        if phase == "start":
            state["phase"], state["pending"] = "pending", event
            return
        if phase == "pending":
            first = state.pop("pending")
            if event["ts"] == first["ts"] and event["total"] is not None:
                # Replay burst: the replayed totals are the parent's, already counted in its file.
                state["phase"], state["burst_ts"] = "burst", first["ts"]
                state["totals"] = event["total"]
                return
            state["phase"] = "done"
            yield from self._emit(first, state)
        elif phase == "burst":
            if event["ts"] == state["burst_ts"] and event["total"] is not None:
                state["totals"] = event["total"]
                return
            state["phase"] = "done"
        yield from self._emit(event, state)

    def _emit(self, event: dict, state: dict) -> Iterator[UsageRecord]:
        total, last, prev = event["total"], event["last"], state.get("totals")
        if total is not None:
            if prev is None:
                delta = total
            elif total == prev:
                return  # a re-emitted event: the totals did not advance
            elif all(t >= p for t, p in zip(total, prev)):
                delta = [t - p for t, p in zip(total, prev)]
            else:
                state["epoch"] = state.get("epoch", 0) + 1
                delta = last if last is not None else total
            state["totals"] = total
            position = total
        elif last is not None:
            # No cumulative totals at all: keep our own running sum as the position.
            delta = last
            base = prev or [0, 0, 0, 0, 0]
            position = state["totals"] = [a + b for a, b in zip(base, last)]
        else:
            return
        inp, cached, out, reasoning, _ = delta
        if inp == 0 and out == 0 and cached == 0 and reasoning == 0:
            return
        sid = state.get("session_id", "")
        yield UsageRecord(
            ts=event["ts"],
            provider=state.get("provider") or "openai",
            model=event["model"] or state.get("model") or UNKNOWN_MODEL,
            dedup_key=f"codex:{sid}:{state.get('epoch', 0)}:{position[4]}:{position[0]}:{position[2]}",
            source="codex",
            project=state.get("project", ""),
            session_id=sid,
            # Codex has cached within input and reasoning within output; clamp as ccusage does.
            input_tokens=inp,
            cached_input_tokens=min(cached, inp) if inp >= 0 else cached,
            output_tokens=out,
            reasoning_tokens=min(reasoning, out) if out >= 0 else reasoning,
        )


def _session_meta(payload: dict, state: dict) -> None:
    sid = payload.get("id")
    if isinstance(sid, str) and sid:
        state["session_id"] = sid
    cwd = payload.get("cwd")
    if isinstance(cwd, str) and cwd:
        state["project"] = path_basename(cwd)
    provider = payload.get("model_provider")
    if isinstance(provider, str) and provider:
        p = provider.lower()
        state["provider"] = p if p in PROVIDERS else ("openai" if p.startswith("openai") else "other")
    model = payload.get("model")
    if isinstance(model, str) and model and not state.get("model"):
        state["model"] = model


def _event(payload: dict, ts: int, state: dict) -> dict | None:
    info = payload.get("info")
    if not isinstance(info, dict):
        return None  # a rate-limit-only event
    total = _usage(info.get("total_token_usage"))
    last = _usage(info.get("last_token_usage"))
    model = ""
    for holder in (payload, info):
        for k in ("model", "model_name"):
            if isinstance(holder.get(k), str) and holder[k]:
                model = holder[k]
                break
        if model:
            break
    if total is None and last is None:
        return None
    return {"ts": ts, "total": total, "last": last, "model": model or state.get("model", "")}
