"""``tigerdecode demo``: load the model once and serve the Gradio app."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind; the default keeps the app on this machine only.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port (default: the first free one from 7860).")
@click.option("--model", "model_name", default="default", show_default=True,
              help="'default' (embedded SmolLM2-135M-Instruct), a local HF directory or a hub id.")
@click.option("--results", "results", type=click.Path(dir_okay=False), default=None,
              help="Evaluation results JSON for the Trade-off tab (default: the latest run in "
                   "the cache).")
@click.option("--concurrency", type=click.IntRange(1, 8), default=1, show_default=True,
              help="Generations served at once (the rest wait in a bounded queue).")
def demo(host, port, model_name, results, concurrency):
    """Open the interactive demo: creativity slider, per-token risk, compare, trade-off."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from tigerdecode.demos.app import build_app, launch
    from tigerdecode.demos.backend import DemoBackend
    from tigerdecode.model.load import ModelLoadError, load_model

    click.echo(f"loading model {model_name!r} …")
    try:
        model, tok = load_model(model_name)
    except ModelLoadError as e:
        raise click.ClickException(str(e)) from None
    app = build_app(DemoBackend(model, tok, model_name=model_name), results_path=results)
    if host not in ("127.0.0.1", "localhost"):
        click.echo(f"warning: serving on {host}; anyone who can reach it can use the model",
                   err=True)
    launch(app, host=host, port=port, concurrency=concurrency, block=True)
