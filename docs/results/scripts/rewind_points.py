"""Where the judge's rewrites start and which of them pay: validation questions decoded with the
judge, every rejected answer rewritten (no budget, no ``min_rewind`` bar); per rewind point, how
many rewrites the judge then accepted and how many of those were right; then what each
``min_rewind`` bar would have left, with the default budget applied as the judge applies it
(the rewrites are greedy, so a row's rewrite does not depend on which other rows are rewritten).
Quoted in docs/results/judge.md.

    python docs/results/scripts/rewind_points.py --limit 192 --out runs/rewind_points.json
"""

import argparse
import json
import warnings
from collections import Counter

import torch

from tigerdecode.api import ControlledGenerator
from tigerdecode.cli.judge import _prompts
from tigerdecode.eval.runner import judge_outcome
from tigerdecode.judge.rewrite import DEFAULT_REWRITE_BUDGET, within_budget
from tigerdecode.model.load import load_model
from tigerdecode.qa.data import load_qa, qa_wikidata_path, select_split

warnings.simplefilter("ignore")
ap = argparse.ArgumentParser()
ap.add_argument("--split", default="validation")
ap.add_argument("--limit", type=int, default=192)
ap.add_argument("--batch-size", type=int, default=48)
ap.add_argument("--max-new-tokens", type=int, default=16)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--out", default=None)
a = ap.parse_args()
torch.set_num_threads(a.threads)
model, tok = load_model("default")
items = select_split(load_qa(qa_wikidata_path()), a.split)[:a.limit]
gen = ControlledGenerator(model, tok)
rows = []
for s in range(0, len(items), a.batch_size):  # as `tigerdecode judge eval` batches and seeds
    its = items[s:s + a.batch_size]
    out = gen.generate_text(_prompts(its), creativity=0.5, max_new_tokens=a.max_new_tokens,
                            seed=s, judge="auto", rewrite_budget=100, min_rewind=0)
    for it, r in zip(its, out, strict=True):
        h = r.judge.rewrites
        rows.append({"batch": s, "first_len": len(h[0]["token_ids"]), "verdict": r.judge.verdict,
                     "threshold": r.judge.threshold, "final": judge_outcome(it, r.text, r.abstained),
                     "rewrite": None if len(h) < 2 else {
                         "j": h[1]["rewind_at"], "len": len(h[1]["token_ids"]),
                         "score": h[1]["score"],
                         "outcome": judge_outcome(it, h[1]["text"], False)}})
if a.out:
    with open(a.out, "w") as f:
        json.dump(rows, f)

rw = [r["rewrite"] | {"final": r["final"]} for r in rows if r["rewrite"]]
print(f"{len(rows)} answers, {len(rw)} rewritten\n")
print("| rewind point | rewrites | accepted | accepted and right |\n|---:|---:|---:|---:|")
for j in sorted({x["j"] for x in rw}):
    at = [x for x in rw if x["j"] == j]
    acc = [x for x in at if x["score"] < rows[0]["threshold"]]
    print(f"| {j} | {len(at)} | {len(acc)} | {sum(x['outcome'] == 'right' for x in acc)} |")

print("\n| min_rewind | right | wrong | rewrites | rewritten tokens | lockstep steps per batch |"
      "\n|---:|---:|---:|---:|---:|---|")
for k in range(0, 9):
    final, steps, n, toks = Counter(), [], 0, 0
    for s in sorted({r["batch"] for r in rows}):
        batch = [r for r in rows if r["batch"] == s]
        # the judge's budget: the first answers' tokens (abstentions' left out) times the share
        left = DEFAULT_REWRITE_BUDGET * max(1, sum(r["first_len"] for r in batch
                                                   if r["verdict"] != "abstain" or r["rewrite"]))
        cand = [r for r in batch if r["rewrite"] and r["rewrite"]["j"] >= k]
        ok = within_budget([max(1, r["first_len"] - r["rewrite"]["j"]) for r in cand], left)
        chosen = {id(r) for r, y in zip(cand, ok, strict=True) if y}
        st = 0
        for r in batch:
            if not r["rewrite"]:
                o = r["final"]
            elif id(r) in chosen:
                x = r["rewrite"]
                n, toks, st = n + 1, toks + x["len"] - x["j"], max(st, a.max_new_tokens - x["j"])
                o = x["outcome"] if x["score"] < r["threshold"] else "abstain"
            else:
                o = "abstain"
            final[o] += 1
        steps.append(st)
    print(f"| {k} | {final['right']} | {final['wrong']} | {n} | {toks} | "
          f"{', '.join(map(str, steps))} |")
