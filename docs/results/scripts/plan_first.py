"""Can the model say, before writing, which fact a creative request needs? (train relations)

A "plan first" decoding would ask the model for the name a mixed prompt must contain ("Write a
two-line poem about X that names its capital." -> "Montevideo"), then hold that name's tokens
while the text itself is sampled. That only helps if the plan names the fact more often than
the creative text does. For the known train facts the eval's pre-pass selects (their greedy
completion answer is right), prints the share whose greedy plan contains a gold answer, for
three plan prompts, beside the share of plain greedy answers to the mixed prompt itself that
contain one (the same substring test for both).

    python docs/results/scripts/plan_first.py --split train --n 120
"""
import argparse

import torch

from tigerdecode.api import ControlledGenerator
from tigerdecode.cli.options import load_items, load_model_for
from tigerdecode.eval import creative_facts as cf
from tigerdecode.qa.data import qa_wikidata_path

PLANS = {
    "name only": "{p}\nBefore you write it: which name must the text contain? "
                 "Answer with the name only.",
    "request quoted": "Which place, person or thing does this request ask the text to name? "
                      "Answer with the name only.\nRequest: {p}",
    "fact sentence": "{p}\nFirst, state the fact the text must include in one short sentence.",
}
ap = argparse.ArgumentParser()
ap.add_argument("--split", default="train")
ap.add_argument("--n", type=int, default=120)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
model, tok = load_model_for("default")
items = cf.known_mixed_items(model, tok, load_items(qa_wikidata_path(), a.split), a.n)
gen = ControlledGenerator(model, tok)


def share(template, max_new_tokens):
    hit = 0
    for s in range(0, len(items), 30):
        chunk = items[s:s + 30]
        res = gen.generate_text([template.format(p=it.prompt) for it in chunk], method="greedy",
                                max_new_tokens=max_new_tokens)
        hit += sum(any(g.lower() in r.text.lower() for g in it.answers)
                   for it, r in zip(chunk, res, strict=True))
    return hit


print(f"{len(items)} known {a.split} facts, asked as mixed prompts")
print("| greedy text | contains a gold answer |\n|---|---|")
print(f"| the creative answer itself (48 tokens) | {share('{p}', 48) / len(items):.3f} |")
for name, t in PLANS.items():
    print(f"| plan: {name} (20 tokens) | {share(t, 20) / len(items):.3f} |")
