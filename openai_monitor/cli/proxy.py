"""`oaim proxy` (the recording proxy) and `oaim estimate` (tokens and cost before a call)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from ..errors import InputError
from .common import print_json, state


def register(app: typer.Typer) -> None:
    app.command("proxy")(proxy_cmd)
    app.command("estimate")(estimate_cmd)


def proxy_cmd(
    ctx: typer.Context,
    port: int = typer.Option(8787, "--port", help="Port to listen on (0 picks a free one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    upstream: list[str] = typer.Option(
        [],
        "--upstream",
        help="provider=URL (repeatable or space-separated): openai=https://api.openai.com, "
        "anthropic=https://api.anthropic.com.",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every recorded batch."),
) -> None:
    """Run a local recording proxy for the OpenAI and Anthropic APIs.

    Point clients at it with OPENAI_BASE_URL=http://127.0.0.1:8787/v1 and
    ANTHROPIC_BASE_URL=http://127.0.0.1:8787. Requests pass through unchanged (the X-OAIM-User and
    X-OAIM-Project attribution headers are removed before forwarding); every call's usage is recorded.
    """
    from ..service.pricing import make_pricer
    from ..service.proxy import parse_upstreams, run_proxy
    from ..service.recorder import Recorder

    if not 0 <= port <= 65535:
        raise InputError(f"--port {port} is not a TCP port; use 1-65535 (or 0 for any free port)")
    upstreams = parse_upstreams(upstream)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("aiohttp.access", "aiohttp.server", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    st = state(ctx)
    recorder = Recorder(st.store, make_pricer(st.settings))

    def err(msg: str) -> None:
        typer.echo(msg, err=True)

    def ready(bound: int) -> None:
        base = f"http://{host}:{bound}"
        err(f"oaim proxy listening on {base} (Ctrl-C to stop), recording to {st.url}")
        for name, url in upstreams.items():
            err(f"  {name:<9} -> {url}")
        err(f"  export OPENAI_BASE_URL={base}/v1")
        err(f"  export ANTHROPIC_BASE_URL={base}")

    run_proxy(recorder, upstreams, host=host, port=port, on_ready=ready)
    s = recorder.stats
    err(
        f"stopped: {s.recorded} calls recorded ({s.estimated} estimated), {s.snapshots} rate-limit snapshots, "
        f"{s.failed} failed, {s.dropped} dropped"
    )


def estimate_cmd(
    ctx: typer.Context,
    prompt: str | None = typer.Argument(None, help="The prompt text ('-' reads standard input)."),
    model: str = typer.Option(
        ..., "--model", "-m", help="Model name, e.g. gpt-4o-mini or claude-sonnet-4-5."
    ),
    max_output: int = typer.Option(1000, "--max-output", help="Most output tokens the call may produce."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Read the prompt from this file."),
    json_out: bool = typer.Option(False, "--json", help="Print the estimate as JSON."),
) -> None:
    """Estimate a prompt's tokens and the cost range of a call before making it."""
    from ..service.estimate import estimate_call
    from ..service.pricing import make_pricer

    if file is not None and prompt is not None:
        raise InputError("give the prompt as an argument or with --file, not both")
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise InputError(f"cannot read {file}: {e.strerror}; check the path") from e
    elif prompt == "-":
        text = sys.stdin.read()
    elif prompt is not None:
        text = prompt
    else:
        raise InputError('give a prompt: oaim estimate "PROMPT" --model M, or --file F')
    est = estimate_call(text, model, max_output_tokens=max_output, pricer=make_pricer(state(ctx).settings))
    if json_out:
        print_json(est.as_dict())
        return
    out = typer.echo
    label = "exact for this text" if est.method.startswith("tiktoken:") else "approximation"
    out(f"model          {est.model} ({est.provider})")
    out(f"input tokens   {est.input_tokens:,}  [{est.method}, {label}]")
    out(f"max output     {est.max_output_tokens:,} tokens")
    if est.cost_min_usd is None or est.cost_max_usd is None:
        out(f"cost           unknown: no price for {est.model}; see `oaim models` or add one under [prices]")
    else:
        out(f"cost           ${est.cost_min_usd:.6f} - ${est.cost_max_usd:.6f}  (prices {est.price_version})")
