"""``tigerdecode bench kernels|quant|generate``: benchmarks that print tables of ratios measured
side by side in one run (the logic lives in ``tigerdecode.bench`` and ``tigerdecode.kernels``)."""

from __future__ import annotations

import json
import warnings

import click

from tigerdecode.cli.options import (
    creativity_option,
    dtype_option,
    json_option,
    max_new_tokens_option,
    model_option,
    out_option,
    quant_option,
    write_json,
)


def _threads_option(default=0):
    return click.option("--threads", type=click.IntRange(0, 256), default=default,
                        show_default=True,
                        help="CPU threads for torch (0: torch's default). On an oversubscribed "
                             "machine 1 avoids thread-barrier stalls.")


def _set_threads(n: int) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


@click.group("bench")
def bench_group() -> None:
    """Benchmarks that print side-by-side markdown tables."""


@bench_group.command("kernels")
@click.option("--quick", is_flag=True, help="Fewer shapes (a smoke run).")
@click.option("--reps", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Timed calls per case.")
@_threads_option()
def kernels_cmd(quick, reps, threads):
    """Quantized matmul kernels vs dense matmul on this device."""
    _set_threads(threads)
    from tigerdecode.kernels.bench import report

    click.echo(report(quick=quick, reps=reps))


@bench_group.command("quant")
@model_option()
@click.option("--new-tokens", type=click.IntRange(1, 1024), default=128, show_default=True,
              help="Tokens decoded per timed run.")
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
@_threads_option()
@json_option("Print the summary ratios as JSON.")
@out_option("Also write every measured number to this JSON file.")
def quant_cmd(model_name, new_tokens, repeats, group_size, lm_head, ppl_tokens, method,
              zero_mode, threads, as_json, out):
    """Float vs int8 vs int4: tokens/s, bytes, perplexity.

    Side by side in one run; perplexity on a held-out text.
    """
    _set_threads(threads)
    from tigerdecode.bench.quant import format_report, run
    from tigerdecode.model.load import ModelLoadError

    try:
        r = run(model_name, new_tokens=new_tokens, repeats=repeats, group_size=int(group_size),
                include_lm_head=lm_head, ppl_tokens=ppl_tokens, method=method,
                zero_mode=zero_mode, progress=not as_json)
    except ModelLoadError as e:
        raise click.ClickException(str(e)) from e
    if out:
        write_json(out, r)
    if as_json:
        click.echo(json.dumps({**{k: round(v, 4) for k, v in r["summary"].items()},
                               "setup": r["setup"]}))
    else:
        click.echo(format_report(r))


@bench_group.command("generate")
@model_option()
@max_new_tokens_option(128, help="Tokens every configuration decodes (EOS suppressed).")
@click.option("--repeats", type=click.IntRange(1, 50), default=3, show_default=True,
              help="Interleaved runs per configuration (the table shows medians).")
@click.option("--batch", type=click.IntRange(2, 256), default=8, show_default=True,
              help="The larger batch size timed beside batch 1.")
@creativity_option(0.5)
@dtype_option()
@quant_option()
@click.option("--llama-cpp/--no-llama-cpp", default=True, show_default=True,
              help="Time llama.cpp on the same GGUF file when llama-cpp-python is installed "
                   "(pip install 'tigerdecode[bench]').")
@click.option("--engine-gguf", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Also time tigerdecode's policy on llama.cpp with this GGUF exported with "
                   "heads (`tigerdecode export MODEL --format gguf`).")
@_threads_option()
@json_option('Print {"rows": [...], "plain_tokens_per_s", "controlled_tokens_per_s", '
             '"fast_tokens_per_s", "llama_cpp_tokens_per_s", "fast_vs_plain", '
             '"fast_vs_llama_cpp", "llama_cpp_heads_tokens_per_s", '
             '"llama_cpp_heads_vs_llama_cpp", ... ratios, "compile_s", "settings"}.')
def generate_cmd(model_name, max_new_tokens, repeats, batch, creativity, dtype, quant, llama_cpp,
                 engine_gguf, threads, as_json):
    """Tokens/s: HF generate vs ours vs llama.cpp.

    Plain model.generate, controlled decoding (eager and the fast path) and, when installed,
    llama.cpp on the same GGUF: side by side in one run at batch 1 and --batch, interleaved
    repeats, medians; the fast path's compile time is reported apart.
    """
    _set_threads(threads)
    from tigerdecode.bench.generate import run_bench, table
    from tigerdecode.model.load import ModelLoadError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = run_bench(model_name, max_new_tokens, repeats, creativity, batch=batch,
                            progress=not as_json, dtype=dtype,
                            quant=None if quant == "none" else quant, llama_cpp=llama_cpp,
                            engine_gguf=engine_gguf)
    except ModelLoadError as e:
        raise click.ClickException(str(e)) from e
    click.echo(json.dumps(res) if as_json else table(res))


from tigerdecode.cli.demo import bench_demo_cmd  # noqa: E402 - the demo's own bench, registered here

bench_group.add_command(bench_demo_cmd)
