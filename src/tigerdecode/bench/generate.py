"""``tigerdecode bench generate``: plain ``model.generate``, controlled decoding (eager), the
controlled fast path (static KV cache, compiled step) and llama.cpp, side by side.

Every configuration runs ``--repeats`` times, interleaved (plain, controlled, fast, ..., plain,
...), so a noisy shared machine slows all of them alike; the table reports median tokens/s and
the ratios of those medians. All sides use the same sampling settings (the policy's
temperature and top-p at the chosen creativity) and produce exactly ``--max-new-tokens``
tokens (EOS suppressed on every side), so the work is identical. The fast path's compile time
is paid in an untimed warm-up per batch size and reported on its own.

llama.cpp (``pip install 'tigerdecode[bench]'``, i.e. ``llama-cpp-python``) runs the GGUF file
the default model ships as, batch 1 only, with ``Llama.generate`` (which never stops at EOS)
cut at the same token count, the same prompt tokens and the same number of threads. Its
sampler applies top-p before the temperature (llama.cpp's chain), ours after it: the same
settings, not the same distribution. Without the package, or for another model, its row is
absent and its keys are null.

With ``--engine-gguf FILE`` (a GGUF exported with heads, ``tigerdecode export --format gguf``)
one more row runs tigerdecode's own policy on llama.cpp (``--backend llama-cpp``): the same
prompt, creativity, seed and token count as the controlled rows, the heads read from the
packed rows, sampling by tigerdecode's pipeline.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

PROMPT = "Write a short story about a lighthouse keeper who finds a strange map."


def _heads_for(model, tok):
    """The shipped heads, or (same cost, labelled) an untrained head of the shipped shape."""
    from tigerdecode.api import resolve_heads
    from tigerdecode.heads import ControlHeads, HeadConfig
    from tigerdecode.model.load import fingerprint, text_config
    from tigerdecode.model.taps import num_layers

    heads = resolve_heads(model, tok, "auto")
    if heads is not None:
        return heads, "shipped"
    n = num_layers(model)
    cfg = HeadConfig([n // 2, 3 * n // 4, n], text_config(model).hidden_size, kind="mlp")
    return ControlHeads(cfg, fingerprint(model, tok)).eval(), "untrained stand-in (same cost)"


def llama_cpp_gguf(model_name: str):
    """The GGUF file llama.cpp runs for ``model_name`` (the default model's own file, or the
    .gguf path given), or None when llama-cpp-python is missing or there is no such file."""
    import importlib.util
    from pathlib import Path

    from tigerdecode.model.load import DEFAULT_ALIASES, ModelLoadError, default_gguf_path

    if importlib.util.find_spec("llama_cpp") is None:
        return None
    if model_name.lower() in DEFAULT_ALIASES:
        try:
            return default_gguf_path()
        except ModelLoadError:
            return None
    p = Path(model_name).expanduser()
    return p if p.suffix.lower() == ".gguf" and p.is_file() else None


class LlamaCpp:
    """llama.cpp on one GGUF file: ``run(ids, n)`` samples exactly ``n`` tokens after ``ids``."""

    def __init__(self, gguf, temperature: float, top_p: float, threads: int, n_ctx: int):
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(gguf), n_ctx=n_ctx, n_threads=threads,
                         n_threads_batch=threads, verbose=False)
        self.temperature, self.top_p = temperature, top_p

    def run(self, ids: list[int], n: int, seed: int = 0) -> list[int]:
        self.llm.reset()  # no prompt reuse between runs: every run evaluates its prompt
        self.llm.set_seed(seed)
        out = []
        for tok in self.llm.generate(ids, top_k=0, top_p=self.top_p, min_p=0.0, typical_p=1.0,
                                     temp=self.temperature, repeat_penalty=1.0):
            out.append(tok)
            if len(out) == n:
                break
        return out


def run_bench(model_name: str = "default", max_new_tokens: int = 128, repeats: int = 3,
              creativity: float = 0.5, batch: int = 8, progress: bool = True,
              threads: int | None = None, dtype: str = "fp32", quant: str | None = None,
              llama_cpp: bool = True, engine_gguf: str | None = None) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    from tqdm import tqdm

    from tigerdecode.api import generate
    from tigerdecode.model.load import load_model
    from tigerdecode.model.prompting import encode_prompts
    from tigerdecode.policy.knob import Policy

    model, tok = load_model(model_name, dtype=dtype, quant=quant)
    reference = None  # plain generate on the fp32 model, when the bench runs another precision
    if dtype != "fp32" or quant is not None:
        reference, _ = load_model(model_name)
    heads, heads_kind = _heads_for(model, tok)
    pol = Policy(creativity)
    one = encode_prompts(tok, [PROMPT])
    many = encode_prompts(tok, [PROMPT] * batch)
    n = max_new_tokens

    def plain(inp, m=model):
        torch.manual_seed(0)
        return m.generate(**inp, max_new_tokens=n, min_new_tokens=n, do_sample=True,
                          temperature=pol.temperature, top_p=pol.top_p, top_k=0,
                          pad_token_id=tok.pad_token_id)

    def ours(inp, ensemble=None, fast=False):
        # every row decodes exactly n tokens: an abstention would end rows early and inflate
        # tokens/s
        return generate(model, **inp, max_new_tokens=n, min_new_tokens=n, creativity=creativity,
                        tokenizer=tok, heads=heads, ensemble=ensemble, seed=0, use_abstain=False,
                        fast=fast)

    names = {"plain": "plain model.generate", "controlled": "controlled (heads, one member)",
             "fast": "controlled, fast path (static cache, compiled)",
             "ensemble": "controlled, two-member self-ensemble"}
    configs = {
        ("plain", 1): lambda: plain(one),
        ("controlled", 1): lambda: ours(one),
        ("fast", 1): lambda: ours(one, fast=True),
        ("ensemble", 1): lambda: ours(one, "self"),
        ("plain", batch): lambda: plain(many),
        ("controlled", batch): lambda: ours(many),
        ("fast", batch): lambda: ours(many, fast=True),
    }
    if reference is not None:
        names["plain_fp32"] = "plain model.generate, fp32 model (reference)"
        configs[("plain_fp32", 1)] = lambda: plain(one, reference)
    ids = one["input_ids"][0].tolist()  # the prompt every batch-1 engine row decodes after
    gguf = llama_cpp_gguf(model_name) if llama_cpp else None
    if gguf is not None:
        names["llama_cpp"] = f"llama.cpp on {gguf.name}"
        cpp = LlamaCpp(gguf, pol.temperature, pol.top_p, torch.get_num_threads(),
                       n_ctx=one["input_ids"].shape[1] + n + 8)
        configs[("llama_cpp", 1)] = lambda: torch.tensor([ids + cpp.run(ids, n)])
    if engine_gguf is not None:
        from tigerdecode.api import ControlledGenerator

        eng = ControlledGenerator(engine_gguf, tok, backend="llama-cpp",
                                  n_threads=torch.get_num_threads())
        names["llama_cpp_heads"] = (f"tigerdecode on llama.cpp ({Path(engine_gguf).name}, "
                                    f"{'packed heads' if eng.heads is not None else 'no heads'})")

        def engine_run():
            (r,) = eng.generate_text([PROMPT], creativity=creativity, max_new_tokens=n,
                                     min_new_tokens=n, seed=0, use_abstain=False)
            return torch.tensor([ids + r.token_ids])

        configs[("llama_cpp_heads", 1)] = engine_run
    compile_s = {}
    with torch.inference_mode():
        ours(one)  # warm-up: allocator, thread pools, lazy imports
        for b, inp in ((1, one), (batch, many)):  # compile once per shape, untimed
            t0 = time.perf_counter()
            ours(inp, fast=True)
            compile_s[f"batch {b}"] = round(time.perf_counter() - t0, 2)
    same = torch.equal(ours(one), ours(one, fast=True))  # same seed: the same tokens
    speeds = {k: [] for k in configs}
    bar = tqdm(total=repeats * len(configs), disable=not progress, desc="bench generate",
               leave=False)
    for _ in range(repeats):
        for (kind, b), fn in configs.items():
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
            new = out.shape[1] - (one if b == 1 else many)["input_ids"].shape[1]
            speeds[(kind, b)].append(b * new / dt)
            bar.update()
    bar.close()
    rows = [{"config": f"{names[k]}, batch {b}", "kind": k, "batch": b, "new_tokens": n,
             "tokens_per_s": round(statistics.median(v), 2), "runs": [round(x, 2) for x in v]}
            for (k, b), v in speeds.items()]
    med = {(r["kind"], r["batch"]): r["tokens_per_s"] for r in rows}

    def ratio(a, b):
        return None if a not in med or b not in med else round(med[a] / med[b], 3)

    return {
        "rows": rows,
        "plain_tokens_per_s": med[("plain", 1)],
        "controlled_tokens_per_s": med[("controlled", 1)],
        "fast_tokens_per_s": med[("fast", 1)],
        "llama_cpp_tokens_per_s": med.get(("llama_cpp", 1)),
        "fast_vs_plain": ratio(("fast", 1), ("plain", 1)),
        "fast_vs_llama_cpp": ratio(("fast", 1), ("llama_cpp", 1)),
        "llama_cpp_heads_tokens_per_s": med.get(("llama_cpp_heads", 1)),
        "llama_cpp_heads_vs_llama_cpp": ratio(("llama_cpp_heads", 1), ("llama_cpp", 1)),
        "llama_cpp_heads_vs_plain": ratio(("llama_cpp_heads", 1), ("plain", 1)),
        "fast_vs_plain_fp32": ratio(("fast", 1), ("plain_fp32", 1)),
        "fast_vs_controlled": ratio(("fast", 1), ("controlled", 1)),
        "controlled_vs_plain": ratio(("controlled", 1), ("plain", 1)),
        "ensemble_vs_plain": ratio(("ensemble", 1), ("plain", 1)),
        "batch8_vs_batch1": ratio(("controlled", batch), ("controlled", 1)),
        "fast_batch8_vs_batch1": ratio(("fast", batch), ("fast", 1)),
        "fast_same_tokens": same,
        "compile_s": compile_s,
        "settings": {"model": model_name, "dtype": dtype, "quant": quant,
                     "creativity": creativity, "temperature": pol.temperature,
                     "top_p": pol.top_p, "repeats": repeats, "batch": batch,
                     "heads": heads_kind, "threads": torch.get_num_threads(),
                     "llama_cpp": str(gguf) if gguf is not None else (
                         "not installed (pip install 'tigerdecode[bench]')" if llama_cpp
                         else "off"),
                     "device": str(next(model.parameters()).device)},
    }


def table(res: dict) -> str:
    lines = ["| configuration | batch | tokens/s (median) | runs |", "|---|---:|---:|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['config']} | {r['batch']} | {r['tokens_per_s']:.1f} | "
                     f"{', '.join(f'{x:.1f}' for x in r['runs'])} |")
    s = res["settings"]

    def line(label, key):
        v = res[key]
        return None if v is None else f"{label}: **{v:.3f}**"

    lines.append("")
    lines += [x for x in (
        line("fast / plain (batch 1)", "fast_vs_plain"),
        line("fast / plain on the fp32 model (batch 1)", "fast_vs_plain_fp32"),
        line("fast / llama.cpp (batch 1)", "fast_vs_llama_cpp"),
        line("tigerdecode on llama.cpp (heads) / llama.cpp (batch 1)",
             "llama_cpp_heads_vs_llama_cpp"),
        line("tigerdecode on llama.cpp (heads) / plain (batch 1)", "llama_cpp_heads_vs_plain"),
        line("fast / controlled eager (batch 1)", "fast_vs_controlled"),
        line("controlled / plain (batch 1)", "controlled_vs_plain"),
        line("two-member self-ensemble / plain (batch 1)", "ensemble_vs_plain"),
        line(f"controlled batch {s['batch']} / batch 1", "batch8_vs_batch1"),
        line(f"fast batch {s['batch']} / batch 1", "fast_batch8_vs_batch1")) if x]
    comp = ", ".join(f"{k}: {v:.1f} s" for k, v in res["compile_s"].items())
    lines += [f"fast path: same tokens as the eager loop (same seed): "
              f"**{res['fast_same_tokens']}**; first call per shape (compile, untimed): {comp}",
              "", f"settings: {json.dumps(s)}"]
    return "\n".join(lines)
