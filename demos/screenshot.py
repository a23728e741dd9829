"""Take the README's screenshot from a real run: serve the app on a model, open a deep link that
generates an answer in headless chromium, save the PNG.

    python -m tigerdecode.demos.screenshot --out docs/demo.png
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import click

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=60000"]  # time after the answer arrives for the page to settle


def capture(url: str, out: Path, width: int = 1200, height: int = 1100) -> Path:
    """Screenshot ``url`` with headless chromium (the page's own requests finish first)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise click.ClickException("chromium is not installed (apt-get install -y chromium)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={tmp}", url], check=True, capture_output=True, timeout=300)
    os.replace(tmp, out)
    return out


@click.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default="docs/demo.png",
              show_default=True)
@click.option("--model", "model_name", default="default", show_default=True)
@click.option("--prompt", default="What is the capital of Japan?", show_default=True)
@click.option("--creativity", type=click.FloatRange(0, 1), default=0.3, show_default=True)
@click.option("--max-new-tokens", type=int, default=32, show_default=True)
@click.option("--raw", is_flag=True, help="Plain completion (no chat template).")
@click.option("--height", type=int, default=1100, show_default=True)
def main(out, model_name, prompt, creativity, max_new_tokens, raw, height):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from tigerdecode.demos.app import build_app, launch
    from tigerdecode.demos.backend import DemoBackend
    from tigerdecode.model.load import load_model

    model, tok = load_model(model_name)
    app = build_app(DemoBackend(model, tok, model_name=model_name))
    launch(app, block=False)
    try:
        query = urlencode({"prompt": prompt, "creativity": creativity,
                           "max_new_tokens": max_new_tokens, "seed": 0, "raw": int(raw)})
        click.echo(capture(f"{app.local_url}?{query}", out, height=height))
    finally:
        app.close()


if __name__ == "__main__":
    main()
