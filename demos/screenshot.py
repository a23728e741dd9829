"""Take the demo guide's screenshot (docs/demo.md) from a real run: serve the app on a model, open a deep link that
generates an answer in headless chromium, save the PNG (``tigerdecode demo screenshot``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlencode

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=60000"]  # time after the answer arrives for the page to settle


def chromium() -> str:
    """The chromium executable; ``FileNotFoundError`` saying how to install it if missing."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise FileNotFoundError("chromium is not installed (apt-get install -y chromium)")
    return exe


def capture(url: str, out: Path, width: int = 1200, height: int = 1100) -> Path:
    """Screenshot ``url`` with headless chromium (the page's own requests finish first); the PNG
    is written beside ``out`` and renamed into place."""
    exe = chromium()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={tmp}", url], check=True, capture_output=True, timeout=300)
    os.replace(tmp, out)
    return out


def screenshot(model, tok, out: Path, *, model_name: str = "default",
               prompt: str = "What is the capital of Japan?", creativity: float = 0.3,
               max_new_tokens: int = 32, raw: bool = False, height: int = 1100) -> Path:
    """Serve the app on ``model`` for the length of one deep-linked generation and save it."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from tigerdecode.demos.app import build_app, launch
    from tigerdecode.demos.backend import DemoBackend

    chromium()  # fail before serving when there is nothing to take the picture with
    app = build_app(DemoBackend(model, tok, model_name=model_name))
    launch(app, block=False)
    try:
        query = urlencode({"prompt": prompt, "creativity": creativity,
                           "max_new_tokens": max_new_tokens, "seed": 0, "raw": int(raw)})
        return capture(f"{app.local_url}?{query}", Path(out), height=height)
    finally:
        app.close()
