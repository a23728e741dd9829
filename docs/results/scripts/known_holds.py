"""Facts the model knows, asked at a creativity above 0: of the questions in a QA file that greedy
answers right, how many stay right at creativity C over several seeds, and, for those that do
not, where the answer first left greedy's tokens (the drawn and the greedy token, and the
policy's signals there). Quoted in docs/results/knob.md §11.

    python docs/results/scripts/known_holds.py data/easy_validation_facts.jsonl 0.5 \
        --seeds 15 --set open_hold=0 --set spell_hold=0
"""
import argparse
import warnings

import torch

from tigerdecode.api import ControlledGenerator
from tigerdecode.cli.judge import _prompts
from tigerdecode.cli.options import load_items, parse_sets
from tigerdecode.eval.runner import judge_outcome
from tigerdecode.model.load import load_model

warnings.simplefilter("ignore")
ap = argparse.ArgumentParser()
ap.add_argument("qa")
ap.add_argument("creativity", type=float)
ap.add_argument("--split", default="all", help="topic split of the QA file (as `judge eval`)")
ap.add_argument("--limit", type=int, default=None)
ap.add_argument("--seeds", type=int, default=5)
ap.add_argument("--max-new-tokens", type=int, default=16)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--set", action="append", default=[])
ap.add_argument("--show", action="store_true", help="print every answer that is not right")
a = ap.parse_args()
torch.set_num_threads(a.threads)
sets = parse_sets(a.set)
model, tok = load_model("default")
items = load_items(a.qa, a.split, a.limit, None, 0)
gen = ControlledGenerator(model, tok)
prompts = _prompts(items)
greedy = gen.generate_text(prompts, creativity=0.0, max_new_tokens=a.max_new_tokens, seed=0)
known = [i for i, (it, r) in enumerate(zip(items, greedy, strict=True))
         if judge_outcome(it, r.text, r.abstained) == "right"]
print(f"greedy answers {len(known)} of {len(items)} right")
n, outcomes, misses = 0, {"right": 0, "wrong": 0, "abstain": 0}, []
for s in range(a.seeds):
    out = gen.generate_text([prompts[i] for i in known], creativity=a.creativity,
                            max_new_tokens=a.max_new_tokens, seed=s, **sets)
    for i, r in zip(known, out, strict=True):
        o = judge_outcome(items[i], r.text, r.abstained)
        n, outcomes[o] = n + 1, outcomes[o] + 1
        if o != "right":
            g = greedy[i]
            pairs = zip(r.token_ids, g.token_ids, strict=False)  # answers of any lengths
            d = next((k for k, (x, y) in enumerate(pairs) if x != y), None)
            where = ""
            if d is not None and d < len(r.trace):
                t = r.trace[d]
                where = (f"left greedy at token {d}: {t.token!r} for {g.trace[d].token!r} "
                         f"(T {t.temperature:.2f}, p_slot {t.p_slot}, p_name {t.p_name}, "
                         f"p_spell {t.p_spell})")
            misses.append(f"{o}: {items[i].prompt!r} greedy {g.text!r} -> {r.text!r}; {where}")
print(f"creativity {a.creativity}, seeds 0-{a.seeds - 1}, {' '.join(a.set) or 'defaults'}: "
      f"right {outcomes['right']}/{n} = {outcomes['right'] / n:.3f}, wrong {outcomes['wrong']}, "
      f"abstained {outcomes['abstain']}")
if a.show:
    print("\n".join(misses))
