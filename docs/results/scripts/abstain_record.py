"""Record, per answer, everything an abstention rule can read: decode QA items with the shipped
heads and abstention off, label each answer, and keep per token its text, p_dev, p_slot, p_risk,
p_stop and the model's probability of the drawn token (a teacher-forced forward of the answer).

    python docs/results/scripts/abstain_record.py OUT.json --creativity 0 --seeds 0 \
        --qa data/easy_validation_facts.jsonl
    python docs/results/scripts/abstain_record.py OUT.json --creativity 0 --seeds 0 --relations

``--relations``: the eight non-test relations of knob.md §6 (300 facts, question and completion
form, the same draw as docs/results/scripts/veto.py). ``--qa FILE`` items are asked as written.
"""
import argparse
import json
import random

import torch

from tigerdecode.api import ControlledGenerator
from tigerdecode.cli.options import load_items, load_model_for
from tigerdecode.model.prompting import encode_prompts
from tigerdecode.qa.data import load_qa, qa_wikidata_path
from tigerdecode.qa.forms import form_of, with_forms
from tigerdecode.qa.labels import label_answer
from tigerdecode.qa.prompts import format_prompt

TOPICS = {"native language", "religion", "instrument", "located in",
          "languages spoken, written or signed", "headquarters location", "material used",
          "work location"}
ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--qa")
ap.add_argument("--relations", action="store_true")
ap.add_argument("--creativity", type=float, default=0.0)
ap.add_argument("--seeds", default="0")
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
model, tok = load_model_for("default")
if a.relations:
    items = [it for it in load_items(qa_wikidata_path(), "all") if it.topic in TOPICS]
    random.Random(0).shuffle(items)
    asked = [it for it in with_forms(items[:300], ("question", "completion"), seed=0)
             if form_of(it) != "mixed"]
else:
    asked = load_qa(a.qa)
gen = ControlledGenerator(model, tok)
rows = []
for seed in (int(s) for s in a.seeds.split(",")):
    for s in range(0, len(asked), 50):
        chunk = asked[s:s + 50]
        res = gen.generate_text([format_prompt(it.prompt) for it in chunk],
                                creativity=a.creativity, max_new_tokens=24, seed=seed * 1000 + s,
                                use_abstain=False)
        for it, r in zip(chunk, res, strict=True):
            ids = r.token_ids
            probs = []
            if ids:
                enc = encode_prompts(tok, [format_prompt(it.prompt)])
                with torch.inference_mode():
                    full = torch.cat([enc["input_ids"], torch.tensor([ids])], 1)
                    lp = torch.log_softmax(
                        model(full).logits[0, enc["input_ids"].shape[1] - 1:-1].float(), -1)
                probs = lp[torch.arange(len(ids)), torch.tensor(ids)].exp().tolist()
            tr = r.trace[:len(ids)]
            rows.append({"prompt": it.prompt, "topic": it.topic, "seed": seed,
                         "right": label_answer(it.prompt, it.answers, [r.text], True).correct,
                         "text": r.text, "p_factual": r.p_factual,
                         "toks": [[t.token, t.p_dev, t.p_slot, t.p_risk, t.p_stop, p]
                                  for t, p in zip(tr, probs)]})
        print(seed, s + len(chunk), flush=True)
json.dump({"creativity": a.creativity, "rows": rows}, open(a.out, "w"))
print(f"{sum(r['right'] for r in rows)} right of {len(rows)}")
