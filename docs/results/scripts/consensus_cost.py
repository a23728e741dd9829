"""What consensus costs: wall time of ``generate_text`` at consensus 1 / 3 / 9, side by side.

The same train-relation creative prompts (mixed prompts: a poem / slogan that must name a fact)
at creativity 0.5, 48 new tokens, decoded at each consensus in turn, ``--repeats`` rounds
(median reported, ratios against consensus 1 of the same round); once for a batch of
``--n`` distinct prompts and once for a single prompt (what `tigerdecode generate` asks).

    python docs/results/scripts/consensus_cost.py --n 8 --repeats 3
"""
import argparse
import statistics
import time

import torch

from tigerdecode.api import ControlledGenerator
from tigerdecode.cli.options import load_items, load_model_for
from tigerdecode.eval import creative_facts as cf
from tigerdecode.qa.data import qa_wikidata_path

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=8)
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--ks", default="1,3,9")
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
ks = [int(k) for k in a.ks.split(",")]
model, tok = load_model_for("default")
gen = ControlledGenerator(model, tok)
prompts = [it.prompt for it in cf.mixed_items(load_items(qa_wikidata_path(), "train"), a.n, 0)]
gen.generate_text(prompts[:2], max_new_tokens=4, seed=0)  # warm-up

for name, batch in ((f"{a.n} prompts", prompts), ("1 prompt", prompts[:1])):
    secs = {k: [] for k in ks}
    for rep in range(a.repeats):
        for k in ks:
            t0 = time.perf_counter()
            gen.generate_text(batch, creativity=0.5, max_new_tokens=48, seed=rep, consensus=k)
            secs[k].append(time.perf_counter() - t0)
    base = secs[ks[0]]
    for k in ks:
        ratio = statistics.median(s / b for s, b in zip(secs[k], base, strict=True))
        print(f"{name:12s} consensus {k:2d}: median {statistics.median(secs[k]):6.2f} s, "
              f"{ratio:4.2f}x consensus {ks[0]}", flush=True)
