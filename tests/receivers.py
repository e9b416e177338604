"""Real loopback receivers for alert tests: a webhook HTTP server, an SMTP server with STARTTLS + AUTH,
and a private D-Bus session bus with a notification listener."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class WebhookServer:
    """Records every POST (path, JSON body). ``responses`` is a list of status codes served in order
    (then 200); ``delay`` seconds are slept before answering."""

    def __init__(self, responses: list[int] | None = None, delay: float = 0.0):
        self.requests: list[dict[str, Any]] = []
        self.responses = list(responses or [])
        self.delay = delay
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(n)
                with outer.lock:
                    outer.requests.append(
                        {"path": self.path, "body": json.loads(raw or b"null"), "headers": dict(self.headers)}
                    )
                    code = outer.responses.pop(0) if outer.responses else 200
                if outer.delay:
                    time.sleep(outer.delay)
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                try:
                    self.wfile.write(b"ok" if code < 300 else b"server error")
                except BrokenPipeError:
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (subjectAltName IP) and its key, made with the openssl CLI."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl CLI missing: apt-get install openssl")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class DBusSession:
    """A private session bus (dbus-daemon) plus the Notifications listener of tests/dbus_listener.py."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.out = tmp / "notifications.jsonl"
        self.daemon: subprocess.Popen | None = None
        self.listener: subprocess.Popen | None = None
        self.address = ""

    def start_bus(self) -> str:
        exe = shutil.which("dbus-daemon")
        assert exe, "dbus-daemon not found: install it with `apt-get install dbus` (CI does this in .ci/run)"
        self.daemon = subprocess.Popen(
            [exe, "--session", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.daemon.stdout is not None
        self.address = self.daemon.stdout.readline().strip()
        assert self.address, (
            f"dbus-daemon printed no address: {self.daemon.stderr.read() if self.daemon.stderr else ''}"
        )
        return self.address

    def start_listener(self) -> None:
        env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": self.address}
        self.listener = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("dbus_listener.py")), str(self.out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.listener.stdout is not None
        line = self.listener.stdout.readline().strip()
        assert line == "ready", (
            f"listener did not start: {line} {self.listener.stderr.read() if self.listener.stderr else ''}"
        )

    def received(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        for p in (self.listener, self.daemon):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
