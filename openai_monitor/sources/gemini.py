"""Gemini CLI chat recordings: ``~/.gemini/tmp/<project-id>/chats/session-*.json[l]`` (formats.md 4.3).

* Legacy ``.json``: one ``ConversationRecord`` per file, rewritten as the chat grows. Read whole every
  time it changes (the offset is ignored); keys are stable, so records already stored are replaced by
  identical ones.
* ``.jsonl``: append-only. The first line is metadata; message records are re-appended whenever they
  change, so a repeated ``id`` replaces the earlier copy (the LAST copy wins; the adapter sets
  ``replace = True`` so the store does the same across incremental reads). ``{"$set": {...}}`` updates
  metadata (and may carry a ``messages`` list, read like appended records). ``{"$rewindTo": id}``
  truncates the conversation the CLI shows, but the rewound calls were made and billed, so their usage
  is kept.
* Only ``type: "gemini"`` messages with ``tokens`` count. Normalised tokens: input = ``input``
  (promptTokenCount, which includes cached) + ``tool`` (toolUsePromptTokenCount, billed as input);
  cached = ``cached``; output = ``output`` + ``thoughts`` (thoughts are billed as output);
  reasoning = ``thoughts``. toktrack does not read ``.jsonl`` at all and leaves thoughts unpriced.
* Project: the directory ``<project-id>`` resolved through its ``.project_root`` marker or
  ``~/.gemini/projects.json`` (``{"projects": {path: slug}}``), else the session's ``directories``, else
  the directory name itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import orjson

from openai_monitor.domain import ParseReport, UsageRecord
from openai_monitor.sources.base import (
    LineReader,
    as_int,
    begin_read,
    expand_roots,
    files_under,
    finish_read,
    json_error_reason,
    json_objects,
    open_binary,
    parse_iso_ts,
    path_basename,
    start_roots,
)

# A legacy whole-file recording larger than this is not a chat log.
MAX_JSON_BYTES = 256 * 1024 * 1024


class GeminiAdapter:
    name = "gemini"
    incremental = True  # .jsonl files; legacy .json files are re-read whole (see module docstring)
    replace = True

    def default_roots(self) -> list[Path]:
        return expand_roots(os.environ.get("GEMINI_DATA_DIR")) or [Path.home() / ".gemini" / "tmp"]

    def discover(self, path: Path | None) -> list[Path]:
        tried = ", ".join(str(r) for r in self.default_roots())
        roots, single = start_roots(
            path,
            self.default_roots(),
            none_found=f"no Gemini CLI data found in {tried}; pass --path DIR or set GEMINI_DATA_DIR",
            missing=("no Gemini CLI chats there", "pass --path DIR with ~/.gemini/tmp or a chats directory"),
        )
        if single is not None:
            return [single]
        if path is not None:
            root = roots[0]
            roots = [root / "tmp"] if (root / "tmp").is_dir() and not (root / "chats").is_dir() else [root]
        files: list[Path] = []
        for root in roots:
            found = files_under(root, (".json", ".jsonl"))
            chats = [f for f in found if "chats" in f.relative_to(root).parts or root.name == "chats"]
            files.extend(chats)
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
        if path.suffix == ".json":
            yield from self._read_json(path, state, run, report)
            return
        offset, lineno, skipping = begin_read(path, offset, state)
        fname = str(path)
        meta: dict = state.setdefault("meta", {})
        latest: dict[str, tuple[int, dict]] = {}  # message id -> (line, last copy)
        with open_binary(path) as fh:
            reader = LineReader(fh, offset, lineno, incremental=True, skipping=skipping)
            for n, _line, obj in json_objects(reader, fname, report):
                if "$rewindTo" in obj:
                    continue  # billed calls stay counted; see module docstring
                if "$set" in obj:
                    patch = obj["$set"]
                    if not isinstance(patch, dict):
                        report.error(fname, n, "$set without an object")
                        continue
                    _merge_meta(meta, patch)
                    for msg in patch.get("messages") or ():
                        if isinstance(msg, dict) and isinstance(msg.get("id"), str):
                            latest[msg["id"]] = (n, msg)
                    continue
                if isinstance(obj.get("id"), str) and "type" in obj:
                    latest[obj["id"]] = (n, obj)
                elif "sessionId" in obj or "startTime" in obj:
                    _merge_meta(meta, obj)
                    for msg in obj.get("messages") or ():
                        if isinstance(msg, dict) and isinstance(msg.get("id"), str):
                            latest[msg["id"]] = (n, msg)
                else:
                    report.error(fname, n, "unknown record (no id, $set or $rewindTo)")
        session = meta.get("sessionId") or _session_from_name(path)
        project = _project(path, meta, run)
        for n, msg in latest.values():
            yield from _emit(msg, session, project, fname, n, report)
        report.lines += reader.lineno - lineno
        finish_read(state, reader)

    def _read_json(self, path: Path, state: dict, run: dict, report: ParseReport) -> Iterator[UsageRecord]:
        fname = str(path)
        size = path.stat().st_size
        state.clear()
        state["offset"] = size
        if size == 0:
            return
        if size > MAX_JSON_BYTES:
            report.error(fname, 1, f"legacy chat file larger than {MAX_JSON_BYTES // 2**20} MiB skipped")
            return
        with open_binary(path) as fh:
            data = fh.read()
        report.lines += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            report.error(
                fname, data.count(b"\n", 0, getattr(exc, "pos", 0) or 0) + 1, json_error_reason(data, exc)
            )
            return
        if not isinstance(obj, dict) or not isinstance(obj.get("messages"), list):
            report.error(fname, 1, "not a Gemini chat recording (no messages list)")
            return
        meta = {k: v for k, v in obj.items() if k != "messages"}
        session = meta.get("sessionId") or _session_from_name(path)
        project = _project(path, meta, run)
        latest: dict[str, dict] = {}
        for msg in obj["messages"]:
            if isinstance(msg, dict) and isinstance(msg.get("id"), str):
                latest[msg["id"]] = msg
        for msg in latest.values():
            # A pretty-printed file has no meaningful line per message; errors point at line 1.
            yield from _emit(msg, session, project, fname, 1, report)


def _emit(
    msg: dict, session: str, project: str, fname: str, n: int, report: ParseReport
) -> Iterator[UsageRecord]:
    if msg.get("type") != "gemini":
        return
    tokens = msg.get("tokens")
    if not isinstance(tokens, dict):
        return  # a response still streaming, or an error: no usage recorded
    try:
        ts = parse_iso_ts(msg.get("timestamp"))
        inp = as_int(_first(tokens, "input", "prompt", "input_tokens", "prompt_tokens"))
        out = as_int(_first(tokens, "output", "candidates", "output_tokens", "candidates_tokens"))
        cached = as_int(_first(tokens, "cached", "cached_tokens"))
        thoughts = as_int(_first(tokens, "thoughts", "reasoning", "thoughts_tokens"))
        tool = as_int(_first(tokens, "tool", "tool_tokens"))
    except (ValueError, TypeError) as exc:
        report.error(fname, n, f"message {msg.get('id')}: {exc}")
        return
    model = msg.get("model")
    rec = UsageRecord(
        ts=ts,
        provider="google",
        model=model if isinstance(model, str) else "",
        dedup_key=f"gemini:{session}:{msg['id']}",
        source="gemini",
        project=project,
        session_id=session,
        input_tokens=inp + tool,
        cached_input_tokens=cached,
        output_tokens=out + thoughts,
        reasoning_tokens=thoughts,
    )
    if inp < 0 or tool < 0:
        rec.input_tokens = min(inp, tool)
    if out < 0 or thoughts < 0:
        rec.output_tokens = min(out, thoughts)
    bad = rec.validate()
    if bad:
        report.error(fname, n, f"message {msg.get('id')}: {bad}")
        return
    report.records += 1
    yield rec


def _first(d: dict, *names: str) -> object:
    for name in names:
        if name in d:
            return d[name]
    return None


def _merge_meta(meta: dict, patch: dict) -> None:
    for k in ("sessionId", "projectHash", "directories", "startTime"):
        if k in patch and patch[k]:
            meta[k] = patch[k]


def _session_from_name(path: Path) -> str:
    stem = path.stem
    return stem[len("session-") :] if stem.startswith("session-") else stem


def _project(path: Path, meta: dict, run: dict) -> str:
    """Project name for a recording; see the module docstring for the order of sources."""
    parts = path.parts
    if "chats" in parts:
        i = len(parts) - 1 - parts[::-1].index("chats")
        project_dir = Path(*parts[:i])
    else:
        project_dir = path.parent
    cache: dict[str, str] = run.setdefault("gemini:projects", {})
    hit = cache.get(str(project_dir))
    if hit is not None:
        return hit
    name = ""
    marker = project_dir / ".project_root"
    try:
        name = path_basename(marker.read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError):
        name = ""
    if not name:
        registry = project_dir.parent.parent / "projects.json"
        try:
            data = orjson.loads(registry.read_bytes())
            for root, slug in (data.get("projects") or {}).items():
                if slug == project_dir.name:
                    name = path_basename(root)
                    break
        except (OSError, orjson.JSONDecodeError, AttributeError):
            name = ""
    if not name:
        dirs = meta.get("directories")
        if isinstance(dirs, list) and dirs and isinstance(dirs[0], str):
            name = path_basename(dirs[0])
    if not name:
        name = project_dir.name
    cache[str(project_dir)] = name
    return name
