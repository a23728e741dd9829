"""Facts inside creative text: does agreement between samples pick the ones that name the fact?

Decodes K samples of each known fact's mixed prompt (tigerdecode's policy at each creativity,
or plain temperature for ``T<x>``; 48 tokens, seeds as `name_hold.py`), saves them, and prints per creativity: the fact accuracy
and pooled distinct-2 of the first M samples (what `tigerdecode eval` scores) against the M
samples a consensus score picks from the first M+1 … K (each sample's names — capitalised words not in the prompt —
counted in the other samples of the same prompt; ``--score`` picks how a sample's names add up).

    python docs/results/scripts/consensus.py OUT.json 0.5,0.75,T0.6 train 120 --k 9 --m 3
    python docs/results/scripts/consensus.py OUT.json 0.5 train 120 --k 9 --m 3 --reuse
"""
import argparse
import json
import os
import time

import torch

from tigerdecode.api import ControlledGenerator
from tigerdecode.cli.options import load_items, load_model_for, parse_sets
from tigerdecode.eval import creative_facts as cf
from tigerdecode.eval.metrics import distinct_n
from tigerdecode.fsutil import atomic_write
from tigerdecode.policy.consensus import consensus_order, names
from tigerdecode.qa.data import qa_wikidata_path
from tigerdecode.qa.labels import label_mixed

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("creativities")
ap.add_argument("split")
ap.add_argument("n_facts", type=int)
ap.add_argument("--k", type=int, default=9)
ap.add_argument("--m", type=int, default=3)
ap.add_argument("--set", action="append", default=[])
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--reuse", action="store_true", help="score the saved samples in OUT only")
ap.add_argument("--score", choices=("sum", "max", "mean"), default="sum",
                help="sum: the library's consensus_order (agreement summed over a sample's names);"
                     " max: its most shared name only; mean: averaged over its names")
a = ap.parse_args()
torch.set_num_threads(a.threads)
res = json.load(open(a.out)) if os.path.exists(a.out) else {}
if not a.reuse:
    sets = parse_sets(a.set)
    model, tok = load_model_for("default")
    items = cf.known_mixed_items(model, tok, load_items(qa_wikidata_path(), a.split), a.n_facts)
    print("items", len(items), flush=True)
    gen = ControlledGenerator(model, tok)
    prompts = [it for it in items for _ in range(a.k)]
    for x in a.creativities.split(","):
        # "0.5": the policy at creativity 0.5; "T0.6": plain temperature 0.6
        key = x if x.startswith("T") else f"c={float(x)}"
        kw = dict(method="temperature", temperature=float(x[1:])) if x.startswith("T") else \
            dict(creativity=float(x), **sets)
        if key in res:
            continue
        t0, outs = time.time(), []
        for s in range(0, len(prompts), 36):
            chunk = prompts[s:s + 36]
            out = gen.generate_text([it.prompt for it in chunk], max_new_tokens=48, seed=s, **kw)
            outs += [{"prompt": it.prompt, "answers": it.answers, "text": r.text,
                      "abstained": r.abstained} for it, r in zip(chunk, out, strict=True)]
        res[key] = outs
        print(key, f"{time.time() - t0:.0f}s", flush=True)
        atomic_write(a.out, json.dumps(res))


def order(prompt, texts):
    if a.score == "sum":
        return consensus_order(prompt, texts)
    sets = [names(t, prompt) for t in texts]
    counts = {}
    for s in sets:
        for n in s:
            counts[n] = counts.get(n, 0) + 1
    agg = max if a.score == "max" else (lambda xs: sum(xs) / len(xs))
    score = [agg([counts[n] - 1 for n in s]) if s else 0.0 for s in sets]
    return sorted(range(len(texts)), key=lambda i: -score[i])


def right(o):
    return not o["abstained"] and label_mixed(o["answers"], [o["text"]]).correct


for key, outs in res.items():
    groups = {}
    for o in outs:
        groups.setdefault(o["prompt"], []).append(o)
    first, every = [], []
    picked = {kk: [] for kk in range(a.m + 1, a.k + 1)}
    for p, xs in groups.items():
        first += xs[:a.m]
        every += xs
        for kk in picked:  # the pool of the first kk samples
            picked[kk] += [xs[i] for i in order(p, [x["text"] for x in xs[:kk]])[:a.m]]
    for name, rows in (("all K", every), (f"first {a.m}", first),
                       *((f"{a.m} of {kk}", picked[kk]) for kk in picked)):
        acc = sum(map(right, rows)) / len(rows)
        print(f"{key:8s} {name:12s} n={len(rows):5d} fact {acc:.3f} "
              f"distinct-2 {distinct_n([r['text'] for r in rows], 2):.3f}")
