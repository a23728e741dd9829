"""Which use of the heads improves the factual trade-off? A small ablation on held-out topics.

Every variant decodes the same chat-formatted qa_wikidata test-split prompts (topics unseen by
the heads) with the same creativity schedule and seeds; only the head uses differ: none (plain
sampling at the policy's temperature/top-p), EOS bias from p_stop, tightening on p_dev,
undo-and-resample on p_dev, abstention. Answers are judged right/wrong by the same rule that
labelled the heads' training data.

    python -m tigerdecode.policy_tune --limit 96 --creativity 0.25,0.5 --json out.json
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
import warnings

import click

VARIANTS = {
    "plain": dict(use_eos_bias=False, use_tighten=False, use_resample=False, use_abstain=False),
    "eos_bias": dict(use_eos_bias=True, use_tighten=False, use_resample=False, use_abstain=False),
    "tighten": dict(use_eos_bias=False, use_tighten=True, use_resample=False, use_abstain=False),
    "resample": dict(use_eos_bias=False, use_tighten=False, use_resample=True, use_abstain=False),
    "eos+tighten": dict(use_eos_bias=True, use_tighten=True, use_resample=False,
                        use_abstain=False),
    "eos+tighten+resample": dict(use_eos_bias=True, use_tighten=True, use_resample=True,
                                 use_abstain=False),
}


def heldout_items(limit: int, seed: int = 0):
    from tigerdecode.data import load_qa, qa_wikidata_path, select_split

    items = select_split(load_qa(qa_wikidata_path()), "test")
    random.Random(seed).shuffle(items)
    return items[:limit]


def run(limit=96, creativities=(0.25, 0.5), variants=None, max_new_tokens=16, batch=16,
        seed=0, progress=True) -> dict:
    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)  # the shared 2-core machine is oversubscribed; see the README
    from tigerdecode.api import ControlledGenerator
    from tigerdecode.models import load_model
    from tigerdecode.training.labels import label_answer
    from tigerdecode.training.sampling import format_prompt  # the heads' training prompt

    model, tok = load_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen = ControlledGenerator(model, tok, heads="auto")
    if gen.heads is None:
        raise click.ClickException("no shipped heads for the default model; nothing to compare")
    items = heldout_items(limit, seed)
    names = list(variants or VARIANTS)
    rows = []
    bar = tqdm(total=len(names) * len(creativities) * len(items), disable=not progress)
    for c in creativities:
        for name in names:
            right = wrong = abstain = tokens = 0
            t0 = time.perf_counter()
            for s in range(0, len(items), batch):
                chunk = items[s:s + batch]
                res = gen.generate_text([format_prompt(it.prompt) for it in chunk], creativity=c,
                                        max_new_tokens=max_new_tokens, seed=seed + s,
                                        **VARIANTS[name])
                for it, r in zip(chunk, res, strict=True):
                    tokens += len(r.token_ids)
                    if r.abstained:
                        abstain += 1
                    elif label_answer(it.prompt, it.answers, [r.text], True).correct:
                        right += 1
                    else:
                        wrong += 1
                bar.update(len(chunk))
            n = len(items)
            rows.append({"creativity": c, "variant": name, "n": n, "right": right,
                         "wrong": wrong, "abstain": abstain, "accuracy": right / n,
                         "error_rate": wrong / n,
                         "precision": right / max(1, right + wrong),
                         "mean_tokens": tokens / n,
                         "seconds": round(time.perf_counter() - t0, 1)})
    bar.close()
    return {"rows": rows, "settings": {"limit": limit, "max_new_tokens": max_new_tokens,
                                       "seed": seed, "split": "test",
                                       "prompts": "chat, training.sampling.format_prompt"}}


def table(res: dict) -> str:
    lines = ["| creativity | variant | right | wrong | abstain | precision | mean tokens |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        lines.append(f"| {r['creativity']:g} | {r['variant']} | {r['right']} | {r['wrong']} | "
                     f"{r['abstain']} | {r['precision']:.3f} | {r['mean_tokens']:.1f} |")
    return "\n".join(lines)


@click.command()
@click.option("--limit", type=int, default=96, show_default=True)
@click.option("--creativity", "creativities", default="0.25,0.5", show_default=True)
@click.option("--variants", default=None, help=f"Comma-separated subset of {list(VARIANTS)}.")
@click.option("--max-new-tokens", type=int, default=16, show_default=True)
@click.option("--json", "json_path", default=None, help="Also write the results here.")
def main(limit, creativities, variants, max_new_tokens, json_path):
    """Ablate the head uses on held-out qa_wikidata topics."""
    cs = tuple(float(x) for x in creativities.split(","))
    names = variants.split(",") if variants else None
    if names and set(names) - set(VARIANTS):
        raise click.BadParameter(f"unknown variants {sorted(set(names) - set(VARIANTS))}")
    res = run(limit, cs, names, max_new_tokens)
    click.echo(table(res))
    if json_path:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(json_path)))
        with os.fdopen(fd, "w") as f:
            json.dump(res, f, indent=2)
        os.replace(tmp, json_path)


if __name__ == "__main__":
    main()
