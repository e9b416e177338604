"""What every source adapter shares: the interface, a streaming line reader and small parsers."""

from __future__ import annotations

import calendar
import datetime as dt
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

import orjson

from openai_monitor.domain import ParseReport, UsageRecord
from openai_monitor.errors import InputError

# A line this long cannot be a log entry; it is skipped without being held in memory.
MAX_LINE_BYTES = 64 * 1024 * 1024
CHUNK_BYTES = 4 * 1024 * 1024


@runtime_checkable
class Adapter(Protocol):
    """A source of usage records. The ingest service drives it; it never touches the store."""

    name: str
    incremental: bool
    # True when a record whose key already exists must replace the stored one (the last copy wins).
    replace: bool

    def discover(self, path: Path | None) -> list[Path]: ...

    def read(
        self,
        path: Path,
        *,
        offset: int,
        state: dict,
        run: dict,
        report: ParseReport,
        options: dict,
    ) -> Iterator[UsageRecord]: ...


class LineReader:
    """Streams the lines of a binary file from a byte offset in constant memory.

    Iterating yields ``(line_number, line)`` with the newline removed; ``line`` is ``None`` for a line
    longer than ``max_line`` (which is dropped chunk by chunk, never assembled). After (or during)
    iteration ``offset`` is the byte offset just after the last complete line consumed, ``lineno`` its
    line number and ``in_long_line`` tells that reading stopped inside an over-long line that was
    already reported (pass it back as ``skipping`` to resume without reporting it twice).

    With ``incremental=True`` a trailing line without newline is not consumed: the writer may still be
    appending to it. Otherwise it is yielded as the last line.
    """

    def __init__(
        self,
        fh: BinaryIO,
        offset: int = 0,
        lineno: int = 0,
        *,
        incremental: bool = True,
        max_line: int = MAX_LINE_BYTES,
        skipping: bool = False,
        chunk: int = CHUNK_BYTES,
    ) -> None:
        self.fh = fh
        self.offset = offset
        self.lineno = lineno
        self.incremental = incremental
        self.max_line = max_line
        self.in_long_line = skipping
        self.chunk = chunk

    def __iter__(self) -> Iterator[tuple[int, bytes | None]]:
        fh, max_line, size = self.fh, self.max_line, self.chunk
        fh.seek(self.offset)
        offset, lineno = self.offset, self.lineno
        pending: list[bytes] = []
        pending_len = 0
        # skipping: inside an over-long line; reported: that line was already yielded as None.
        skipping = reported = self.in_long_line
        while True:
            if skipping:
                n_skip, chunk = _skip_line(fh)
                if reported:
                    offset += n_skip
                else:
                    pending_len += n_skip
            else:
                chunk = fh.read(size)
            if not chunk:
                break
            start = 0
            if pending or skipping:
                nl = chunk.find(b"\n")
                if nl < 0:
                    if not skipping:
                        pending.append(chunk)
                        pending_len += len(chunk)
                        if pending_len > max_line:
                            # pending_len keeps counting the line's bytes; the bytes themselves go.
                            skipping, reported = True, False
                            pending = []
                    elif reported:
                        offset += len(chunk)
                    else:
                        pending_len += len(chunk)
                    continue
                start = nl + 1
                if skipping:
                    if reported:
                        offset += start
                    else:
                        lineno += 1
                        offset += pending_len + start
                        self.offset, self.lineno = offset, lineno
                        yield lineno, None
                    skipping = reported = False
                    self.in_long_line = False
                else:
                    line = b"".join(pending) + chunk[:nl]
                    lineno += 1
                    offset += len(line) + 1
                    self.offset, self.lineno = offset, lineno
                    yield lineno, (line if len(line) <= max_line else None)
                self.offset, self.lineno = offset, lineno
                pending, pending_len = [], 0
            lines = chunk[start:].split(b"\n") if start else chunk.split(b"\n")
            tail = lines.pop()
            for line in lines:
                lineno += 1
                offset += len(line) + 1
                self.offset, self.lineno = offset, lineno
                if len(line) > max_line:
                    yield lineno, None
                else:
                    yield lineno, line
            if tail:
                if len(tail) > max_line:
                    skipping, reported, pending_len = True, False, len(tail)
                else:
                    pending, pending_len = [tail], len(tail)
        if skipping and not reported:
            # An over-long line still without newline at EOF: report it now, and remember that the rest
            # of it (if the file grows) belongs to a line already reported.
            lineno += 1
            offset += pending_len
            self.offset, self.lineno, self.in_long_line = offset, lineno, True
            yield lineno, None
        elif skipping:
            self.offset, self.in_long_line = offset, True
        elif pending and not self.incremental:
            line = b"".join(pending)
            lineno += 1
            offset += len(line)
            self.offset, self.lineno = offset, lineno
            yield lineno, line

    def blocks(self) -> Iterator[bytes]:
        """The lines from ``offset`` in runs: each run is the whole lines of one chunk read, joined by
        their newlines (without the last one). ``offset`` and ``lineno`` move past a run only when the
        next one is asked for (or the runs end), so a caller that stops at a run it cannot use reads it
        again by iterating. Stops, at a line boundary, before a line longer than ``max_line``: iterating
        reports it. With ``incremental`` a last line without newline is left unread, as iterating does."""
        fh, size, max_line = self.fh, self.chunk, self.max_line
        if self.in_long_line:
            return
        fh.seek(self.offset)
        pending = b""
        while True:
            chunk = fh.read(size)
            data = pending + chunk if pending else chunk
            if not chunk:
                if data and not self.incremental and len(data) <= max_line:
                    yield data
                    self.offset += len(data)
                    self.lineno += 1
                return
            cut = data.rfind(b"\n")
            if cut < 0:
                if len(data) > max_line:
                    return
                pending = data
                continue
            run = data[:cut]
            if len(run) > max_line and max(map(len, run.split(b"\n"))) > max_line:
                return
            pending = data[cut + 1 :]
            yield run
            self.offset += cut + 1
            self.lineno += run.count(b"\n") + 1
            if len(pending) > max_line:
                return

    def matching(self, needle: bytes) -> Iterator[tuple[int, bytes | None]]:
        """Like iterating, but yields only lines containing ``needle`` (and over-long lines as None).

        Lines are never split one by one: the needle is searched in whole chunks and only the lines
        around a hit are cut out, while newlines are counted in bulk. This is what makes reading
        hundreds of MB of logs, where most bytes are tool output, fast.
        """
        fh, max_line, size, incremental = self.fh, self.max_line, self.chunk, self.incremental
        fh.seek(self.offset)
        offset, lineno = self.offset, self.lineno
        tail = b""
        skipping = reported = self.in_long_line
        skip_len = 0
        while True:
            if skipping:
                n_skip, chunk = _skip_line(fh)
                if reported:
                    offset += n_skip
                else:
                    skip_len += n_skip
            else:
                chunk = fh.read(size)
            if not chunk:
                break
            if skipping:
                nl = chunk.find(b"\n")
                if nl < 0:
                    if reported:
                        offset += len(chunk)
                    else:
                        skip_len += len(chunk)
                    continue
                if reported:
                    offset += nl + 1
                else:
                    lineno += 1
                    offset += skip_len + nl + 1
                    self.offset, self.lineno = offset, lineno
                    yield lineno, None
                skipping = reported = False
                skip_len = 0
                self.in_long_line = False
                self.offset, self.lineno = offset, lineno
                buf = chunk[nl + 1 :]
            else:
                buf = tail + chunk if tail else chunk
            end = buf.rfind(b"\n") + 1
            if end == 0:
                if len(buf) > max_line:
                    skipping, reported, skip_len, tail = True, False, len(buf), b""
                else:
                    tail = buf
                continue
            pos = 0
            i = buf.find(needle, 0, end)
            while i >= 0:
                start = buf.rfind(b"\n", pos, i) + 1 or pos
                stop = buf.find(b"\n", i)
                lineno += buf.count(b"\n", pos, start) + 1
                offset += stop + 1 - pos
                self.offset, self.lineno = offset, lineno
                yield lineno, (buf[start:stop] if stop - start <= max_line else None)
                pos = stop + 1
                i = buf.find(needle, pos, end)
            lineno += buf.count(b"\n", pos, end)
            offset += end - pos
            self.offset, self.lineno = offset, lineno
            tail = buf[end:]
            if len(tail) > max_line:
                skipping, reported, skip_len, tail = True, False, len(tail), b""
        if skipping and not reported:
            lineno += 1
            offset += skip_len
            self.offset, self.lineno, self.in_long_line = offset, lineno, True
            yield lineno, None
        elif skipping:
            self.offset, self.in_long_line = offset, True
        elif tail and not incremental:
            lineno += 1
            offset += len(tail)
            self.offset, self.lineno = offset, lineno
            if needle in tail:
                yield lineno, tail


_SKIP_BUFFER = 8 * 1024 * 1024


def _skip_line(fh: BinaryIO) -> tuple[int, bytes]:
    """Read past the rest of an over-long line into one reused buffer (no allocation per chunk).

    Returns the number of bytes skipped and the data from the newline on (empty at end of file).
    """
    buf = bytearray(_SKIP_BUFFER)
    skipped = 0
    while True:
        n = fh.readinto(buf)
        if not n:
            return skipped, b""
        nl = buf.find(b"\n", 0, n)
        if nl >= 0:
            return skipped + nl, bytes(buf[nl:n])
        skipped += n


# A file state's ``lines`` when the reader did not count them (a file read whole, which needs no line
# numbers unless a later read of it must report one): begin_read counts them then.
UNCOUNTED = -1


def _count_lines(path: Path, end: int) -> int:
    """Newlines in the first END bytes of PATH."""
    n = 0
    with open_binary(path) as fh:
        while end > 0:
            chunk = fh.read(min(CHUNK_BYTES, end))
            if not chunk:
                break
            n += chunk.count(b"\n")
            end -= len(chunk)
    return n


def begin_read(path: Path, offset: int, state: dict, *, count: bool = True) -> tuple[int, int, bool]:
    """Where to resume: ``(offset, lineno, in_long_line)``; restarts at 0 when the file shrank. Lines left
    UNCOUNTED are counted, unless COUNT is false (``lineno`` is then UNCOUNTED: see ``resume_lineno``)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(
            f"cannot read {path}: {exc.strerror or exc}; check the path and its permissions"
        ) from exc
    if offset > size or offset < 0:
        # The file was truncated or replaced: the saved position means nothing any more.
        state.clear()
        offset = 0
    if offset == 0:
        return 0, 0, False
    lines = int(state.get("lines", 0))
    if lines < 0 and count:
        lines = _count_lines(path, offset)
    return offset, max(lines, UNCOUNTED), bool(state.get("in_long_line", False))


def resume_lineno(path: Path, offset: int, lineno: int) -> int:
    """LINENO as ``begin_read(..., count=False)`` gave it, counted if it was UNCOUNTED."""
    return _count_lines(path, offset) if lineno < 0 else lineno


def open_binary(path: Path) -> BinaryIO:
    try:
        return open(path, "rb", buffering=0)  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        raise InputError(
            f"cannot open {path}: {exc.strerror or exc}; check the path and its permissions"
        ) from exc


def finish_read(state: dict, reader: LineReader) -> None:
    state["offset"] = reader.offset
    state["lines"] = reader.lineno
    if reader.in_long_line:
        state["in_long_line"] = True
    else:
        state.pop("in_long_line", None)


LONG_LINE = f"line longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB skipped"


def json_error_reason(line: bytes | str, exc: Exception) -> str:
    """A short reason for a line orjson rejected: non-UTF-8, truncated or otherwise invalid JSON."""
    if isinstance(line, bytes):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return f"invalid UTF-8 at byte {uexc.start}"
    msg = str(exc)
    if "unexpected end" in msg.lower() or "eof" in msg.lower():
        return "truncated JSON"
    return f"invalid JSON: {msg[:120]}"


def json_objects(
    lines: Iterable[tuple[int, bytes | str | None]], fname: str, report: ParseReport
) -> Iterator[tuple[int, bytes | str, dict]]:
    """``(line number, line, object)`` for each of LINES (a LineReader's, or lines already decoded)
    holding a JSON object. Blank lines are passed over; over-long lines, invalid JSON and other JSON
    values are reported to REPORT as ``file:line: reason``."""
    loads = orjson.loads
    for n, line in lines:
        if line is None:
            report.error(fname, n, LONG_LINE)
            continue
        if not line.strip():
            continue
        try:
            obj = loads(line)
        except orjson.JSONDecodeError as exc:
            report.error(fname, n, json_error_reason(line, exc))
            continue
        if not isinstance(obj, dict):
            report.error(fname, n, "not a JSON object")
            continue
        yield n, line, obj


# --- timestamps -------------------------------------------------------------------------------

MINUTE_EPOCH: dict[str, int] = {}
_DAY_EPOCH: dict[str, int] = {}


def minute_epoch(head: str) -> int | None:
    """Unix seconds of the minute ``YYYY-MM-DDTHH:MM`` (UTC), remembered in MINUTE_EPOCH; None when HEAD
    is not that shape or out of range. A bad date or non-digits raise ValueError."""
    if head[10] != "T" or head[13] != ":":
        return None
    h, m = int(head[11:13]), int(head[14:16])
    if not (h < 24 and m < 60):
        return None
    day = _DAY_EPOCH.get(head[:10])
    if day is None:
        day = calendar.timegm(dt.date.fromisoformat(head[:10]).timetuple())
        if len(_DAY_EPOCH) > 100_000:
            _DAY_EPOCH.clear()
        _DAY_EPOCH[head[:10]] = day
    if len(MINUTE_EPOCH) > 500_000:
        MINUTE_EPOCH.clear()
    base = MINUTE_EPOCH[head] = day + h * 3600 + m * 60
    return base


def parse_iso_ts(value: object) -> int:
    """ISO 8601 text to Unix seconds (UTC; naive times are UTC). Raises ValueError when unparsable.

    Log timestamps are nearly always ``YYYY-MM-DDTHH:MM:SS(.fff)Z``; that shape is decoded with a
    per-minute cache because it dominates the cost of reading large logs.
    """
    if not isinstance(value, str):
        raise ValueError(f"timestamp is not a string: {value!r}")
    s = value
    if len(s) >= 20 and s[-1] == "Z" and s[16] == ":" and (len(s) == 20 or s[19] == "."):
        base = MINUTE_EPOCH.get(s[:16])
        if base is None:
            base = minute_epoch(s[:16])
        if base is not None:
            sec = s[17:19]
            if sec.isdigit() and sec < "61":
                return base + int(sec)
    return datetime_to_ts(_fromiso(s))


_FRACTION = re.compile(r"(\.\d+)")


def _fromiso(s: str) -> dt.datetime:
    s = s.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        return dt.datetime.fromisoformat(s)
    except ValueError:
        # Python 3.10 accepts only 3 or 6 fraction digits.
        fixed = _FRACTION.sub(lambda m: (m.group(1) + "000000")[:7], s, count=1)
        return dt.datetime.fromisoformat(fixed)


def datetime_to_ts(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return int(value.timestamp() // 1)


# --- small helpers ----------------------------------------------------------------------------


def as_int(value: object) -> int:
    """A token count from JSON: int, integral float or numeric string; None/missing -> 0."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"not a finite number: {value!r}")
        return int(value)
    if isinstance(value, str):
        return int(float(value)) if value.strip() else 0
    raise ValueError(f"not a number: {value!r}")


def path_basename(cwd: str) -> str:
    """Last component of a working directory written on any OS (``/a/b``, ``C:\\a\\b``)."""
    return re.split(r"[\\/]", cwd.rstrip("/\\"))[-1] if cwd else ""


def expand_roots(env_value: str | None) -> list[Path]:
    """A comma-separated list of directories from an environment variable."""
    if not env_value:
        return []
    return [Path(os.path.expanduser(p.strip())) for p in env_value.split(",") if p.strip()]


def files_under(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Regular files below ``root`` with one of ``suffixes``, sorted for a deterministic order."""
    out = []
    for dirpath, _dirnames, filenames in os.walk(root, followlinks=False):
        for name in filenames:
            if name.endswith(suffixes):
                out.append(Path(dirpath) / name)
    out.sort()
    return out


def missing_path(path: Path, what: str, fix: str) -> InputError:
    return InputError(f"{path} does not exist: {what}; {fix}")


def start_roots(
    path: Path | None, defaults: list[Path], *, none_found: str, missing: tuple[str, str]
) -> tuple[list[Path], Path | None]:
    """Where an adapter's ``discover`` starts: ``(roots, None)``, or ``([], file)`` when ``path`` is a file.

    With no path, the default roots that exist (InputError ``none_found`` when none do); with a path, the
    expanded path itself (InputError naming ``missing`` = (what, fix) when it does not exist)."""
    if path is None:
        roots = [r for r in defaults if r.is_dir()]
        if not roots:
            raise InputError(none_found)
        return roots, None
    path = Path(os.path.expanduser(str(path)))
    if not path.exists():
        raise missing_path(path, *missing)
    return ([], path) if path.is_file() else ([path], None)
