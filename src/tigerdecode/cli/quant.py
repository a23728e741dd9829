"""CLI: ``tigerdecode quantize``, ``tigerdecode bench kernels``, ``tigerdecode bench quant``."""

from __future__ import annotations

import json

import click


@click.command("quantize")
@click.argument("model_name", metavar="MODEL")
@click.option("--bits", type=click.Choice(["4", "8"]), default="4", show_default=True,
              help="4: int4 grouped asymmetric (W4A16); 8: int8 per-channel (W8A16).")
@click.option("--group-size", type=click.Choice(["32", "64", "128"]), default="128",
              show_default=True, help="int4 group size along K (ignored for int8).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output directory (a new or empty one, or an earlier quantized checkpoint).")
@click.option("--include-lm-head", is_flag=True,
              help="Also quantize the output layer (and a tied input embedding with it).")
@click.option("--on-bad-shape", type=click.Choice(["fallback", "skip", "error"]),
              default="fallback", show_default=True,
              help="A layer whose K the group does not divide: smaller group, float, or fail.")
@click.option("--clip-search", is_flag=True,
              help="int4: choose each group's range by least squared error (slower, better).")
@click.option("--method", type=click.Choice(["rtn", "gptq"]), default="rtn", show_default=True,
              help="int4: round-to-nearest, or GPTQ error compensation on calibration text.")
@click.option("--zero-mode", type=click.Choice(["int", "float"]), default="int", show_default=True,
              help="int4 zeros: a uint4 zero point, or the fp16 group minimum (Q4_1 style).")
@click.option("--calibration", type=click.Path(exists=True, dir_okay=False), default=None,
              help="GPTQ calibration text file (default: CPython's pydoc topics).")
@click.option("--calibration-seqs", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="GPTQ: number of 512-token calibration windows.")
def quantize_cmd(model_name, bits, group_size, out_dir, include_lm_head, on_bad_shape,
                 clip_search, method, zero_mode, calibration, calibration_seqs):
    """Quantize MODEL ('default', a local HF directory or a cached hub id) and save it to --out.

    The result loads with `tigerdecode generate --model DIR` and `load_model(DIR)`.
    """
    import warnings

    from tigerdecode.kernels import QuantizationError
    from tigerdecode.model.load import ModelLoadError, load_model
    from tigerdecode.quant.rtn import quantize_model, quantized_bytes
    from tigerdecode.quant.io import save_quantized

    bits, group = int(bits), int(group_size)
    if method == "gptq" and bits != 4:
        raise click.ClickException("--method gptq applies to --bits 4 only.")
    try:
        model, tok = load_model(model_name)
        before = quantized_bytes(model)
        cal = None
        if method == "gptq":
            from pathlib import Path

            from tigerdecode.quant.gptq import calibration_batches, default_calibration_text

            text = (Path(calibration).read_text(encoding="utf-8") if calibration
                    else default_calibration_text())
            cal = calibration_batches(tok, text, n_seqs=calibration_seqs)
            if not cal:
                raise click.ClickException("the calibration text is shorter than 512 tokens.")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quantize_model(model, bits, group if bits == 4 else None,
                           include_lm_head=include_lm_head, on_bad_shape=on_bad_shape,
                           clip_search=clip_search, method=method, calibration=cal,
                           zero_mode=zero_mode if bits == 4 else "int", progress=True)
        for w in caught:
            click.echo(f"note: {w.message}", err=True)
        out = save_quantized(model, tok, out_dir, source=model_name)
    except (ModelLoadError, QuantizationError, FileExistsError) as e:
        raise click.ClickException(str(e)) from e
    plan = model.tigerdecode_quant
    click.echo(f"quantized {len(plan.layers)} layers to int{bits}"
               f"{f' (group {group})' if bits == 4 else ' (per channel)'}, kept "
               f"{len(plan.kept_float)} in float; {before / 1e6:.1f} MB -> "
               f"{quantized_bytes(model) / 1e6:.1f} MB; saved to {out}")


@click.command("kernels")
@click.option("--quick", is_flag=True, help="Fewer shapes (a smoke run).")
@click.option("--reps", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Timed calls per case.")
@click.option("--threads", type=click.IntRange(0, 256), default=0, show_default=True,
              help="CPU threads for torch (0: torch's default).")
def kernels_bench(quick, reps, threads):
    """Quantized matmul kernels vs dense matmul on this device (a markdown table)."""
    from tigerdecode.kernels.bench import main as bench_main

    bench_main((["--quick"] if quick else []) + ["--reps", str(reps), "--threads", str(threads)])


@click.command("quant")
@click.option("--model", "model_name", default="default", show_default=True)
@click.option("--new-tokens", type=click.IntRange(1, 1024), default=128, show_default=True)
@click.option("--repeats", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option("--group-size", type=click.Choice(["32", "64", "128"]), default="128",
              show_default=True)
@click.option("--lm-head/--no-lm-head", default=True, show_default=True,
              help="Quantize the output layer (and the tied embedding) too.")
@click.option("--ppl-tokens", type=click.IntRange(64, 65536), default=4096, show_default=True)
@click.option("--method", type=click.Choice(["rtn", "gptq"]), default="gptq", show_default=True,
              help="How the int4 variant is quantized (GPTQ calibrates on CPython's docs).")
@click.option("--zero-mode", type=click.Choice(["int", "float"]), default="int", show_default=True,
              help="int4 zeros: uint4 zero point or fp16 group minimum.")
@click.option("--threads", type=click.IntRange(0, 256), default=0, show_default=True,
              help="CPU threads for torch (0: torch's default).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary ratios as JSON.")
@click.option("--save", "save_path", type=click.Path(dir_okay=False), default=None,
              help="Also write every measured number to this JSON file.")
def quant_bench_cmd(model_name, new_tokens, repeats, group_size, lm_head, ppl_tokens, method,
                    zero_mode, threads, as_json, save_path):
    """Float vs int8 vs int4 side by side: tokens/s, weight bytes, held-out perplexity."""
    import torch

    from tigerdecode.model.load import ModelLoadError
    from tigerdecode.bench.quant import format_report, run

    if threads:
        torch.set_num_threads(threads)

    try:
        r = run(model_name, new_tokens=new_tokens, repeats=repeats, group_size=int(group_size),
                include_lm_head=lm_head, ppl_tokens=ppl_tokens, method=method,
                zero_mode=zero_mode, progress=not as_json)
    except ModelLoadError as e:
        raise click.ClickException(str(e)) from e
    if save_path:
        import os

        tmp = f"{save_path}.tmp"
        with open(tmp, "w") as fh:
            json.dump(r, fh, indent=2)
        os.replace(tmp, save_path)
    if as_json:
        click.echo(json.dumps({**{k: round(v, 4) for k, v in r["summary"].items()},
                               "setup": r["setup"]}))
    else:
        click.echo(format_report(r))
