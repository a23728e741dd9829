"""``tigerdecode demo``: load the model once and serve the Gradio app; ``tigerdecode demo
screenshot``: the demo guide's screenshot (docs/demo.md) from a real run."""

from __future__ import annotations

from pathlib import Path

import click

from tigerdecode.cli.options import (
    creativity_option,
    dtype_option,
    fast_option,
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
@click.option("--concurrency", type=click.IntRange(1, 8), default=1, show_default=True,
              help="Generations served at once (the rest wait in a bounded queue).")
@fast_option()
@dtype_option()
@quant_option()
@click.pass_context
def demo_group(ctx, host, port, model_name, results, concurrency, fast, dtype, quant):
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

    model, tok = _load(model_name, dtype, quant)
    app = build_app(DemoBackend(model, tok, model_name=model_name, fast=fast),
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
