"""A batch of questions decoded as the evaluation and the data build decode them (one call,
rows of different lengths), with the eager runner's two batch savings turned off and on: the
shared prompt prefix (the chat template's system turn prefilled once, `ModelRunner.prefill`)
and dropping finished rows from the batch (`ModelRunner.step(keep=)`). Interleaved repeats,
medians; each configuration's tokens compared with the run that has neither, then the
first --solo rows of the batch with each row decoded alone. Quoted in
docs/results/generate-speed.md.

    python docs/results/scripts/batch_decode.py --threads 1 --batch 48 --repeats 3
"""

import argparse
import statistics

import torch

from tigerdecode.api import ControlledGenerator
from tigerdecode.decode.runner import ModelRunner
from tigerdecode.model.load import load_model
from tigerdecode.qa.data import load_qa, qa_wikidata_path, select_split
from tigerdecode.qa.forms import question_form

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--batch", type=int, default=48)
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--max-new-tokens", type=int, default=32)
ap.add_argument("--creativity", default="0,0.5")
ap.add_argument("--solo", type=int, default=16, help="rows compared with their solo decode")
a = ap.parse_args()
torch.set_num_threads(a.threads)

model, tok = load_model("default")
gen = ControlledGenerator(model, tok, heads="auto")
qs = [q for q in map(question_form, select_split(load_qa(qa_wikidata_path()), "validation"))
      if q is not None]
items = qs[:: max(1, len(qs) // a.batch)][: a.batch]  # spread over the relations
prompts = [q.prompt for q in items]
CONFIGS = {"neither": (False, False), "shared prefix": (False, True),
           "drop finished rows": (True, False), "both": (True, True)}
gen.generate_text(prompts[:2], creativity=0.5, max_new_tokens=2, seed=0)  # warm-up

print(f"{len(prompts)} validation questions (question form, chat template), "
      f"{a.max_new_tokens} new tokens at most, {a.threads} thread(s), {a.repeats} repeats\n")
print("| creativity | configuration | prefill s | decode s | total s | vs neither | "
      "new tokens | rows equal to neither |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for c in (float(x) for x in a.creativity.split(",")):
    runs = {k: [] for k in CONFIGS}
    toks = {}
    for _ in range(a.repeats):
        for name, (compacts, shares) in CONFIGS.items():
            ModelRunner.compacts, ModelRunner.shares_prefix = compacts, shares
            out = gen.generate_text(prompts, creativity=c, max_new_tokens=a.max_new_tokens,
                                    seed=0)
            t = out[0].timings
            runs[name].append((t["prefill_s"], t["decode_s"], t["total_s"]))
            toks[name] = [o.token_ids for o in out]
    ModelRunner.compacts = ModelRunner.shares_prefix = True
    base = statistics.median(r[2] for r in runs["neither"])
    for name, rs in runs.items():
        med = [statistics.median(r[i] for r in rs) for i in range(3)]
        same = sum(x == y for x, y in zip(toks[name], toks["neither"], strict=True))
        print(f"| {c:g} | {name} | {med[0]:.2f} | {med[1]:.2f} | {med[2]:.2f} | "
              f"{base / med[2]:.2f}x | {sum(map(len, toks[name]))} | {same}/{len(prompts)} |")

# each row alone (row i of a batch is seeded with seed + i): the same tokens?
print()
for c in (float(x) for x in a.creativity.split(",")):
    batch = gen.generate_text(prompts, creativity=c, max_new_tokens=a.max_new_tokens, seed=0)
    n = min(a.solo, len(prompts))
    same = sum(gen.generate_text([prompts[i]], creativity=c, max_new_tokens=a.max_new_tokens,
                                 seed=i)[0].token_ids == batch[i].token_ids for i in range(n))
    print(f"creativity {c:g}: {same}/{n} rows of the batch equal the row decoded alone")
