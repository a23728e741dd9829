"""Would a confidence veto help p_dev abstention? Eight non-test relations (as knob.md §6's
`policy risk` run), question and completion form, creativity 0, abstention off; per answer the
p_dev of every content token from the first fact slot on and the model's probability of that
token. Prints, per veto v (abstain only on tokens drawn with probability < v), the wrong answers
caught at the bar that keeps >= 95% of the right ones.

    python docs/results/scripts/veto.py runs/exp/veto_val.json
"""
import json
import random
import sys

import numpy as np
import torch

from tigerdecode.api import ControlledGenerator
from tigerdecode.cli.options import load_items, load_model_for
from tigerdecode.model.prompting import encode_prompts
from tigerdecode.qa.data import qa_wikidata_path
from tigerdecode.qa.forms import form_of, with_forms
from tigerdecode.qa.labels import label_answer
from tigerdecode.qa.prompts import format_prompt

TOPICS = {"native language", "religion", "instrument", "located in",
          "languages spoken, written or signed", "headquarters location", "material used",
          "work location"}
out = sys.argv[1]
torch.set_num_threads(2)
model, tok = load_model_for("default")
items = [it for it in load_items(qa_wikidata_path(), "all") if it.topic in TOPICS]
random.Random(0).shuffle(items)
asked = [it for it in with_forms(items[:300], ("question", "completion"), seed=0)
         if form_of(it) != "mixed"]
gen = ControlledGenerator(model, tok)
rows = []
for s in range(0, len(asked), 50):
    chunk = asked[s:s + 50]
    res = gen.generate_text([format_prompt(it.prompt) for it in chunk], creativity=0.0,
                            max_new_tokens=24, seed=s, use_abstain=False)
    for it, r in zip(chunk, res):
        ids = r.token_ids
        probs = []
        if ids:
            enc = encode_prompts(tok, [format_prompt(it.prompt)])
            with torch.inference_mode():
                full = torch.cat([enc["input_ids"], torch.tensor([ids])], 1)
                lp = torch.log_softmax(model(full).logits[0, enc["input_ids"].shape[1] - 1:-1]
                                       .float(), -1)
            probs = lp[torch.arange(len(ids)), torch.tensor(ids)].exp().tolist()
        tr = r.trace[:len(ids)]
        first = next((j for j, t in enumerate(tr) if (t.p_slot or 0) >= 0.5), None)
        toks = [(t.p_dev, p) for j, (t, p) in enumerate(zip(tr, probs))
                if first is not None and j >= first and any(ch.isalnum() for ch in t.token)]
        rows.append({"right": label_answer(it.prompt, it.answers, [r.text], True).correct,
                     "toks": toks, "text": r.text})
    print(s + len(chunk), flush=True)
json.dump(rows, open(out, "w"))
right = [r for r in rows if r["right"]]
wrong = [r for r in rows if not r["right"]]
print(f"{len(right)} right, {len(wrong)} wrong")
for v in (1.01, 0.95, 0.9, 0.8, 0.7, 0.5):
    def peak(r):
        return max([d for d, p in r["toks"] if p < v] or [0.0])
    pr, pw = np.array([peak(r) for r in right]), np.array([peak(r) for r in wrong])
    best = None
    for bar in np.arange(0.5, 1.0001, 0.0125):
        kept = (pr < bar).mean()
        if kept >= 0.95:
            best = (bar, kept, (pw >= bar).mean())
            break
    print(f"veto at p >= {v:g}: bar {best[0]:.4f} keeps {best[1]:.3f} of right, catches "
          f"{best[2]:.3f} of wrong")
