"""``bench quant``: the default model in float vs int8 vs int4, side by side in one run.

Per variant: decode tokens/s (greedy, batch 1, a fixed number of new tokens, timed in
round-robin repeats so machine noise hits every variant alike; medians), checkpoint bytes, and
perplexity on a held-out text (``data/heldout_gpl3.txt``, see data/README.md).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
import warnings
from importlib.resources import files

import torch

from tigerdecode.quant.rtn import quantize_model, quantized_bytes

PROMPT = "Write a short story about a lighthouse keeper who finds a strange map."


def heldout_text() -> str:
    return (files("tigerdecode.datasets") / "heldout_gpl3.txt").read_text(encoding="utf-8")


@torch.no_grad()
def perplexity(model, tok, text: str, *, window: int = 512, max_tokens: int = 4096) -> float:
    """exp(mean next-token NLL) over non-overlapping windows of the first ``max_tokens`` tokens."""
    ids = tok(text, return_tensors="pt").input_ids[0][:max_tokens]  # (T,)
    nll, count = 0.0, 0
    for i in range(0, ids.numel() - 1, window):
        x = ids[i:i + window][None]  # (1, w)
        if x.shape[1] < 2:
            break
        logits = model(x).logits.float()  # (1, w, V)
        loss = torch.nn.functional.cross_entropy(logits[0, :-1], x[0, 1:], reduction="sum")
        nll += loss.item()
        count += x.shape[1] - 1
    return math.exp(nll / count)


@torch.no_grad()
def _decode_seconds(model, enc, new_tokens: int) -> float:
    t0 = time.perf_counter()
    out = model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                         do_sample=False)
    assert out.shape[1] - enc["input_ids"].shape[1] == new_tokens
    return time.perf_counter() - t0


def build_variants(model, group_size: int = 128, include_lm_head: bool = True,
                   method: str = "rtn", calibration=None, zero_mode: str = "int") -> dict:
    """fp32 (the loaded model), bf16, int8 and int4 copies of ``model``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the K=576 → smaller-group note is reported in the table
        return {
            "fp32": model,
            "bf16": copy.deepcopy(model).to(torch.bfloat16),
            "int8": quantize_model(copy.deepcopy(model), 8, None, include_lm_head=include_lm_head),
            "int4": quantize_model(copy.deepcopy(model), 4, group_size,
                                   include_lm_head=include_lm_head, method=method,
                                   calibration=calibration, zero_mode=zero_mode),
        }


def run(model_name: str = "default", *, new_tokens: int = 128, repeats: int = 3,
        group_size: int = 128, include_lm_head: bool = True, ppl_tokens: int = 4096,
        method: str = "rtn", calibration_seqs: int = 16, zero_mode: str = "int",
        progress: bool = True) -> dict:
    """Measure every variant; returns per-variant numbers and the summary ratios."""
    from tigerdecode.model.load import load_model
    from tigerdecode.model.prompting import encode_prompts

    model, tok = load_model(model_name)
    cal = None
    if method == "gptq":
        from tigerdecode.quant.gptq import calibration_batches, default_calibration_text

        cal = calibration_batches(tok, default_calibration_text(), n_seqs=calibration_seqs)
    variants = build_variants(model, group_size, include_lm_head, method, cal, zero_mode)
    enc = encode_prompts(tok, [PROMPT])
    text = heldout_text()
    res = {k: {"bytes": quantized_bytes(m)} for k, m in variants.items()}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(variants) * (repeats + 2), desc="bench quant", unit="run")
    for name, m in variants.items():
        res[name]["perplexity"] = perplexity(m, tok, text, max_tokens=ppl_tokens)
        _decode_seconds(m, enc, 8)  # warm-up (CPU layout conversion, allocator)
        if bar:
            bar.update(2)
    times = {k: [] for k in variants}
    for _ in range(repeats):
        for name, m in variants.items():
            times[name].append(_decode_seconds(m, enc, new_tokens))
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    for name in variants:
        res[name]["tokens_per_s"] = new_tokens / statistics.median(times[name])
    q = variants["int4"].tigerdecode_quant
    groups = sorted({spec["group_size"] for spec in q.layers.values()})
    f, b = res["fp32"], res["bf16"]
    summary = {
        "int4_vs_float": res["int4"]["tokens_per_s"] / f["tokens_per_s"],
        "int8_vs_float": res["int8"]["tokens_per_s"] / f["tokens_per_s"],
        "bf16_vs_float": b["tokens_per_s"] / f["tokens_per_s"],
        "int4_bytes_vs_bf16": res["int4"]["bytes"] / b["bytes"],
        "int8_bytes_vs_bf16": res["int8"]["bytes"] / b["bytes"],
        "ppl_increase_int4": res["int4"]["perplexity"] / f["perplexity"] - 1,
        "ppl_increase_int8": res["int8"]["perplexity"] / f["perplexity"] - 1,
    }
    setup = {"model": model_name, "new_tokens": new_tokens, "batch": 1, "repeats": repeats,
             "int4_group_size": group_size, "int4_group_sizes_used": groups,
             "include_lm_head": include_lm_head, "ppl_tokens": ppl_tokens,
             "int4_method": method, "int4_zero_mode": zero_mode, "calibration_seqs": calibration_seqs if cal else 0,
             "threads": torch.get_num_threads(), "device": "cpu"}
    return {"summary": summary, "variants": res, "setup": setup}


def format_report(r: dict) -> str:
    v, st = r["variants"], r["setup"]
    lines = [f"model {st['model']}, batch 1, {st['new_tokens']} new tokens (greedy), median of "
             f"{st['repeats']} round-robin runs, {st['threads']} CPU threads; int4 groups "
             f"{st['int4_group_sizes_used']} (asked {st['int4_group_size']}), int4 method "
             f"{st['int4_method']}, zeros {st['int4_zero_mode']}; lm_head + tied "
             f"embedding quantized: {st['include_lm_head']}", "",
             "| variant | tokens/s | vs fp32 | weight MB | vs bf16 | perplexity | ppl change |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    f, b = v["fp32"], v["bf16"]
    for name, x in v.items():
        lines.append(f"| {name} | {x['tokens_per_s']:.1f} | {x['tokens_per_s'] / f['tokens_per_s']:.2f}x"
                     f" | {x['bytes'] / 1e6:.1f} | {x['bytes'] / b['bytes']:.2f}x | "
                     f"{x['perplexity']:.3f} | {100 * (x['perplexity'] / f['perplexity'] - 1):+.2f}% |")
    return "\n".join(lines)
