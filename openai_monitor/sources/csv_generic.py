"""Usage tables from files: generic CSV / JSONL, and the BurstGPT trace layouts.

Generic (``options["format"] == "generic"``, the default): CSV, or JSONL with one object per line
(chosen by extension ``.jsonl``/``.ndjson``, else by sniffing a leading ``{``). Columns (header names are
case-insensitive; ``options["map"] = {"column_in_file": "field"}`` renames):

    timestamp (ISO 8601, or Unix seconds; values above 1e11 are taken as milliseconds), model   required
    (a file without a model column, e.g. a public trace of one deployment, needs ``options["model"]``)
    With ``options["start"]`` (a date), timestamps are offsets from it instead, in seconds, or milliseconds
    with ``options["time_unit"] = "ms"`` (traces such as Mooncake's count from their start).
    provider, user, project, api_key_id, session_id, id, requests (default 1), bucket_seconds (default 0),
    input_tokens, cached_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_usd  optional

Token semantics are OpenAI's: ``input_tokens`` INCLUDES cached and cache-write tokens, ``output_tokens``
includes reasoning tokens (the normalised semantics of domain.py). A missing provider is taken from
``options["provider"]``, else guessed from the model name (gpt/o-series -> openai, claude -> anthropic,
gemini -> google, mistral family -> mistral, else other). ``options`` may also give defaults for
``model``, ``user``, ``project`` and ``api_key_id`` (used where a row has none). A ``cost_usd`` value is
stored as reported by the source.

De-duplication key: the ``id`` column when present; otherwise a hash of the normalised record plus its
occurrence index among identical rows of the file, so importing a file twice adds nothing while two
identical calls in one file are both kept.

BurstGPT (``format == "burstgpt"``, HPMLL/BurstGPT, CC BY 4.0), two layouts told apart by the header:

* raw ``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``: one request per row,
  ``Timestamp`` in seconds since the trace start, so ``options["start"]`` (a date or datetime, naive =
  UTC) is required. Models: ``ChatGPT`` -> ``gpt-3.5-turbo``, ``GPT-4`` -> ``gpt-4`` (the trace is Azure
  OpenAI traffic of those two families; provider ``openai``). User = the log type, ``conversation`` or
  ``api``. Rows with 0 response tokens are failed requests: kept, with their tokens.
* hourly aggregate ``day,hour,conversation,api,all``: one bucket record per non-zero cell
  (``bucket_seconds = 3600``, ``requests`` = the count, no tokens, model ``unknown-burstgpt`` so they are
  counted as unpriced), user ``conversation`` / ``api``.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from hashlib import blake2b
from itertools import chain, islice, repeat
from operator import add, gt
from pathlib import Path

import orjson

from openai_monitor.domain import (
    COLUMNS_OPTION,
    PROVIDERS,
    TOKEN_FIELDS,
    ParseReport,
    RecordColumns,
    UsageRecord,
)
from openai_monitor.errors import InputError
from openai_monitor.sources.base import (
    LONG_LINE,
    MINUTE_EPOCH,
    LineReader,
    datetime_to_ts,
    files_under,
    json_objects,
    minute_epoch,
    open_binary,
    parse_iso_ts,
)

FIELDS = (
    "timestamp",
    "provider",
    "model",
    "user",
    "project",
    "api_key_id",
    "session_id",
    "id",
    "requests",
    "bucket_seconds",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
)
REQUIRED = ("timestamp", "model")
# Common spellings in exports, accepted without a --map.
ALIASES = {
    "cached_input_tokens": "cached_tokens",
    "prompt_tokens": "input_tokens",
    "completion_tokens": "output_tokens",
    "cost": "cost_usd",
    "time": "timestamp",
    "date": "timestamp",
}
_INT_FIELDS = (
    "requests",
    "bucket_seconds",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)

# Field order of the row fast path (``_Builder.build_row``).
_ROW_FIELDS = (
    "timestamp",
    "provider",
    "model",
    "user",
    "project",
    "api_key_id",
    "session_id",
    "id",
    "requests",
    "bucket_seconds",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
)

# Rows checked and built together by ``_Builder.build_many``; a chunk with a row it cannot vouch for is
# built again row by row, so one malformed line costs at most this many rows on the slow path.
CHUNK_ROWS = 2048

BURSTGPT_RAW = ("timestamp", "model", "request tokens", "response tokens", "total tokens", "log type")
BURSTGPT_HOURLY = ("day", "hour", "conversation", "api", "all")
BURSTGPT_MODELS = {"chatgpt": "gpt-3.5-turbo", "gpt-4": "gpt-4"}
BURSTGPT_HOURLY_MODEL = "unknown-burstgpt"


def guess_provider(model: str) -> str:
    m = model.lower()
    if m.startswith(("gpt", "o1", "o3", "o4", "chatgpt", "text-embedding", "davinci", "babbage", "codex")):
        return "openai"
    if m.startswith("claude"):
        return "anthropic"
    if m.startswith(("gemini", "gemma")):
        return "google"
    if m.startswith(
        ("mistral", "codestral", "magistral", "ministral", "pixtral", "devstral", "open-mistral")
    ):
        return "mistral"
    return "other"


def parse_start(value: object) -> int:
    """``--start`` as Unix seconds: a date (midnight UTC), a datetime (naive = UTC) or ISO text."""
    if isinstance(value, dt.datetime):
        return datetime_to_ts(value)
    if isinstance(value, dt.date):
        return datetime_to_ts(dt.datetime(value.year, value.month, value.day))
    if isinstance(value, str) and value.strip():
        try:
            return parse_iso_ts(
                value.strip() if "T" in value or " " in value.strip() else value.strip() + "T00:00:00"
            )
        except ValueError:
            pass
    raise InputError(f"invalid --start {value!r}; give a date such as --start 2024-01-01")


def parse_ts(value: str) -> int:
    """Unix seconds (or milliseconds above 1e11) or ISO 8601 text to Unix seconds."""
    v = value.strip()
    try:
        num = float(v)
    except ValueError:
        num = None
    if num is not None:
        if num != num or num in (float("inf"), float("-inf")):
            raise ValueError(f"bad timestamp {value!r}")
        return int(num / 1000) if abs(num) > 1e11 else int(num)
    if len(v) == 10 and v[4] == "-":
        v += "T00:00:00"
    return parse_iso_ts(v)


def _int(value: object, name: str) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise ValueError(f"{name}: not a number: {value!r}")
    if isinstance(value, int):
        return value
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: not a number: {value!r}") from None
    if f != int(f):
        raise ValueError(f"{name}: not a whole number: {value!r}")
    return int(f)


class CsvAdapter:
    name = "csv"
    incremental = False
    replace = False

    def discover(self, path: Path | None) -> list[Path]:
        if path is None:
            raise InputError("no file given; pass the CSV or JSONL file: oaim import csv FILE")
        path = Path(os.path.expanduser(str(path)))
        if not path.exists():
            raise InputError(
                f"{path} does not exist; pass an existing CSV or JSONL file: oaim import csv FILE"
            )
        if path.is_file():
            return [path]
        files = files_under(path, (".csv", ".jsonl", ".ndjson"))
        if not files:
            raise InputError(f"no .csv or .jsonl files in {path}; pass a file: oaim import csv FILE")
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
    ) -> Iterator[UsageRecord | RecordColumns]:
        check_options(options)
        fmt = (options.get("format") or "generic").lower()
        fname = str(path)
        head = _head(path) if fmt == "generic" else b""
        if head.startswith(b"["):
            raise InputError(
                f"{fname} is one JSON array; import JSON Lines (one object per line) instead: "
                f"`oaim export -f jsonl`, or convert it with jq -c '.[]' {fname} > records.jsonl"
            )
        with open_binary(path) as fh:
            reader = LineReader(fh, 0, 0, incremental=False)
            lines = self._decoded(reader, partial(report.error, fname))
            if fmt == "burstgpt":
                yield from self._burstgpt(lines, fname, report, options)
            elif path.suffix.lower() in (".jsonl", ".ndjson") or (
                path.suffix.lower() != ".csv" and head.startswith(b"{")
            ):
                yield from self._jsonl(lines, fname, report, options)
            else:
                yield from self._generic_csv(reader, fname, report, options)
        report.lines += reader.lineno
        state["offset"] = reader.offset
        state["lines"] = reader.lineno

    # --- line handling ----------------------------------------------------------------------

    @staticmethod
    def _decoded(reader: LineReader, on_error: Callable[[int, str], object]) -> Iterator[tuple[int, str]]:
        """Decoded lines with their numbers; non-UTF-8 and over-long lines are skipped and passed to
        ``on_error(line number, reason)``."""
        for n, raw in reader:
            if raw is None:
                on_error(n, LONG_LINE)
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                on_error(n, f"invalid UTF-8 at byte {exc.start}")
                continue
            if n == 1 and text.startswith("\ufeff"):
                text = text[1:]  # spreadsheet exports start with a byte-order mark
            yield n, text

    # --- generic ------------------------------------------------------------------------------

    def _columns(self, header: list[str], fname: str, options: dict) -> dict[str, int]:
        mapping = {k.strip().lower(): v.strip().lower() for k, v in (options.get("map") or {}).items()}
        for target in mapping.values():
            if target not in FIELDS:
                raise InputError(f"--map target {target!r} is not a field; fields are: {', '.join(FIELDS)}")
        if not mapping and tuple(h.strip().lower() for h in header) in (BURSTGPT_RAW, BURSTGPT_HOURLY):
            # Its Timestamp column would pass as generic, but holds seconds from the trace start.
            raise InputError(f"{fname} is a BurstGPT trace; import it with --format burstgpt --start DATE")
        cols: dict[str, int] = {}
        for i, name in enumerate(header):
            key = name.strip().lower()
            field = mapping.get(key) or (key if key in FIELDS else ALIASES.get(key))
            if field and field not in cols:
                cols[field] = i
        missing = [f for f in REQUIRED if f not in cols and not (f == "model" and options.get("model"))]
        if missing:
            found = ", ".join(h.strip() for h in header) or "(none)"
            hint = " ".join(f"--map {_likely_column(header, cols, f)}={f}" for f in missing)
            also = " (or give every row one model with --model NAME)" if "model" in missing else ""
            raise InputError(
                f"{fname}: missing column(s) {', '.join(missing)}; found columns: {found}. "
                f"Map yours with {hint}{also}"
            )
        return cols

    def _generic_csv(
        self, reader: LineReader, fname: str, report: ParseReport, options: dict
    ) -> Iterator[UsageRecord | RecordColumns]:
        current = [0]
        # Unreadable lines (n, reason), reported in line order with the rows' own errors: rows are
        # checked a chunk at a time, after the reader has skipped the chunk's bad lines.
        skipped: deque[tuple[int, str]] = deque()

        def feed(lines: Iterable[tuple[int, str]]) -> Iterator[str]:
            # The newline csv.reader wants, and the number of the line it last read.
            for n, text in lines:
                current[0] = n
                yield text + "\n"

        def flush(before: int) -> None:
            while skipped and skipped[0][0] < before:
                report.error(fname, *skipped.popleft())

        src = self._decoded(reader, lambda n, reason: skipped.append((n, reason)))
        # csv.reader reads no further than the record it returns: the lines after the header stay in src.
        header = next(csv.reader(feed(src)), None)
        flush(current[0] + 1)
        if header is None:
            flush(reader.lineno + 1)
            return
        if is_export(header, options, fname):
            rows = csv.reader(feed(src))
            yield from _restore(
                ((current[0], dict(zip(header, row)), len(row) != len(header)) for row in rows if row),
                fname,
                report,
            )
            flush(reader.lineno + 1)
            return
        cols = self._columns(header, fname, options)
        width = len(header)
        builder = _Builder(fname, options)
        # Absent optional columns read the empty string appended to every row at index ``width``.
        at = [cols.get(f, width) for f in _ROW_FIELDS]
        build = builder.build_row

        columnar = bool(options.get(COLUMNS_OPTION))

        def built(
            chunk: list[list[str]], lines: list[int] | tuple[int, ...]
        ) -> Iterator[UsageRecord | RecordColumns]:
            if columnar:
                columns = builder.build_columns(chunk, at, width)
                if columns is not None:
                    flush(lines[-1])
                    report.records += len(chunk)
                    yield RecordColumns(columns, len(chunk))
                    return
            recs = builder.build_many(chunk, at, width)
            if recs is not None:
                flush(lines[-1])
                report.records += len(recs)
                yield from recs
                return
            for row, n in zip(chunk, lines):
                flush(n)
                if len(row) != width:
                    if not row or (len(row) == 1 and not row[0].strip()):
                        continue
                    report.error(fname, n, f"expected {width} fields, found {len(row)}")
                    continue
                row.append("")
                rec = build(row, at, n, report)
                if rec is not None:
                    report.records += 1
                    yield rec

        limit = csv.field_size_limit()
        # Lines without quotes, carriage returns or NULs, none longer than csv's field limit, are
        # exactly what csv.reader makes of them split at the commas. They are read a run of lines
        # (a 4 MB read) at a time, decoded and split at once (1M lines: 0.3 s less than line by line).
        # From the first run that is not plain, or not UTF-8, the lines are read one by one again, and
        # from the first chunk of those that is not plain csv.reader reads the rest of the file (a
        # quoted field may span lines).
        runs = reader.blocks()
        for run in runs:
            first = reader.lineno + 1
            try:
                text = run.decode("utf-8")
            except UnicodeDecodeError:
                break
            if '"' in text or "\r" in text or "\x00" in text:
                break
            texts = text.split("\n")
            if max(map(len, texts)) > limit:
                break
            for i in range(0, len(texts), CHUNK_ROWS):
                part = texts[i : i + CHUNK_ROWS]
                yield from built(
                    list(map(str.split, part, repeat(","))), range(first + i, first + i + len(part))
                )
        runs.close()  # a run left unused is read again below, line by line, from the reader's offset
        src = self._decoded(reader, lambda n, reason: skipped.append((n, reason)))
        while True:
            pairs = list(islice(src, CHUNK_ROWS))
            if not pairs:
                break
            lines, texts = zip(*pairs)
            blob = "\n".join(texts)
            if '"' in blob or "\r" in blob or "\x00" in blob or max(map(len, texts)) > limit:
                src = chain(pairs, src)
                break
            yield from built(list(map(str.split, texts, repeat(","))), lines)
        chunk: list[list[str]] = []
        nums: list[int] = []
        for row in csv.reader(feed(src)):
            chunk.append(row)
            nums.append(current[0])
            if len(chunk) >= CHUNK_ROWS:
                yield from built(chunk, nums)
                chunk, nums = [], []
        if chunk:
            yield from built(chunk, nums)
        flush(reader.lineno + 1)

    def _jsonl(
        self, lines: Iterator[tuple[int, str]], fname: str, report: ParseReport, options: dict
    ) -> Iterator[UsageRecord]:
        objects = ((n, obj) for n, _line, obj in json_objects(lines, fname, report))
        first = next(objects, None)
        if first is None:
            return
        objects = chain([first], objects)
        if is_export(list(first[1]), options, fname):
            yield from _restore(((n, obj, False) for n, obj in objects), fname, report)
            return
        builder = _Builder(fname, options)
        cols: dict[str, str] | None = None
        for n, obj in objects:
            if cols is None:
                # The first object decides the columns, as a CSV header would.
                header = list(obj)
                idx = self._columns(header, fname, options)
                cols = {f: header[i] for f, i in idx.items()}
            values = {f: obj.get(k) for f, k in cols.items()}
            values = {
                f: ("" if v is None else v if isinstance(v, str) else _scalar(v)) for f, v in values.items()
            }
            rec = builder.build(values, n, report)
            if rec is not None:
                report.records += 1
                yield rec

    # --- BurstGPT -----------------------------------------------------------------------------

    def _burstgpt(
        self, lines: Iterator[tuple[int, str]], fname: str, report: ParseReport, options: dict
    ) -> Iterator[UsageRecord]:
        first = next(lines, None)
        if first is None:
            return
        header = tuple(h.strip().lower() for h in next(csv.reader([first[1]])))
        start = parse_start(options["start"])  # required (check_options)
        if header == BURSTGPT_RAW:
            yield from self._burstgpt_raw(lines, fname, report, start)
        elif header == BURSTGPT_HOURLY:
            yield from self._burstgpt_hourly(lines, fname, report, start)
        else:
            raise InputError(
                f"{fname}: not a BurstGPT layout; found columns: {', '.join(header)}. Expected "
                f"{','.join(BURSTGPT_RAW)} or {','.join(BURSTGPT_HOURLY)}; for other tables use --format generic"
            )

    def _burstgpt_raw(
        self, lines: Iterator[tuple[int, str]], fname: str, report: ParseReport, start: int
    ) -> Iterator[UsageRecord]:
        seen: dict[str, int] = {}
        for n, text in lines:
            if not text.strip():
                continue
            row = text.rstrip("\r").split(",")
            if len(row) != 6:
                report.error(fname, n, f"expected 6 fields, found {len(row)}")
                continue
            try:
                secs = float(row[0])
                if secs != secs or secs < 0:
                    raise ValueError(f"bad Timestamp {row[0]!r}")
                req = _int(row[2], "Request tokens")
                resp = _int(row[3], "Response tokens")
            except ValueError as exc:
                report.error(fname, n, str(exc))
                continue
            raw_model = row[1].strip()
            model = BURSTGPT_MODELS.get(raw_model.lower(), raw_model)
            user = row[5].strip().split(" ")[0].lower()
            rec = UsageRecord(
                ts=start + int(secs),
                provider="openai",
                model=model,
                dedup_key="",
                source="burstgpt",
                user=user,
                input_tokens=req,
                output_tokens=resp,
            )
            bad = rec.validate()
            if bad:
                report.error(fname, n, bad)
                continue
            digest = hashlib.blake2b(
                f"{rec.ts}|{model}|{user}|{req}|{resp}".encode(), digest_size=16
            ).hexdigest()
            k = seen.get(digest, 0)
            seen[digest] = k + 1
            rec.dedup_key = f"burstgpt:{digest}" + (f"#{k + 1}" if k else "")
            report.records += 1
            yield rec

    def _burstgpt_hourly(
        self, lines: Iterator[tuple[int, str]], fname: str, report: ParseReport, start: int
    ) -> Iterator[UsageRecord]:
        for n, text in lines:
            if not text.strip():
                continue
            row = text.rstrip("\r").split(",")
            if len(row) != 5:
                report.error(fname, n, f"expected 5 fields, found {len(row)}")
                continue
            try:
                day, hour, conv, api, total = (_int(v, name) for v, name in zip(row, BURSTGPT_HOURLY))
            except ValueError as exc:
                report.error(fname, n, str(exc))
                continue
            if day < 0 or not 0 <= hour < 24 or conv < 0 or api < 0:
                report.error(fname, n, "day/hour out of range or negative count")
                continue
            if conv + api != total:
                report.error(fname, n, f"conversation + api = {conv + api} but all = {total}")
                continue
            ts = start + day * 86400 + hour * 3600
            for user, count in (("conversation", conv), ("api", api)):
                if count == 0:
                    continue
                report.records += 1
                yield UsageRecord(
                    ts=ts,
                    provider="openai",
                    model=BURSTGPT_HOURLY_MODEL,
                    dedup_key=f"burstgpt-hourly:{ts}:{user}",
                    source="burstgpt",
                    user=user,
                    bucket_seconds=3600,
                    requests=count,
                )


# ":SSZ", the end of a ``YYYY-MM-DDTHH:MM:SSZ`` stamp, -> its seconds (60 passes, as in parse_iso_ts).
_SECOND = {f":{sec:02d}Z": sec for sec in range(61)}


def _column_ts(values: tuple[str, ...]) -> list[int]:
    """A chunk's timestamp cells as ``build_row`` reads them. The common ``YYYY-MM-DDTHH:MM:SSZ``
    column is read at once: its minutes computed once each, as ``parse_iso_ts`` computes them, then
    the seconds added; any other column goes cell by cell through ``build_row``'s own reading."""
    if min(map(len, values)) == 20 == max(map(len, values)):
        secs = list(map(_SECOND.get, [v[16:] for v in values]))
        if None not in secs:
            heads = [v[:16] for v in values]
            bases = list(map(MINUTE_EPOCH.get, heads))
            if None in bases:
                for head in dict.fromkeys(heads):
                    if head not in MINUTE_EPOCH:
                        try:
                            minute_epoch(head)  # remembered in MINUTE_EPOCH
                        except ValueError:
                            pass  # read cell by cell below, with build_row's reasons
                bases = list(map(MINUTE_EPOCH.get, heads))
            if None not in bases:
                return list(map(add, bases, secs))
    minute = MINUTE_EPOCH.get
    return [
        b + int(v[17:19])
        if len(v) == 20
        and v[19] == "Z"
        and (b := minute(v[:16])) is not None
        and v[16] == ":"
        and v[17:19].isdecimal()
        and v[17:19] < "61"
        else _row_ts(v)
        for v in values
    ]


def _row_ts(value: str) -> int:
    """A CSV timestamp cell as ``build_row`` reads it, with its error reasons."""
    if not value.strip():
        raise ValueError("missing timestamp")
    try:
        return parse_ts(value)
    except ValueError:
        raise ValueError(f"bad timestamp {value!r}") from None


# Words in a column name that suggest a required field, for the hint of a missing-column error.
_LIKELY = {
    "timestamp": ("time", "date", "created", "start", "when", "ts"),
    "model": ("model", "engine", "deployment", "sku"),
}


def _likely_column(header: list[str], cols: dict[str, int], field: str) -> str:
    """A column of HEADER (not already used) that looks like FIELD, or the placeholder ``COLUMN``."""
    used = set(cols.values())
    for i, name in enumerate(header):
        key = name.strip().lower()
        if i not in used and any(w in key if len(w) > 2 else w == key for w in _LIKELY.get(field, ())):
            name = name.strip()
            return name if name.replace("_", "").replace("-", "").isalnum() else f"'{name}'"
    return "COLUMN"


def _scalar(v: object) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        return repr(v) if isinstance(v, float) else str(v)
    return orjson.dumps(v).decode()


def _head(path: Path) -> bytes:
    """The file's first bytes after a byte-order mark and white space."""
    with open(path, "rb") as fh:
        return fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")


# The columns that make a file an ``oaim export`` of records (CSV or JSON Lines).
EXPORT_MARK = ("ts", "dedup_key", "source", "cost_reported")
_EXPORT_INTS = ("ts", "bucket_seconds", "requests", *TOKEN_FIELDS)


# Options of the generic reading that an export's restore cannot honour (its records are kept as stored).
_NOT_FOR_EXPORTS = ("provider", "model", "user", "project", "start", "time_unit")


def is_export(header: list[str], options: dict, fname: str = "") -> bool:
    """Whether a header (or the first JSON object's keys) is that of ``oaim export --what records``:
    then the file is restored as it was stored (without ``--map``, which asks for the generic reading).
    Raises InputError when OPTIONS ask for something a restore would ignore (a default user, ...)."""
    if options.get("map") or not set(EXPORT_MARK) <= {h.strip().lower() for h in header}:
        return False
    given = [f"--{k.replace('_', '-')}" for k in _NOT_FOR_EXPORTS if options.get(k) not in (None, "")]
    if given:
        raise InputError(
            f"{fname or 'this file'} is an `oaim export`, restored as it was stored, so {', '.join(given)} "
            f"would be ignored: leave {'them' if len(given) > 1 else 'it'} out (or add --map to read it as a "
            "generic file)"
        )
    return True


def _flag(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true"):
        return True
    if text in ("0", "false", "", "none"):
        return False
    raise ValueError(f"{name}: not a boolean: {value!r}")


def _restore(
    rows: Iterable[tuple[int, dict, bool]], fname: str, report: ParseReport
) -> Iterator[UsageRecord]:
    """Records of an ``oaim export`` (rows of ``(line, {column: value}, wrong width)``), as they were
    stored: the same de-duplication keys (so a restored or merged history never counts a call twice,
    and later imports of the original logs add nothing), sources, service tiers and billed costs.
    Costs computed by the exporting install are computed again here, with this install's prices. The
    row ``id``, ``imported_at`` and ``shadowed`` columns belong to the exporting database: ignored."""
    for n, raw, bad_width in rows:
        if bad_width:
            report.error(fname, n, "wrong number of fields for an oaim export")
            continue
        v = {str(k).strip().lower(): val for k, val in raw.items()}
        try:
            ints = {f: _int(v.get(f), f) for f in _EXPORT_INTS}
            cost_raw = v.get("cost_usd")
            cost = float(cost_raw) if cost_raw is not None and str(cost_raw).strip() else None
            if cost is not None and cost != cost:
                raise ValueError("cost_usd is NaN")
            reported = _flag(v.get("cost_reported"), "cost_reported") and cost is not None
            estimated = _flag(v.get("tokens_estimated"), "tokens_estimated")
        except ValueError as exc:
            report.error(fname, n, str(exc))
            continue
        key = str(v.get("dedup_key") or "").strip()
        provider = str(v.get("provider") or "").strip()
        if not key:
            report.error(fname, n, "empty dedup_key")
            continue
        if provider not in PROVIDERS:
            report.error(fname, n, f"unknown provider {provider!r} (one of {', '.join(PROVIDERS)})")
            continue
        rec = UsageRecord(
            ts=ints["ts"],
            provider=provider,
            model=str(v.get("model") or "").strip(),
            dedup_key=key,
            source=str(v.get("source") or "").strip() or "csv",
            user=str(v.get("user") or ""),
            project=str(v.get("project") or ""),
            api_key_id=str(v.get("api_key_id") or ""),
            session_id=str(v.get("session_id") or ""),
            bucket_seconds=ints["bucket_seconds"],
            requests=ints["requests"],
            input_tokens=ints["input_tokens"],
            cached_input_tokens=ints["cached_input_tokens"],
            cache_write_tokens=ints["cache_write_tokens"],
            cache_write_1h_tokens=ints["cache_write_1h_tokens"],
            output_tokens=ints["output_tokens"],
            reasoning_tokens=ints["reasoning_tokens"],
            cost_usd=cost if reported else None,
            cost_reported=reported,
            service_tier=str(v.get("service_tier") or ""),
            tokens_estimated=estimated,
        )
        bad = rec.validate() or ("negative bucket_seconds" if rec.bucket_seconds < 0 else None)
        if bad:
            report.error(fname, n, bad)
            continue
        report.records += 1
        yield rec


def check_options(options: dict) -> None:
    """Raise InputError naming the fix for options that cannot work (``read`` checks them; the CLI also
    before any file is read, so that an unchanged file skipped by the import does not hide the mistake)."""
    fmt = (options.get("format") or "generic").lower()
    if fmt not in ("generic", "burstgpt"):
        raise InputError(f"unknown CSV format {fmt!r}; use --format generic or --format burstgpt")
    if fmt == "burstgpt":
        if options.get("time_unit"):
            raise InputError(
                "--time-unit is for generic files; BurstGPT timestamps are seconds: leave it out"
            )
        if options.get("start") in (None, ""):
            raise InputError(
                "BurstGPT timestamps and day numbers count from the trace start; "
                "give the start date with --start 2024-01-01"
            )
        parse_start(options["start"])
        return
    provider = (options.get("provider") or "").lower()
    if provider and provider not in PROVIDERS:
        raise InputError(f"unknown provider {provider!r}; use one of: {', '.join(PROVIDERS)}")
    unit = options.get("time_unit")
    if unit not in (None, "", "s", "ms"):
        raise InputError(f"--time-unit {unit!r}: use s (seconds) or ms (milliseconds)")
    if options.get("start") not in (None, ""):
        parse_start(options["start"])
    elif unit:
        raise InputError(
            "--time-unit applies to offsets from a start: give the start too, e.g. --start 2025-01-06"
        )


class _Builder:
    """Turns one row's field values into a record with its de-duplication key (OPTIONS as
    ``check_options`` accepts them)."""

    def __init__(self, fname: str, options: dict) -> None:
        self.fname = fname
        self.provider = (options.get("provider") or "").lower()
        self.user = options.get("user") or ""
        self.project = options.get("project") or ""
        self.api_key_id = options.get("api_key_id") or ""
        self.source = options.get("source") or "csv"
        self.model = str(options.get("model") or "").strip()
        # (start, units per second): timestamps are offsets from the start of a trace (``--start``).
        self.relative: tuple[int, int] | None = None
        if options.get("start") not in (None, ""):
            self.relative = (parse_start(options["start"]), 1000 if options.get("time_unit") == "ms" else 1)
        self.seen: set[bytes] = set()
        self.repeats: dict[bytes, int] = {}
        self.providers: dict[tuple[str, str], str] = {}
        self.canon: dict[str, str] = {}

    def offset_ts(self, value: str) -> int:
        """A timestamp cell read as an offset from the trace start (``self.relative``)."""
        assert self.relative is not None
        start, per_second = self.relative
        v = value.strip()
        if not v:
            raise ValueError("missing timestamp")
        try:
            num = float(v)
        except ValueError:
            unit = "milliseconds" if per_second > 1 else "seconds"
            raise ValueError(
                f"bad timestamp {value!r}: with --start it counts {unit} from the start"
            ) from None
        if not 0 <= num < 1e15:
            raise ValueError(f"bad timestamp {value!r}: not an offset from the start")
        return start + int(num // per_second)

    def build(self, v: dict, n: int, report: ParseReport) -> UsageRecord | None:
        fname = self.fname
        try:
            ts_raw = v.get("timestamp", "")
            if self.relative is not None:
                ts = self.offset_ts(str(ts_raw))
            elif not str(ts_raw).strip():
                raise ValueError("missing timestamp")
            else:
                try:
                    ts = parse_ts(str(ts_raw))
                except ValueError:
                    raise ValueError(f"bad timestamp {ts_raw!r}") from None
            ints = {f: _int(v.get(f), f) for f in _INT_FIELDS}
            cost_raw = v.get("cost_usd", "")
            cost = float(cost_raw) if str(cost_raw).strip() else None
            if cost is not None and cost != cost:
                raise ValueError("cost_usd is NaN")
        except ValueError as exc:
            report.error(fname, n, str(exc))
            return None
        model = str(v.get("model", "")).strip() or self.model
        provider = str(v.get("provider", "")).strip().lower() or self.provider or guess_provider(model)
        if provider not in PROVIDERS:
            report.error(fname, n, f"unknown provider {provider!r} (one of {', '.join(PROVIDERS)})")
            return None
        rec = UsageRecord(
            ts=ts,
            provider=provider,
            model=model,
            dedup_key="",
            source=self.source,
            user=str(v.get("user", "")).strip() or self.user,
            project=str(v.get("project", "")).strip() or self.project,
            api_key_id=str(v.get("api_key_id", "")).strip() or self.api_key_id,
            session_id=str(v.get("session_id", "")).strip(),
            bucket_seconds=ints["bucket_seconds"],
            requests=ints["requests"] if str(v.get("requests", "")).strip() else 1,
            input_tokens=ints["input_tokens"],
            cached_input_tokens=ints["cached_tokens"],
            cache_write_tokens=ints["cache_write_tokens"],
            output_tokens=ints["output_tokens"],
            reasoning_tokens=ints["reasoning_tokens"],
            cost_usd=cost,
            cost_reported=cost is not None,
        )
        bad = rec.validate()
        if bad:
            report.error(fname, n, bad)
            return None
        if rec.bucket_seconds < 0:
            report.error(fname, n, "negative bucket_seconds")
            return None
        row_id = str(v.get("id", "")).strip()
        if row_id:
            rec.dedup_key = f"csv:id:{row_id}"
            return rec
        content = "|".join(
            str(x)
            for x in (
                rec.ts,
                rec.provider,
                rec.model,
                rec.user,
                rec.project,
                rec.api_key_id,
                rec.session_id,
                rec.bucket_seconds,
                rec.requests,
                rec.input_tokens,
                rec.cached_input_tokens,
                rec.cache_write_tokens,
                rec.output_tokens,
                rec.reasoning_tokens,
                "" if cost is None else repr(cost),
            )
        )
        rec.dedup_key = self._key(content)
        return rec

    def build_row(self, row: list[str], at: list[int], n: int, report: ParseReport) -> UsageRecord | None:
        """``build`` for a CSV row, without the per-row dict: ``row[at[i]]`` is the value of
        ``_ROW_FIELDS[i]``. Same records, keys and error reasons as ``build``; the common shapes
        (ISO ``...Z`` timestamps, plain integers) take short cuts, anything else the general parsers."""
        (
            i_ts,
            i_prov,
            i_model,
            i_user,
            i_proj,
            i_key,
            i_sess,
            i_id,
            i_req,
            i_bucket,
            i_in,
            i_cached,
            i_cw,
            i_out,
            i_reason,
            i_cost,
        ) = at
        try:
            ts_raw = row[i_ts]
            base = None
            if len(ts_raw) == 20 and ts_raw[19] == "Z":
                base = MINUTE_EPOCH.get(ts_raw[:16])
            if self.relative is not None:
                ts = self.offset_ts(ts_raw)
            elif (
                base is not None and ts_raw[16] == ":" and ts_raw[17:19].isdecimal() and ts_raw[17:19] < "61"
            ):
                ts = base + int(ts_raw[17:19])
            else:
                if not ts_raw.strip():
                    raise ValueError("missing timestamp")
                try:
                    ts = parse_ts(ts_raw)
                except ValueError:
                    raise ValueError(f"bad timestamp {ts_raw!r}") from None
            v = row[i_req]
            requests = int(v) if v.isdecimal() else (_int(v, "requests") if v else 1)
            v = row[i_bucket]
            bucket = int(v) if v.isdecimal() else _int(v, "bucket_seconds")
            v = row[i_in]
            inp = int(v) if v.isdecimal() else _int(v, "input_tokens")
            v = row[i_cached]
            cached = int(v) if v.isdecimal() else _int(v, "cached_tokens")
            v = row[i_cw]
            cw = int(v) if v.isdecimal() else _int(v, "cache_write_tokens")
            v = row[i_out]
            out = int(v) if v.isdecimal() else _int(v, "output_tokens")
            v = row[i_reason]
            reasoning = int(v) if v.isdecimal() else _int(v, "reasoning_tokens")
            v = row[i_cost]
            cost = float(v) if v.strip() else None
            if cost is not None and cost != cost:
                raise ValueError("cost_usd is NaN")
        except ValueError as exc:
            report.error(self.fname, n, str(exc))
            return None
        model = row[i_model].strip() or self.model
        prov_raw = row[i_prov]
        provider = self.providers.get((prov_raw, model))
        if provider is None:
            provider = prov_raw.strip().lower() or self.provider or guess_provider(model)
            self.providers[(prov_raw, model)] = provider
        if provider not in PROVIDERS:
            report.error(self.fname, n, f"unknown provider {provider!r} (one of {', '.join(PROVIDERS)})")
            return None
        user = row[i_user].strip() or self.user
        project = row[i_proj].strip() or self.project
        api_key_id = row[i_key].strip() or self.api_key_id
        session_id = row[i_sess].strip()
        if (
            not model
            or requests < 0
            or bucket < 0
            or cached < 0
            or cw < 0
            or reasoning < 0
            or cached + cw > inp
            or reasoning > out
            or (cost is not None and cost < 0)
        ):
            bad = self._reason(ts, provider, model, requests, bucket, inp, cached, cw, out, reasoning, cost)
            report.error(self.fname, n, bad)
            return None
        row_id = row[i_id].strip()
        if row_id:
            key = f"csv:id:{row_id}"
        else:
            # The same text as ``build`` hashes: keys stay stable across versions, so re-importing a
            # file imported before adds nothing.
            content = (
                f"{ts}|{provider}|{model}|{user}|{project}|{api_key_id}|{session_id}|{bucket}|{requests}|"
                f"{inp}|{cached}|{cw}|{out}|{reasoning}|{'' if cost is None else repr(cost)}"
            )
            key = self._key(content)
        return UsageRecord(
            ts,
            provider,
            model,
            key,
            self.source,
            user,
            project,
            api_key_id,
            session_id,
            bucket,
            requests,
            inp,
            cached,
            cw,
            0,
            out,
            reasoning,
            cost,
            cost is not None,
        )

    def build_many(self, rows: list[list[str]], at: list[int], width: int) -> list[UsageRecord] | None:
        """``build_row`` for a chunk of CSV rows at once, column by column; ``None`` when any row is not
        plainly valid (wrong width, a value needing an error report), so that the caller builds the
        chunk row by row and reports exactly what ``build_row`` reports. Same records and keys as
        ``build_row``: the de-duplication state is only touched once the whole chunk has passed."""
        cols = self.build_columns(rows, at, width)
        # The last three fields (price_version, service_tier, tokens_estimated) keep their defaults.
        return None if cols is None else list(map(UsageRecord, *cols[:-3]))

    def build_columns(self, rows: list[list[str]], at: list[int], width: int) -> list[list] | None:
        """``build_many``'s records as columns, one list per UsageRecord field in field order."""
        n = len(rows)
        if set(map(len, rows)) != {width}:
            return None
        cols = list(zip(*rows))
        (
            i_ts,
            i_prov,
            i_model,
            i_user,
            i_proj,
            i_key,
            i_sess,
            i_id,
            i_req,
            i_bucket,
            i_in,
            i_cached,
            i_cw,
            i_out,
            i_reason,
            i_cost,
        ) = at
        empty = ("",) * n

        def col(i: int) -> tuple | list:
            return cols[i] if i < width else empty

        # The text of each integer column as the key's content writes it (str of the value): the cells
        # themselves where they already are that (ASCII digits, no leading zero).
        texts: dict[int, list | tuple] = {}

        def ints(i: int, name: str) -> list[int]:
            if i >= width:
                value = 1 if name == "requests" else 0
                texts[i] = [str(value)] * n
                return [value] * n
            c = cols[i]
            joined = "".join(c)
            if joined.isdecimal() and "" not in c:
                if joined.isascii() and ("," + ",".join(c)).count(",0") == c.count("0"):
                    texts[i] = c
                return list(map(int, c))
            if name == "requests":
                return [int(v) if v.isdecimal() else (_int(v, name) if v else 1) for v in c]
            return [int(v) if v.isdecimal() else _int(v, name) for v in c]

        def text_of(i: int, values: list[int]) -> Iterable[str]:
            t = texts.get(i)
            return t if t is not None else map(str, values)

        try:
            ts = list(map(self.offset_ts, col(i_ts))) if self.relative else _column_ts(col(i_ts))
            requests = ints(i_req, "requests")
            bucket = ints(i_bucket, "bucket_seconds")
            inp = ints(i_in, "input_tokens")
            cached = ints(i_cached, "cached_tokens")
            cw = ints(i_cw, "cache_write_tokens")
            out = ints(i_out, "output_tokens")
            reasoning = ints(i_reason, "reasoning_tokens")
            # A blank-looking cell that is not empty ("  ") fails float: the chunk then goes row by row.
            costs = [float(v) if v else None for v in col(i_cost)]
        except ValueError:
            return None
        priced = [c for c in costs if c is not None]
        if any(c != c or c < 0 for c in priced):
            return None
        models = list(map(str.strip, col(i_model)))
        if "" in models:
            if not self.model:
                return None
            models = [m or self.model for m in models]
        pairs = list(zip(col(i_prov), models))
        known = self.providers
        providers = list(map(known.get, pairs))
        if None in providers:
            for j, (prov_raw, model) in enumerate(pairs):
                if providers[j] is None:
                    p = prov_raw.strip().lower() or self.provider or guess_provider(model)
                    known[(prov_raw, model)] = providers[j] = p
        if not set(providers).issubset(PROVIDERS):
            return None
        if (
            min(requests) < 0
            or min(bucket) < 0
            or min(cached) < 0
            or min(cw) < 0
            or min(reasoning) < 0
            or any(map(gt, map(add, cached, cw), inp))
            or any(map(gt, reasoning, out))
        ):
            return None

        canon = self.canon
        if len(canon) > 100_000:  # unique per row (session ids): no sharing to gain
            canon.clear()
        # One string object per distinct value: the rows of a batch then share them, which halves the
        # time to send a batch from the parsing process and to read it there (marshal writes shared
        # objects once).
        models = list(map(canon.setdefault, models, models))

        def text(i: int, default: str) -> list[str]:
            if i >= width:
                return [default] * n
            c = cols[i]
            vals = [v.strip() or default for v in c] if default else list(map(str.strip, c))
            return list(map(canon.setdefault, vals, vals))

        users = text(i_user, self.user)
        projects = text(i_proj, self.project)
        api_keys = text(i_key, self.api_key_id)
        sessions = text(i_sess, "")
        ids = list(map(str.strip, col(i_id)))
        # The same text as ``build`` hashes: keys stay stable across versions, so re-importing a file
        # imported before adds nothing.
        contents = list(
            map(
                "|".join,
                zip(
                    map(str, ts),
                    providers,
                    models,
                    users,
                    projects,
                    api_keys,
                    sessions,
                    text_of(i_bucket, bucket),
                    text_of(i_req, requests),
                    text_of(i_in, inp),
                    text_of(i_cached, cached),
                    text_of(i_cw, cw),
                    text_of(i_out, out),
                    text_of(i_reason, reasoning),
                    ["" if c is None else repr(c) for c in costs],
                ),
            )
        )
        if any(ids):
            contents = [c for c, row_id in zip(contents, ids) if not row_id]
        digests = [blake2b(c.encode(), digest_size=16).digest() for c in contents]
        shorts = [d[:8] for d in digests]
        if len(set(shorts)) == len(shorts) and self.seen.isdisjoint(shorts):
            self.seen.update(shorts)
            hashed = ["csv:" + d.hex() for d in digests]
        else:
            hashed = list(map(self._key, contents))
        if len(hashed) == n:
            keys = hashed
        else:
            it = iter(hashed)
            keys = [f"csv:id:{row_id}" if row_id else next(it) for row_id in ids]
        return [
            ts,
            providers,
            models,
            keys,
            [self.source] * n,
            users,
            projects,
            api_keys,
            sessions,
            bucket,
            requests,
            inp,
            cached,
            cw,
            [0] * n,
            out,
            reasoning,
            costs,
            [c is not None for c in costs],
            [None] * n,
            [""] * n,
            [False] * n,
        ]

    @staticmethod
    def _reason(
        ts: int,
        provider: str,
        model: str,
        requests: int,
        bucket: int,
        inp: int,
        cached: int,
        cw: int,
        out: int,
        reasoning: int,
        cost: float | None,
    ) -> str:
        """Why a row failed the quick checks, worded exactly as ``build`` words it."""
        rec = UsageRecord(
            ts=ts,
            provider=provider,
            model=model,
            dedup_key="",
            bucket_seconds=bucket,
            requests=requests,
            input_tokens=inp,
            cached_input_tokens=cached,
            cache_write_tokens=cw,
            output_tokens=out,
            reasoning_tokens=reasoning,
            cost_usd=cost,
        )
        return rec.validate() or "negative bucket_seconds"

    def _key(self, content: str) -> str:
        digest = hashlib.blake2b(content.encode(), digest_size=16).digest()
        short = digest[:8]
        k = 0
        if short in self.seen:
            k = self.repeats.get(digest, 0) + 1
            self.repeats[digest] = k
        else:
            self.seen.add(short)
        return f"csv:{digest.hex()}" + (f"#{k}" if k else "")
