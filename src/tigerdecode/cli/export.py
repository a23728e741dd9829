"""``tigerdecode export``: a model with its control heads packed as extra lm_head rows."""

from __future__ import annotations

import json

import click

from tigerdecode.cli.options import set_option


@click.command("export")
@click.argument("model_name", metavar="MODEL")
@click.option("--heads", "heads_dir", default=None, type=click.Path(file_okay=False),
              help="Heads checkpoint: linear heads on the final normed state (`heads train "
                   "--layers final`). Default: those found for the model (heads=\"auto\").")
@click.option("--format", "fmt", type=click.Choice(["hf", "gguf"]), required=True,
              help="hf: a transformers directory; gguf: a GGUF file for llama.cpp.")
@click.option("--gguf", "source_gguf", default=None, type=click.Path(dir_okay=False),
              help="--format gguf: the GGUF file the model comes from (default: the file given "
                   "as MODEL, or the default model's GGUF).")
@click.option("--out", required=True, type=click.Path(),
              help="The directory (hf) or .gguf file (gguf) to write (replaced atomically).")
@set_option("A Policy field chosen for these heads (e.g. their abstention bars, --set "
            "risk_at=0.8), stored with them and applied by default where the export is "
            "decoded; repeatable. Default: the heads' metrics.json 'policy', if any.")
def export_cmd(model_name, heads_dir, fmt, source_gguf, out, sets) -> None:
    """Write MODEL with its heads as extra lm_head rows (for engines).

    MODEL is 'default', an HF directory or a .gguf file; the heads must be linear on the final
    normed state, so that engines that return logits compute them.
    The original vocabulary's rows are unchanged; k reserved tokens carry the heads (p_stop,
    p_dev, ...), and a small JSON (calibration, constants, fingerprint) travels with them.
    Decode the GGUF with `tigerdecode generate --backend llama-cpp --model OUT.gguf`.
    """
    from pathlib import Path

    from tigerdecode.api import resolve_heads
    from tigerdecode.engines.export import export_gguf, export_hf
    from tigerdecode.heads import find_shipped
    from tigerdecode.model.load import default_gguf_path, is_gguf_file, load_model

    model, tok = load_model(model_name)
    if heads_dir is None:  # the engine heads shipped beside the model's own heads, if any
        shipped = find_shipped(model, tok)
        if shipped is not None and (shipped / "engine" / "config.json").is_file():
            heads_dir = shipped / "engine"
    heads = resolve_heads(model, tok, heads_dir if heads_dir is not None else "auto")
    if heads is None:
        raise click.ClickException(f"no heads found for {model_name}; pass --heads DIR")
    policy = {**heads.policy, **sets}  # the bars chosen for these heads, then --set
    if fmt == "hf":
        info = export_hf(model, tok, heads, out, policy)
    else:
        if source_gguf is None:
            p = Path(model_name).expanduser()
            if model_name == "default":
                source_gguf = default_gguf_path()
            elif p.is_file() and is_gguf_file(p):
                source_gguf = p
            else:
                raise click.UsageError("--format gguf needs the GGUF the model comes from: "
                                       "give MODEL as FILE.gguf or --gguf FILE.gguf")
        if not str(out).endswith(".gguf"):
            raise click.BadParameter("a GGUF export is a file: end --out with .gguf",
                                     param_hint="--out")
        info = export_gguf(model, tok, heads, source_gguf, out, policy)
    click.echo(json.dumps(info, indent=1))
