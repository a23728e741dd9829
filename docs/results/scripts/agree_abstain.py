"""Abstention by agreement between samples, on questions (validation only): does a factual answer
whose names the model's own samples do not repeat tend to be wrong?

For each question (the eval's question form and prompt format): tigerdecode at creativity 0 (its
own abstention on), greedy, and K samples at temperature T. A row's agreement is the share of
the samples that use one of the answer's names (capitalised words not in the question; answers
without one are never abstained on here). Prints, for each bar on agreement, the answers kept and
what they score against greedy: right answers kept (share of greedy's), wrong answers (change
against greedy's). Two sets: the validation relations (150 spread, as `tigerdecode eval
--split validation --forms question`) and `data/easy_validation_facts.jsonl` (facts it mostly
knows), where the abstention bars were chosen (knob.md §8).

    python docs/results/scripts/agree_abstain.py runs/exp/agree_val.json --k 6 --t 0.7
"""
import argparse
import json
import os

import torch

from tigerdecode.api import ControlledGenerator
from tigerdecode.cli.eval import _spread
from tigerdecode.cli.options import load_items, load_model_for, with_forms_option
from tigerdecode.eval.runner import judge_outcome
from tigerdecode.fsutil import atomic_write
from tigerdecode.policy.consensus import names
from tigerdecode.qa.data import qa_wikidata_path
from tigerdecode.qa.prompts import format_prompt

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--k", type=int, default=6)
ap.add_argument("--t", type=float, default=0.7)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)

sets = {"validation relations": with_forms_option(
            _spread(load_items(qa_wikidata_path(), "validation"), 150), "question", 0),
        "easy validation facts": load_items("data/easy_validation_facts.jsonl")}
res = json.load(open(a.out)) if os.path.exists(a.out) else {}
if any(name not in res for name in sets):
    model, tok = load_model_for("default")
    gen = ControlledGenerator(model, tok)
for name, items in sets.items():
    if name in res:
        continue
    rows = []
    for s in range(0, len(items), 25):
        chunk = items[s:s + 25]
        prompts = [format_prompt(it.prompt) for it in chunk]
        tiger = gen.generate_text(prompts, creativity=0, max_new_tokens=24, seed=s)
        greedy = gen.generate_text(prompts, method="greedy", max_new_tokens=24)
        samples = gen.generate_text([p for p in prompts for _ in range(a.k)], method="temperature",
                                    temperature=a.t, max_new_tokens=24, seed=1000 + s)
        for i, it in enumerate(chunk):
            rows.append({"prompt": it.prompt, "answers": it.answers,
                         "tiger": tiger[i].text, "abstained": tiger[i].abstained,
                         "greedy": greedy[i].text,
                         "samples": [r.text for r in samples[i * a.k:(i + 1) * a.k]]})
        print(name, s + len(chunk), flush=True)
    res[name] = rows
    atomic_write(a.out, json.dumps(res))


for name, rows in res.items():
    items = sets[name]  # the rows were decoded from these items, in this order
    greedy = [judge_outcome(it, r["greedy"], False) for it, r in zip(items, rows, strict=True)]
    tiger = [judge_outcome(it, r["tiger"], r["abstained"])
             for it, r in zip(items, rows, strict=True)]
    agree = []
    for r in rows:
        ns = names(r["tiger"], r["prompt"])
        agree.append(None if not ns else
                     sum(bool(ns & names(x, r["prompt"])) for x in r["samples"]) / len(r["samples"]))
    g_right, g_wrong = greedy.count("right"), greedy.count("wrong")
    print(f"{name}: {len(rows)} questions; greedy {g_right} right / {g_wrong} wrong; "
          f"{sum(x is None for x in agree)} answers without a name")
    for bar in [0.0] + [j / a.k for j in range(1, a.k + 1)]:
        out = [("abstain" if (o != "abstain" and g is not None and g < bar) else o)
               for o, g in zip(tiger, agree, strict=True)]
        right, wrong = out.count("right"), out.count("wrong")
        print(f"  agreement >= {bar:.2f}: right {right} ({right / max(g_right, 1):.1%} of greedy's)"
              f", wrong {wrong} ({wrong / max(g_wrong, 1) - 1:+.1%}), abstain {out.count('abstain')}")
