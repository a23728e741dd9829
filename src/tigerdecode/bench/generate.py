"""``tigerdecode bench generate``: controlled decoding against plain ``model.generate``.

Every configuration runs ``--repeats`` times, interleaved (plain, controlled, ensemble, batch 8,
plain, ...), so a noisy shared machine slows all of them alike; the table reports median
tokens/s and the ratios of those medians. Both sides use the same sampling settings (the
policy's temperature and top-p at the chosen creativity) and produce exactly
``--max-new-tokens`` tokens (EOS suppressed on both sides), so the work is identical.
"""

from __future__ import annotations

import json
import statistics
import time

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


def run_bench(model_name: str = "default", max_new_tokens: int = 128, repeats: int = 3,
              creativity: float = 0.5, batch: int = 8, progress: bool = True,
              threads: int | None = None) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    from tqdm import tqdm

    from tigerdecode.api import generate
    from tigerdecode.model.load import load_model
    from tigerdecode.model.prompting import encode_prompts
    from tigerdecode.policy.knob import Policy

    model, tok = load_model(model_name)
    heads, heads_kind = _heads_for(model, tok)
    pol = Policy(creativity)
    one = encode_prompts(tok, [PROMPT])
    many = encode_prompts(tok, [PROMPT] * batch)
    n = max_new_tokens

    def plain(inp):
        torch.manual_seed(0)
        return model.generate(**inp, max_new_tokens=n, min_new_tokens=n, do_sample=True,
                              temperature=pol.temperature, top_p=pol.top_p, top_k=0,
                              pad_token_id=tok.pad_token_id)

    def ours(inp, ensemble=None):
        # every row decodes exactly n tokens: an abstention would end rows early and inflate
        # tokens/s
        return generate(model, **inp, max_new_tokens=n, min_new_tokens=n, creativity=creativity,
                        tokenizer=tok, heads=heads, ensemble=ensemble, seed=0, use_abstain=False)

    configs = {
        "plain model.generate, batch 1": (lambda: plain(one), 1),
        "controlled (heads, one member), batch 1": (lambda: ours(one), 1),
        "controlled, two-member self-ensemble, batch 1": (lambda: ours(one, "self"), 1),
        f"plain model.generate, batch {batch}": (lambda: plain(many), batch),
        f"controlled (heads, one member), batch {batch}": (lambda: ours(many), batch),
    }
    with torch.inference_mode():
        ours(one)  # warm-up: allocator, thread pools, lazy imports
    speeds = {k: [] for k in configs}
    bar = tqdm(total=repeats * len(configs), disable=not progress, desc="bench generate",
               leave=False)
    for _ in range(repeats):
        for name, (fn, b) in configs.items():
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
            new = out.shape[1] - (one if b == 1 else many)["input_ids"].shape[1]
            speeds[name].append(b * new / dt)
            bar.update()
    bar.close()
    rows = [{"config": k, "batch": configs[k][1], "new_tokens": n,
             "tokens_per_s": round(statistics.median(v), 2),
             "runs": [round(x, 2) for x in v]} for k, v in speeds.items()]
    med = {r["config"]: r["tokens_per_s"] for r in rows}
    names = list(configs)
    return {
        "rows": rows,
        "controlled_vs_plain": round(med[names[1]] / med[names[0]], 3),
        "ensemble_vs_plain": round(med[names[2]] / med[names[0]], 3),
        "batch8_vs_batch1": round(med[names[4]] / med[names[1]], 3),
        "settings": {"model": model_name, "creativity": creativity,
                     "temperature": pol.temperature, "top_p": pol.top_p, "repeats": repeats,
                     "heads": heads_kind, "threads": torch.get_num_threads(),
                     "device": str(next(model.parameters()).device)},
    }


def table(res: dict) -> str:
    lines = ["| configuration | batch | tokens/s (median) | runs |", "|---|---:|---:|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['config']} | {r['batch']} | {r['tokens_per_s']:.1f} | "
                     f"{', '.join(f'{x:.1f}' for x in r['runs'])} |")
    s = res["settings"]
    lines += ["", f"controlled / plain (batch 1): **{res['controlled_vs_plain']:.3f}**",
              f"two-member self-ensemble / plain (batch 1): **{res['ensemble_vs_plain']:.3f}**",
              f"controlled batch 8 / batch 1: **{res['batch8_vs_batch1']:.3f}**",
              "", f"settings: {json.dumps(s)}"]
    return "\n".join(lines)
