"""Recording proxy overhead: added latency (p50/p99) and throughput, proxy vs direct, in one run.

Starts the fake OpenAI upstream (tests/fake_llm_upstream.py) and the real ``oaim proxy`` command as separate
processes on 127.0.0.1, drives both with an aiohttp client, then stops the proxy (SIGINT: clean shutdown)
and checks that every proxied call is in the database. Target: p50 added latency < 2 ms and >= 500 req/s.

    python benchmarks/proxy.py [--latency-n 1500] [--seconds 5] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}'
STREAM_BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}],"stream":true}'
HEADERS = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on port {port} after {timeout} s")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(int(q * len(s)), len(s) - 1)]


async def sequential(session: aiohttp.ClientSession, url: str, n: int, body: bytes) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        async with session.post(url, data=body, headers=HEADERS) as r:
            await r.read()
            assert r.status == 200, r.status
        out.append((time.perf_counter() - t) * 1000)
    return out


async def throughput(
    session: aiohttp.ClientSession, url: str, seconds: float, concurrency: int
) -> tuple[int, float]:
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            async with session.post(url, data=BODY, headers=HEADERS) as r:
                await r.read()
                assert r.status == 200, r.status
            done += 1

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, time.perf_counter() - t


async def measure(direct: str, proxied: str, n: int, seconds: float, concurrency: int) -> dict:
    res: dict = {"latency": {}, "throughput": {}}
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as s:
        for url in (direct, proxied):  # warm-up: connections, tokenizer, pricer
            await sequential(s, url, 50, BODY)
            await sequential(s, url, 10, STREAM_BODY)
        for kind, body in (("chat", BODY), ("chat-stream", STREAM_BODY)):
            lat: dict[str, list[float]] = {"direct": [], "proxy": []}
            for _ in range(3):  # interleave blocks so drift hits both sides alike
                for name, url in (("direct", direct), ("proxy", proxied)):
                    lat[name] += await sequential(s, url, n // 3, body)
            res["latency"][kind] = lat
        for name, url in (("direct", direct), ("proxy", proxied)):
            res["throughput"][name] = await throughput(s, url, seconds, concurrency)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency-n", type=int, default=1500)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="oaim-proxy-bench-"))
    db = tmp / "usage.db"
    up_port, px_port = free_port(), free_port()
    env = {**os.environ, "OAIM_HOME": str(tmp / "home")}
    up = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "fake_llm_upstream.py"), "--port", str(up_port)],
        env=env,
    )
    px = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "openai_monitor",
            "--db",
            f"sqlite:///{db}",
            "proxy",
            "--port",
            str(px_port),
            "--upstream",
            f"openai=http://127.0.0.1:{up_port}",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_port(up_port)
        wait_port(px_port)
        direct = f"http://127.0.0.1:{up_port}/v1/chat/completions"
        proxied = f"http://127.0.0.1:{px_port}/v1/chat/completions"
        res = asyncio.run(measure(direct, proxied, args.latency_n, args.seconds, args.concurrency))
    finally:
        px.send_signal(signal.SIGINT)
        try:
            _, err = px.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            px.kill()
            _, err = px.communicate()
        up.terminate()
        up.wait(10)

    n_lat = sum(len(v["proxy"]) for v in res["latency"].values())
    proxied_calls = n_lat + 60 + res["throughput"]["proxy"][0]
    con = sqlite3.connect(db)
    stored, estimated = con.execute("SELECT COUNT(*), SUM(tokens_estimated) FROM usage_records").fetchone()
    unique = con.execute("SELECT COUNT(DISTINCT dedup_key) FROM usage_records").fetchone()[0]
    con.close()

    try:
        import uvloop  # noqa: F401

        loop = "asyncio (OAIM_NO_UVLOOP)" if os.environ.get("OAIM_NO_UVLOOP") else "uvloop"
    except ImportError:
        loop = "asyncio"
    print(f"oaim proxy benchmark: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, proxy loop: {loop}")
    print(f"latency, {args.latency_n} sequential calls per side (ms):")
    for kind, lat in res["latency"].items():
        d50, p50 = statistics.median(lat["direct"]), statistics.median(lat["proxy"])
        d99, p99 = pct(lat["direct"], 0.99), pct(lat["proxy"], 0.99)
        print(
            f"  {kind:<12} direct p50 {d50:6.3f}  p99 {d99:6.3f} | proxy p50 {p50:6.3f}  p99 {p99:6.3f} | "
            f"added p50 {p50 - d50:6.3f}  p99 {p99 - d99:6.3f}  (proxy/direct p50 x{p50 / d50:.2f})"
        )
    (dn, dt), (pn, pt) = res["throughput"]["direct"], res["throughput"]["proxy"]
    print(f"throughput, {args.concurrency} concurrent clients for {args.seconds:.0f} s:")
    print(
        f"  direct {dn / dt:7.0f} req/s | proxy {pn / pt:7.0f} req/s | proxy/direct x{(pn / pt) / (dn / dt):.2f}"
    )
    ok = stored == proxied_calls == unique
    print(
        f"recorded: {stored} of {proxied_calls} proxied calls ({unique} distinct, {estimated or 0} estimated) "
        f"-> {'every call recorded' if ok else 'MISSING RECORDS'}"
    )
    tail = [line for line in (err or "").splitlines() if line.startswith("stopped:")]
    if tail:
        print("proxy:", tail[-1])
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
