"""Claude Code session logs: ``~/.claude/projects/<encoded-cwd>/<session>.jsonl`` (formats.md 4.1).

Rules (and where they differ from ccusage / toktrack):

* Only ``type:"assistant"`` lines with ``message.usage``; ``<synthetic>`` placeholders are skipped.
* One API response is written once per content block with repeated usage, the early copies sometimes
  with a partial ``output_tokens``. Key = ``message.id`` + ``requestId`` (``message.id`` alone when there
  is no ``requestId``); among copies keep the non-sidechain one, then the larger total
  (input + output + cache creation + cache read), then the one with ``speed``. toktrack keeps the first
  copy, which under-counts output when that copy is a partial snapshot.
* Sidechain rule: the same ``message.id`` under a different ``requestId`` is a duplicate when either copy
  has ``isSidechain: true``. Cross-file duplicates (resumed sessions, subagent replays) are found through
  the ``run`` dict shared by all files of one import.
* A line without ``message.id`` is never de-duplicated against others; its key is its ``uuid`` (or a hash
  of the line), so re-reading the file still adds nothing.
* Tokens are normalised (domain.py): Claude's ``input_tokens`` excludes the cache, so
  input = input + cache_creation + cache_read. toktrack subtracts cache reads from Claude input, which
  under-counts.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from msgspec import UNSET

from openai_monitor.domain import COLUMNS_OPTION, FIELD_INDEX, ParseReport, RecordColumns, UsageRecord
from openai_monitor.sources.base import (
    MINUTE_EPOCH,
    UNCOUNTED,
    LineReader,
    as_int,
    begin_read,
    expand_roots,
    files_under,
    finish_read,
    json_objects,
    open_binary,
    parse_iso_ts,
    path_basename,
    resume_lineno,
    start_roots,
)

# Split copies of one response are written within milliseconds of each other; 64 pending responses is
# far more than any observed gap between them, and bounds memory.
WINDOW = 64


class ClaudeCodeAdapter:
    name = "claude-code"
    incremental = True
    replace = False

    def default_roots(self) -> list[Path]:
        env = expand_roots(os.environ.get("CLAUDE_CONFIG_DIR"))
        if env:
            roots = []
            for d in env:
                roots.append(d / "projects" if (d / "projects").is_dir() else d)
            return roots
        home = Path.home()
        return [home / ".config" / "claude" / "projects", home / ".claude" / "projects"]

    def discover(self, path: Path | None) -> list[Path]:
        tried = ", ".join(str(r) for r in self.default_roots())
        roots, single = start_roots(
            path,
            self.default_roots(),
            none_found=f"no Claude Code logs found (looked in {tried}); pass --path DIR or set CLAUDE_CONFIG_DIR",
            missing=("no Claude Code logs there", "pass --path DIR with the projects directory"),
        )
        if single is not None:
            return [single]
        if path is not None:
            for sub in (roots[0] / ".claude" / "projects", roots[0] / ".config" / "claude" / "projects"):
                if sub.is_dir():
                    roots = [sub]
                    break
        files: list[Path] = []
        for root in roots:
            files.extend(files_under(root, (".jsonl",)))
        # Main transcripts before subagent ones: on a cross-file tie the non-sidechain copy is seen first.
        files.sort(key=lambda p: ("subagents" in p.parts, str(p)))
        return files

    def shard_key(self, path: Path) -> str:
        """Files that may hold copies of each other's records (one project directory: its sessions,
        resumed sessions and subagent transcripts) must be read by one process, in order."""
        return _project_dir(path) or str(path.parent)

    def read(
        self,
        path: Path,
        *,
        offset: int,
        state: dict,
        run: dict,
        report: ParseReport,
        options: dict,
    ) -> Iterator[UsageRecord | RecordColumns]:
        offset, lineno, skipping = begin_read(path, offset, state, count=False)
        seen: dict[str, list] = run.setdefault("claude-code:seen", {})
        projects: dict[str, str] = run.setdefault("claude-code:projects", {})
        fallback_project = _project_from_dir(path, projects)
        columnar = bool(options.get(COLUMNS_OPTION))
        with open_binary(path) as fh:
            fast = None if skipping else _fast_entries(fh, offset, fallback_project, projects)
            if fast is None:
                lineno = resume_lineno(path, offset, lineno)
                reader = LineReader(fh, offset, lineno, incremental=True, skipping=skipping)
                yield from _emit(
                    _deduplicated(
                        _line_entries(reader, str(path), fallback_project, projects, report), seen, report
                    ),
                    columnar,
                )
                report.lines += reader.lineno - lineno
                finish_read(state, reader)
                return
        entries, end, n_lines = fast
        yield from _emit(_deduplicated(entries, seen, report), columnar)
        report.lines += n_lines  # the JSON lines decoded (blank lines are not counted here)
        # The line count is left to be counted if a later read of this file must number a line
        # (resume_lineno): counting the newlines of 210 MB took 0.08 s, a tenth of reading them.
        state["offset"], state["lines"] = end, UNCOUNTED
        state.pop("in_long_line", None)


# Rows per RecordColumns chunk yielded from a file read line by line (a large file: bounded memory).
_CHUNK_ROWS = 4096


def _emit(rows: Iterable[list], columnar: bool) -> Iterator[UsageRecord | RecordColumns]:
    """ROWS as records, or (COLUMNAR: for a parsing process) as RecordColumns chunks."""
    if not columnar:
        for row in rows:
            yield UsageRecord(*row)
        return
    chunk: list[list] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= _CHUNK_ROWS:
            yield RecordColumns(list(map(list, zip(*chunk))), len(chunk))
            chunk = []
    if chunk:
        yield RecordColumns(list(map(list, zip(*chunk))), len(chunk))


# What one usage line contributes to de-duplication: (its record as a row, message id or None, request
# id, isSidechain, raw token total, whether usage has ``speed``). With no message id the row's key is set.
Entry = tuple[list, "str | None", str, bool, int, bool]
# A record is built as a list of UsageRecord's fields in order (domain.RECORD_FIELDS): a parsing process
# sends columns of them, and building an object per record cost more than the row.
_KEY = FIELD_INDEX["dedup_key"]
_INPUT = FIELD_INDEX["input_tokens"]


def _deduplicated(entries: Iterable[Entry], seen: dict[str, list], report: ParseReport) -> Iterator[list]:
    """The record rows of ENTRIES (one file, in order) with split copies of one response merged (rules in
    the module docstring). SEEN (message id -> [request id, sidechain, key] per kept copy) is shared by
    the files of one import; copies still in the window may be replaced by a better later copy."""
    window: OrderedDict[str, tuple[list, bool, int, bool]] = OrderedDict()
    for rec, mid, rid, sidechain, total, speed in entries:
        if mid is None:
            report.records += 1
            yield rec
            continue
        key = rec[_KEY] = f"claude:{mid}:{rid}" if rid else f"claude:{mid}"
        found = seen.get(mid)
        match = None
        if found is not None:
            for entry in found:
                if entry[0] == rid or entry[1] or sidechain:
                    match = entry
                    break
        if match is None:
            window[key] = (rec, sidechain, total, speed)
            if found is None:
                seen[mid] = [[rid, sidechain, key]]
            else:
                found.append([rid, sidechain, key])
            if len(window) > WINDOW:
                report.records += 1
                yield window.popitem(last=False)[1][0]
            continue
        held = window.get(match[2])
        if held is None:
            continue  # its copy was already yielded (earlier in the file or in another file)
        # Preference: the non-sidechain copy, then the larger total, then the one with `speed`.
        if (not sidechain, total, speed) > (not held[1], held[2], held[3]):
            del window[match[2]]
            window[key] = (rec, sidechain, total, speed)
            match[0], match[1], match[2] = rid, sidechain, key
    for pending in window.values():
        report.records += 1
        yield pending[0]


def _line_entries(
    reader: LineReader, fname: str, fallback_project: str, projects: dict, report: ParseReport
) -> Iterator[Entry]:
    """Entries of the usage lines READER finds, one line at a time; bad lines are reported as
    ``file:line: reason``."""
    for n, line, obj in json_objects(reader.matching(b'"usage"'), fname, report):
        if obj.get("type") != "assistant":
            continue  # e.g. a Task tool result carrying its subagent's usage
        msg = obj.get("message")
        usage = msg.get("usage") if isinstance(msg, dict) else None
        if not isinstance(usage, dict):
            if not isinstance(msg, dict):
                report.error(fname, n, "assistant line without a message object")
            continue
        model = msg.get("model")
        if model == "<synthetic>":
            continue
        try:
            rec, total = _record(
                obj.get("timestamp"),
                usage.get("input_tokens"),
                usage.get("output_tokens"),
                usage.get("cache_creation_input_tokens", 0),
                usage.get("cache_read_input_tokens", 0),
                usage.get("cache_creation"),
                usage.get("output_tokens_details"),
                usage.get("speed"),
                usage.get("service_tier"),
                model,
                obj.get("cwd"),
                obj.get("costUSD"),
                obj.get("sessionId"),
                fallback_project,
                projects,
            )
        except (ValueError, TypeError) as exc:
            report.error(fname, n, str(exc))
            continue
        if rec is None:
            report.error(fname, n, total)
            continue
        entry = _entry(
            rec,
            total,
            msg.get("id"),
            obj.get("uuid"),
            obj.get("requestId"),
            obj.get("isSidechain"),
            "speed" in usage,
        )
        if entry is None:  # no message id, no uuid: keyed by the line's bytes
            rec[_KEY] = "claude:line:" + hashlib.blake2b(line, digest_size=16).hexdigest()
            entry = (rec, None, "", False, total, False)
        yield entry


def _entry(
    rec: list, total: int, mid: Any, uid: Any, rid: Any, sidechain: Any, has_speed: bool
) -> Entry | None:
    """A usage line's entry (its record row keyed where the key is known now), from its message id MID,
    uuid UID, request id RID and isSidechain; None for a line with neither message id nor uuid."""
    if not mid or type(mid) is not str:
        if not (isinstance(uid, str) and uid):
            return None
        rec[_KEY] = f"claude:uuid:{uid}"
        return rec, None, "", False, total, False
    return rec, mid, rid if type(rid) is str else "", sidechain is True, total, has_speed


# -- the fast path: a whole file decoded at once --------------------------------------------------------
#
# msgspec decodes a file's lines into structs holding only the fields used here, skipping the rest (tool
# output, message text) in C: 210 MB of generated logs in 0.25 s against 0.36 s to find the usage lines and
# decode each with orjson, and no dict per line. Any line the fast path cannot take as the line-by-line
# path would (invalid JSON or UTF-8, an unexpected type, a bad value, a line without message id or uuid,
# whose key hashes the line's bytes) sends the whole file to that path, which reports it as file:line.

# Files (the part still to read) above this size are streamed line by line; below MAX_LINE_BYTES, so that
# no line read here can be over-long.
FAST_MAX_BYTES = 32 * 1024 * 1024


class _Usage(msgspec.Struct):
    input_tokens: Any = None
    output_tokens: Any = None
    cache_creation_input_tokens: Any = 0
    cache_read_input_tokens: Any = 0
    cache_creation: Any = None
    output_tokens_details: Any = None
    speed: Any = msgspec.UNSET
    service_tier: Any = None


class _Message(msgspec.Struct):
    id: Any = None
    model: Any = None
    usage: _Usage | None = None


class _Line(msgspec.Struct):
    type: Any = None
    message: _Message | None = None
    timestamp: Any = None
    requestId: Any = None
    isSidechain: Any = None
    uuid: Any = None
    cwd: Any = None
    sessionId: Any = None
    costUSD: Any = None


_DECODER = msgspec.json.Decoder(_Line)


def _fast_entries(
    fh: Any, offset: int, fallback_project: str, projects: dict
) -> tuple[list[Entry], int, int] | None:
    """``(entries, offset after the last complete line, lines read)`` of the file from OFFSET, or None
    when the line-by-line path must read it (too large, or a line it would report or treat apart)."""
    size = os.fstat(fh.fileno()).st_size - offset
    if size > FAST_MAX_BYTES:
        return None
    fh.seek(offset)
    data = fh.read(size + 1)
    end = data.rfind(b"\n") + 1  # a last line without newline may still be being written: left for later
    if end < len(data):
        data = data[:end]
    if b'"usage"' not in data:
        return [], offset + end, data.count(b"\n")
    if not data.isascii():
        try:
            data.decode("utf-8")  # msgspec does not check the text it skips; orjson rejects the line
        except UnicodeDecodeError:
            return None
    try:
        lines = _DECODER.decode_lines(data)
    except msgspec.DecodeError:  # also a field of an unexpected type (msgspec.ValidationError)
        return None
    entries: list[Entry] = []
    add = entries.append
    for o in lines:
        if o.type != "assistant":
            continue
        msg = o.message
        if msg is None:
            return None  # reported by the line-by-line path when the line mentions usage
        usage = msg.usage
        if usage is None:
            continue
        model = msg.model
        if model == "<synthetic>":
            continue
        try:
            rec, total = _record(
                o.timestamp,
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_creation_input_tokens,
                usage.cache_read_input_tokens,
                usage.cache_creation,
                usage.output_tokens_details,
                usage.speed,
                usage.service_tier,
                model,
                o.cwd,
                o.costUSD,
                o.sessionId,
                fallback_project,
                projects,
            )
        except (ValueError, TypeError):
            return None
        if rec is None:
            return None
        entry = _entry(rec, total, msg.id, o.uuid, o.requestId, o.isSidechain, usage.speed is not UNSET)
        if entry is None:
            return None  # keyed by a hash of the line's bytes: the line-by-line path has them
        add(entry)
    return entries, offset + end, len(lines)


def _record(
    ts_raw: Any,
    inp: Any,
    out: Any,
    cc: Any,
    cr: Any,
    detail: Any,
    otd: Any,
    speed: Any,
    service_tier: Any,
    model: Any,
    cwd: Any,
    cost: Any,
    sid: Any,
    fallback_project: str,
    projects: dict,
) -> tuple[list | None, int | str]:
    """The normalised record of one assistant line (its fields as decoded) as a row, and its raw total,
    or (None, reason)."""
    # Inlined fast path of parse_iso_ts: this function runs once per API call in the logs.
    base = (
        MINUTE_EPOCH.get(ts_raw[:16])
        if type(ts_raw) is str and len(ts_raw) >= 20 and ts_raw[-1] == "Z" and ts_raw[19] in ".Z"
        else None
    )
    try:
        ts = base + int(ts_raw[17:19]) if base is not None else parse_iso_ts(ts_raw)
    except ValueError:
        return None, f"bad timestamp {ts_raw!r}"
    if inp is None or out is None:
        return None, "usage without input_tokens/output_tokens"
    if type(inp) is not int or type(out) is not int or type(cc) is not int or type(cr) is not int:
        inp, out, cc, cr = as_int(inp), as_int(out), as_int(cc), as_int(cr)
    cc_1h = detail.get("ephemeral_1h_input_tokens", 0) if type(detail) is dict else 0
    if type(cc_1h) is not int:
        cc_1h = as_int(cc_1h)
    thinking = otd.get("thinking_tokens", 0) if type(otd) is dict else 0
    if type(thinking) is not int:
        thinking = as_int(thinking)
    if cwd and type(cwd) is str:
        project = projects.get(cwd)
        if project is None:
            project = projects[cwd] = path_basename(cwd)
    else:
        project = fallback_project
    tier = ""
    if speed == "fast":
        tier = "fast"
    elif service_tier in ("priority", "batch"):
        tier = service_tier
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, (int, float))):
        return None, f"bad costUSD {cost!r}"
    model = model if type(model) is str else ""
    # In RECORD_FIELDS order: ts, provider, model, dedup_key, source, user, project, api_key_id,
    # session_id, bucket_seconds, requests, input, cached input, cache write, 1h cache write, output,
    # reasoning, cost_usd, cost_reported, price_version, service_tier, tokens_estimated.
    row = [
        ts,
        "anthropic",
        model,
        "",
        "claude-code",
        "",
        project,
        "",
        sid if type(sid) is str else "",
        0,
        1,
        inp + cc + cr,
        cr,
        cc,
        cc_1h,
        out,
        thinking,
        None if cost is None else float(cost),
        cost is not None,
        None,
        tier,
        False,
    ]
    # The row is built so that subset relations hold whenever the raw counts are sane; run the full
    # validate() only when they are not, to get its reason.
    if (
        inp < 0
        or out < 0
        or cc < 0
        or cr < 0
        or not 0 <= cc_1h <= cc
        or not 0 <= thinking <= out
        or not model
    ):
        if inp < 0:
            row[_INPUT] = inp  # adding cache tokens could otherwise hide a negative count
        bad = UsageRecord(*row).validate() or "negative token count"
        if cost is not None and cost < 0:
            bad = "negative cost"
        return None, bad
    if cost is not None and cost < 0:
        return None, "negative cost"
    return row, inp + out + cc + cr


def _project_dir(path: Path) -> str | None:
    """The directory under the last ``projects`` that holds PATH (Claude Code's per-project directory,
    ``-home-me-code-app``), or None when PATH is not below one."""
    parts = path.parts
    if "projects" in parts:
        i = len(parts) - 1 - parts[::-1].index("projects")
        if i + 2 < len(parts):
            return parts[i + 1]
    return None


def _project_from_dir(path: Path, cache: dict) -> str:
    """Project name from the encoded directory (``-home-me-code-app``) when a line has no ``cwd``.

    The encoding replaces ``/``, ``.`` and ``_`` by ``-`` so it cannot be inverted in general; if the
    naive decoding exists on this machine its basename is used, else the directory name as written.
    """
    encoded = _project_dir(path) or path.parent.name
    hit = cache.get("dir:" + encoded)
    if hit is None:
        decoded = "/" + encoded.lstrip("-").replace("-", "/")
        hit = path_basename(decoded) if os.path.isdir(decoded) else encoded
        cache["dir:" + encoded] = hit
    return hit
