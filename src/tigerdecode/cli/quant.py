"""``tigerdecode quantize``: a quantized checkpoint of a model (int4 RTN/GPTQ or int8).

The benchmarks of the result live in ``tigerdecode bench`` (``cli/bench.py``)."""

from __future__ import annotations

import click

from tigerdecode.cli.options import out_option


@click.command("quantize")
@click.argument("model_name", metavar="MODEL")
@click.option("--bits", type=click.Choice(["4", "8"]), default="4", show_default=True,
              help="4: int4 grouped asymmetric (W4A16); 8: int8 per-channel (W8A16).")
@click.option("--group-size", type=click.Choice(["32", "64", "128"]), default="128",
              show_default=True, help="int4 group size along K (ignored for int8).")
@out_option("Output directory (a new or empty one, or an earlier quantized checkpoint).",
            required=True, folder=True)
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
def quantize_cmd(model_name, bits, group_size, out, include_lm_head, on_bad_shape,
                 clip_search, method, zero_mode, calibration, calibration_seqs):
    """Quantize MODEL to int4 or int8 and save it to --out.

    MODEL is 'default', a local HF directory or a cached hub id. The result loads with
    `tigerdecode generate --model DIR` and `load_model(DIR)`.
    """
    import warnings

    from tigerdecode.kernels import QuantizationError
    from tigerdecode.model.load import ModelLoadError, load_model
    from tigerdecode.quant.io import save_quantized
    from tigerdecode.quant.rtn import quantize_model, quantized_bytes

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
        saved = save_quantized(model, tok, out, source=model_name)
    except (ModelLoadError, QuantizationError, FileExistsError) as e:
        raise click.ClickException(str(e)) from e
    plan = model.tigerdecode_quant
    click.echo(f"quantized {len(plan.layers)} layers to int{bits}"
               f"{f' (group {group})' if bits == 4 else ' (per channel)'}, kept "
               f"{len(plan.kept_float)} in float; {before / 1e6:.1f} MB -> "
               f"{quantized_bytes(model) / 1e6:.1f} MB; saved to {saved}")
