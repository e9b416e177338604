"""Import commands turn unreadable sources into one-line errors and report malformed lines as file:line."""

from __future__ import annotations

from pathlib import Path


def test_dangling_symlink_in_claude_logs_is_a_one_line_error(tmp_path: Path, run_cli) -> None:
    proj = tmp_path / "claude" / "projects" / "-home-me-app"
    proj.mkdir(parents=True)
    (proj / "gone.jsonl").symlink_to(tmp_path / "does-not-exist.jsonl")
    r = run_cli("import", "claude-code", "--path", str(tmp_path / "claude"))
    assert r.exit_code != 0
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "gone.jsonl" in lines[0], r.stderr


def test_malformed_lines_reported_with_full_file_and_line(tmp_path: Path, run_cli) -> None:
    long_dir = tmp_path / ("a-very-long-directory-name-" * 4)
    long_dir.mkdir()
    f = long_dir / "usage.csv"
    f.write_text(
        "timestamp,model,input_tokens,output_tokens\n"
        "2025-06-01T00:00:00Z,gpt-4o,100,50\n"
        "2025-06-01T01:00:00Z,gpt-4o,-5,50\n"
        "not-a-time,gpt-4o,1,1\n"
    )
    r = run_cli("import", "csv", str(f))
    assert r.exit_code == 0, r.stderr
    assert f"{f}:3:" in r.stderr
    assert f"{f}:4:" in r.stderr
    assert "1 new" in " ".join(r.stdout.split())
