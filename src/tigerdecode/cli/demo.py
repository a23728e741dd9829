"""``tigerdecode demo``: load the model once and serve the Gradio app; ``tigerdecode demo
screenshot``: the demo guide's screenshot (docs/demo.md) from a real run."""

from __future__ import annotations

from pathlib import Path

import click

from tigerdecode.cli.options import (
    creativity_option,
    dtype_option,
    fast_option,
    json_option,
    load_model_for,
    max_new_tokens_option,
    model_option,
    out_option,
    quant_option,
)


def _load(model_name, dtype="fp32", quant="none"):
    click.echo(f"loading model {model_name!r} …", err=True)
    return load_model_for(model_name, dtype, quant)


@click.group("demo", invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind; the default keeps the app on this machine only.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port (default: the first free one from 7860).")
@model_option()
@click.option("--results", "results", type=click.Path(dir_okay=False), default=None,
              help="Evaluation results JSON for the Trade-off tab (default: the latest run in "
                   "the cache).")
@click.option("--max-batch", type=click.IntRange(1, 64), default=16, show_default=True,
              help="Requests decoded together: those waiting with the same settings share a "
                   "batch (1: one at a time).")
@click.option("--max-waiting", type=click.IntRange(1, 1024), default=64, show_default=True,
              help="Requests that may wait; beyond it a request is told 'busy, retry in ~N s'.")
@click.option("--concurrency", type=click.IntRange(1, 8), default=1, show_default=True,
              help="Trade-off tab events served at once (Generate and Compare go through the "
                   "batcher).")
@fast_option()
@dtype_option()
@quant_option()
@click.option("--backend", type=click.Choice(["transformers", "llama-cpp"]),
              default="transformers", show_default=True,
              help="llama-cpp: --model is a GGUF exported with heads (`tigerdecode export "
                   "--format gguf`), decoded in llama.cpp; no judge or ensemble there.")
@click.pass_context
def demo_group(ctx, host, port, model_name, results, max_batch, max_waiting, concurrency, fast,
               dtype, quant, backend):
    """Serve the interactive demo (or take its screenshot).

    With no subcommand it serves the app (creativity slider, per-token risk, compare,
    trade-off); `tigerdecode demo screenshot` saves a picture of it.
    """
    if ctx.invoked_subcommand is not None:
        return
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from tigerdecode.demos.app import build_app, launch
    from tigerdecode.demos.backend import DemoBackend

    if backend == "llama-cpp":
        if dtype != "fp32" or quant != "none" or fast:
            raise click.UsageError("--dtype / --quant / --fast apply to the transformers "
                                   "backend; llama.cpp runs the GGUF's own weights")
        from tigerdecode.api import ControlledGenerator

        click.echo(f"loading {model_name!r} in llama.cpp …", err=True)
        gen = ControlledGenerator(model_name, backend=backend)
        model, tok = gen.model, gen.tokenizer
    else:
        model, tok = _load(model_name, dtype, quant)
    app = build_app(DemoBackend(model, tok, model_name=model_name, fast=fast,
                                max_batch=max_batch, max_waiting=max_waiting, backend=backend),
                    results_path=results)
    if host not in ("127.0.0.1", "localhost"):
        click.echo(f"warning: serving on {host}; anyone who can reach it can use the model",
                   err=True)
    launch(app, host=host, port=port, concurrency=concurrency, block=True)


@demo_group.command("screenshot")
@out_option("PNG to write.", default=Path("docs/img/demo.png"))
@model_option()
@click.option("--prompt", default="What is the capital of Japan?", show_default=True)
@creativity_option(0.3)
@max_new_tokens_option(32)
@click.option("--raw", is_flag=True, help="Plain completion (no chat template).")
@click.option("--height", type=click.IntRange(200, 8000), default=1100, show_default=True,
              help="Window height in pixels (the width is 1200).")
def screenshot_cmd(out, model_name, prompt, creativity, max_new_tokens, raw, height):
    """Save a PNG of the demo answering one prompt.

    A real run: the app serves the model and headless chromium takes the picture.
    """
    from tigerdecode.demos.screenshot import chromium, screenshot

    try:
        chromium()
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from None
    model, tok = _load(model_name)
    click.echo(screenshot(model, tok, out, model_name=model_name, prompt=prompt,
                          creativity=creativity, max_new_tokens=max_new_tokens, raw=raw,
                          height=height))


@click.command("demo")
@model_option()
@click.option("--clients", default="24,64", show_default=True,
              help="Comma-separated client counts, one load round each (at most 256 clients).")
@click.option("--requests", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Requests each client sends in a load round.")
@max_new_tokens_option(48, help="Tokens per request (48: what the page asks by default).")
@creativity_option(0.5)
@click.option("--max-batch", type=click.IntRange(1, 64), default=16, show_default=True,
              help="The demo's --max-batch.")
@click.option("--max-waiting", type=click.IntRange(1, 1024), default=64, show_default=True,
              help="The demo's --max-waiting.")
@click.option("--batching-clients", type=click.IntRange(0, 256), default=16, show_default=True,
              help="Clients sending at once in the round that compares batching with the same "
                   "requests sent one at a time (0: skip it).")
@click.option("--batching-repeats", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Alternating (one at a time, all at once) pairs in that round; medians.")
@click.option("--soak/--no-soak", default=False, show_default=True,
              help="Also keep clients sending for --soak-minutes and check resident memory.")
@click.option("--soak-minutes", type=click.FloatRange(0.1, 240), default=10.0,
              show_default=True)
@click.option("--soak-clients", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("--threads", type=click.IntRange(0, 256), default=1, show_default=True,
              help="CPU threads of the demo process (0: torch's default).")
@click.option("--timeout-s", type=click.FloatRange(1, 3600), default=600.0, show_default=True,
              help="Seconds one request may take before it counts as an error.")
@json_option("Print every round's summary as JSON.")
def bench_demo_cmd(model_name, clients, requests, max_new_tokens, creativity, max_batch,
                   max_waiting, batching_clients, batching_repeats, soak, soak_minutes,
                   soak_clients, threads, timeout_s, as_json):
    """Load and soak the demo with concurrent clients.

    Starts `tigerdecode demo` on 127.0.0.1 and drives it with gradio_client clients: one
    round per --clients count, --batching-clients at once against the same requests sent one
    at a time, and with --soak a timed run whose resident memory must stay within +10% after a
    warm-up. Every answer is served or 'busy, retry in ~N s'; tracebacks are counted.
    """
    import json

    from tigerdecode.bench.demo import BenchConfig, BenchError, run, table

    try:
        counts = tuple(int(c) for c in clients.split(","))
    except ValueError:
        counts = ()
    if not counts or not all(1 <= c <= 256 for c in counts):
        raise click.BadParameter(f"expected comma-separated numbers from 1 to 256, got "
                                 f"{clients!r}", param_hint="--clients")
    cfg = BenchConfig(model=model_name, clients=counts, requests=requests,
                      max_new_tokens=max_new_tokens, creativity=creativity, max_batch=max_batch,
                      max_waiting=max_waiting, batching_clients=batching_clients,
                      batching_repeats=batching_repeats,
                      soak_minutes=soak_minutes if soak else 0.0, soak_clients=soak_clients,
                      threads=threads, timeout_s=timeout_s)
    try:
        res = run(cfg, progress=lambda m: click.echo(m, err=True))
    except BenchError as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(res) if as_json else table(res))
