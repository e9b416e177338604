"""Load, refresh and store price snapshots.

``fetch_prices`` takes a URL or a file holding either our snapshot or a genai-prices ``data.json`` (v2)
and returns our snapshot format. The CLI keeps the result in the home directory (``save_snapshot``)
and ``load_snapshot`` prefers that file over the snapshot bundled with the package.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from openai_monitor.errors import PricingError
from openai_monitor.pricing.snapshot import GENAI_PRICES_DATA_URL, SNAPSHOT_FORMAT, make_snapshot

BUNDLED_SNAPSHOT = Path(__file__).resolve().parent / "data" / "prices_snapshot.json"
USER_SNAPSHOT_NAME = "prices_snapshot.json"

_FIX = f"give a genai-prices data.json (e.g. {GENAI_PRICES_DATA_URL}) or an openai-monitor prices snapshot"


def validate_snapshot(snapshot: Any, origin: str = "snapshot") -> dict[str, Any]:
    """Check the shape the engine relies on; raise PricingError naming the problem and the fix."""
    if not isinstance(snapshot, Mapping):
        raise PricingError(f"{origin}: expected a JSON object; {_FIX}")
    if snapshot.get("format") != SNAPSHOT_FORMAT:
        raise PricingError(
            f"{origin}: format is {snapshot.get('format')!r}, expected {SNAPSHOT_FORMAT!r}; {_FIX}"
        )
    if not isinstance(snapshot.get("snapshot_version"), str):
        raise PricingError(f"{origin}: missing snapshot_version; {_FIX}")
    providers = snapshot.get("providers")
    if not isinstance(providers, list) or not providers:
        raise PricingError(f"{origin}: missing providers; {_FIX}")
    for p in providers:
        if (
            not isinstance(p, Mapping)
            or not isinstance(p.get("id"), str)
            or not isinstance(p.get("models"), list)
        ):
            raise PricingError(f"{origin}: every provider needs id and models; {_FIX}")
        for m in p["models"]:
            ok = (
                isinstance(m, Mapping)
                and isinstance(m.get("id"), str)
                and isinstance(m.get("match"), Mapping)
                and isinstance(m.get("prices"), list)
                and m["prices"]
                and all(isinstance(e, Mapping) and isinstance(e.get("prices"), Mapping) for e in m["prices"])
            )
            if not ok:
                raise PricingError(f"{origin}: model {m!r:.80} in {p['id']} is malformed; {_FIX}")
    return dict(snapshot)


def _read_source(url_or_path: str, timeout: float) -> bytes:
    if url_or_path.startswith(("http://", "https://")):
        import httpx

        try:
            response = httpx.get(url_or_path, timeout=timeout, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise PricingError(
                f"cannot download prices from {url_or_path}: {exc}; check the URL and your connection, "
                "or pass a local file"
            ) from exc
        if response.status_code != 200:
            raise PricingError(
                f"cannot download prices from {url_or_path}: HTTP {response.status_code}; check the URL "
                f"(the genai-prices data is at {GENAI_PRICES_DATA_URL})"
            )
        return response.content
    path = Path(url_or_path).expanduser()
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise PricingError(
            f"price file {path} does not exist; give an existing file or an http(s) URL"
        ) from exc
    except OSError as exc:
        raise PricingError(f"cannot read price file {path}: {exc.strerror}; check its permissions") from exc


def parse_prices(data: bytes, origin: str) -> dict[str, Any]:
    """Parse bytes holding our snapshot or a genai-prices v2 ``data.json`` into our snapshot format."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PricingError(f"{origin} is not valid JSON ({exc}); {_FIX}") from exc
    if isinstance(parsed, Mapping) and "format" in parsed:
        return validate_snapshot(parsed, origin)
    if isinstance(parsed, list):
        snap = make_snapshot(parsed, package="genai-prices-data", version="v2", url=origin)
        return validate_snapshot(snap, origin)
    raise PricingError(f"{origin}: expected a JSON array of providers or a snapshot object; {_FIX}")


def fetch_prices(url_or_path: str, timeout: float = 10) -> dict[str, Any]:
    """Load prices from an http(s) URL or a local file, validate and convert them to our snapshot."""
    return parse_prices(_read_source(url_or_path, timeout), url_or_path)


def save_snapshot(snapshot: Mapping[str, Any], path: Path) -> None:
    """Write ``snapshot`` atomically: a crash leaves either the old file or the new one, never half."""
    validate_snapshot(snapshot, str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps(snapshot, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would (umask respected).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@functools.lru_cache(maxsize=1)
def _bundled() -> dict[str, Any]:
    try:
        return orjson.loads(BUNDLED_SNAPSHOT.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise PricingError(
            f"the bundled price snapshot {BUNDLED_SNAPSHOT} is missing or damaged: reinstall openai-monitor"
        ) from exc


def load_snapshot(path: Path | None = None) -> dict[str, Any]:
    """The user's snapshot at ``path`` if that file exists, else the bundled one (shared; do not mutate)."""
    if path is not None and Path(path).is_file():
        try:
            return parse_prices(Path(path).read_bytes(), str(path))
        except PricingError as exc:
            raise PricingError(
                f"{exc} (or delete {path} to use the prices bundled with openai-monitor)"
            ) from exc
    return _bundled()
