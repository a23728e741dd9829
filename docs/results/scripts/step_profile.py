"""Where one decode step's time goes: the eager runner against the fast path (static cache,
compiled step), on the default model. Quoted in docs/results/generate-speed.md.

    python docs/results/scripts/step_profile.py --threads 1 --batch 1 --dtype fp32
    python docs/results/scripts/step_profile.py --threads 1 --batch 1 --dtype bf16 --quant int4
    python docs/results/scripts/step_profile.py --threads 1 --batch 8 --dtype fp32

Prints, per runner: ms per step of the model alone (feeding argmax tokens, the heads' three
layers tapped; no profiler), then a torch.profiler breakdown of the same steps (the profiler
adds a little per op, so its total runs above), then the whole controlled loop (heads, policy,
sampling at creativity 0.5) split into time inside the runner's step, the prompt's prefill
(paid once per call; shown divided by the tokens) and the rest.
"""

import argparse
import statistics
import time
import warnings

import torch

warnings.simplefilter("ignore")
ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--dtype", default="fp32")
ap.add_argument("--quant", default=None)
ap.add_argument("--steps", type=int, default=32)
ap.add_argument("--repeats", type=int, default=3)
a = ap.parse_args()
torch.set_num_threads(a.threads)

from torch.profiler import ProfilerActivity, profile  # noqa: E402

from tigerdecode.api import generate, resolve_heads  # noqa: E402
from tigerdecode.decode import fast  # noqa: E402
from tigerdecode.decode.runner import ModelRunner  # noqa: E402
from tigerdecode.model.load import load_model  # noqa: E402
from tigerdecode.model.prompting import encode_prompts  # noqa: E402

model, tok = load_model("default", dtype=a.dtype, quant=a.quant)
heads = resolve_heads(model, tok, "auto")
inp = encode_prompts(tok, ["Write a short story about a lighthouse keeper who finds a strange "
                           "map."] * a.batch)
N = a.steps
RUNNERS = {"eager": lambda: ModelRunner(model, inp["input_ids"], inp["attention_mask"],
                                        heads.layers),
           "fast": lambda: fast.FastRunner(model, inp["input_ids"], inp["attention_mask"],
                                           heads.layers, max_new_tokens=N)}
MATMUL = ("aten::mm", "aten::addmm", "aten::_weight_int4pack_mm_for_cpu",
          "aten::_weight_int8pack_mm", "aten::bmm")
ATTN = ("aten::_scaled_dot_product_flash_attention_for_cpu",
        "aten::_scaled_dot_product_attention_math")


def steps(make, prof=None):
    with torch.inference_mode():
        r = make()
        t = r.prefill().argmax(-1)
        t0 = time.perf_counter()
        with prof if prof is not None else torch.inference_mode():
            for _ in range(N):
                t = r.step(t).argmax(-1)
        dt = time.perf_counter() - t0
        r.close()
    return dt / N * 1e3


def loop(f):
    acc = [0.0]
    orig = {k: c.step for k, c in (("eager", ModelRunner), ("fast", fast.FastRunner))}

    def timed(cls):
        def step(self, tokens, **kw):  # keep=: rows leaving a batch
            t0 = time.perf_counter()
            out = orig[cls](self, tokens, **kw)
            acc[0] += time.perf_counter() - t0
            return out
        return step

    ModelRunner.step, fast.FastRunner.step = timed("eager"), timed("fast")
    try:
        t0 = time.perf_counter()
        res = generate(model, **inp, max_new_tokens=N, min_new_tokens=N, creativity=0.5,
                       tokenizer=tok, heads=heads, seed=0, use_abstain=False, fast=f,
                       return_result=True)
        total = time.perf_counter() - t0
    finally:
        ModelRunner.step, fast.FastRunner.step = orig["eager"], orig["fast"]
    # the prompt's prefill (one forward over every prompt token) is paid once per call: kept
    # apart from the per-token loop, or a short decode reads it as per-token overhead
    prefill = res[0].timings["prefill_s"]
    return total / N * 1e3, acc[0] / N * 1e3, prefill / N * 1e3


t0 = time.perf_counter()
steps(RUNNERS["fast"])
loop(True)
print(f"settings: threads {a.threads}, batch {a.batch}, dtype {a.dtype}, quant {a.quant}; "
      f"first fast calls (compile) {time.perf_counter() - t0:.1f} s")
ms = {k: statistics.median(steps(m) for _ in range(a.repeats)) for k, m in RUNNERS.items()}
print("\n| runner | model step ms (no profiler) | matmuls | attention | cache torch.cat | "
      "compiled graph (own kernels + wrapper) | dynamo guards | other ops + Python | "
      "profiled total |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for k, make in RUNNERS.items():
    prof = profile(activities=[ProfilerActivity.CPU])
    steps(make, prof)
    ev = prof.key_averages()
    self_ms = {e.key: e.self_cpu_time_total / 1e3 / N for e in ev}
    total = sum(self_ms.values())
    mm = sum(v for key, v in self_ms.items() if key in MATMUL or key.startswith("quantized::"))
    att = sum(v for key, v in self_ms.items() if key in ATTN)
    cat = self_ms.get("aten::cat", 0.0)
    graph = sum(v for key, v in self_ms.items() if key.startswith("## Call CompiledFxGraph"))
    guards = self_ms.get("TorchDynamo Cache Lookup", 0.0)
    rest = total - mm - att - cat - graph - guards
    print(f"| {k} | {ms[k]:.2f} | {mm:.2f} | {att:.2f} | {cat:.2f} | {graph:.2f} | {guards:.2f} | "
          f"{rest:.2f} | {total:.2f} |")
print(f"\n| loop | ms per token (the call / {N}) | in the runner's step | the prompt's prefill "
      f"(once per call, / {N}) | heads, policy, sampling, records, call setup |")
print("|---|---:|---:|---:|---:|")
for f in (False, True):
    runs = [loop(f) for _ in range(a.repeats)]
    tot, inner, pre = (statistics.median(x[i] for x in runs) for i in range(3))
    print(f"| {'fast' if f else 'eager'} | {tot:.2f} | {inner:.2f} | {pre:.2f} | "
          f"{tot - inner - pre:.2f} |")
