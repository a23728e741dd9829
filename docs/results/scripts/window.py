"""Experiment: which tokens should p_dev abstention watch? Decode validation items (the
8 non-test relations of runs/risk_val8) with abstention off at given creativities, keep the
per-token traces, then compare watch windows offline:
  latch  - every content token from the first fact slot on (the shipped rule)
  done   - from the first fact slot until p_stop first reaches 0.5 (answer complete), inclusive
  slot   - fact-slot tokens only (p_slot >= 0.5 before the token)
"""
import json, random, sys
import numpy as np, torch
from tigerdecode.api import ControlledGenerator
from tigerdecode.cli.options import load_items, with_forms_option
from tigerdecode.model.load import load_model
from tigerdecode.qa.data import qa_wikidata_path
from tigerdecode.qa.forms import form_of
from tigerdecode.qa.labels import label_answer
from tigerdecode.qa.prompts import format_prompt

torch.set_num_threads(1)
TOPICS = ["native language", "religion", "instrument", "located in",
          "languages spoken, written or signed", "headquarters location", "material used",
          "work location"]
cs = [float(x) for x in sys.argv[1].split(",")]
out = sys.argv[2]
items = [it for it in load_items(qa_wikidata_path(), "all") if it.topic in set(TOPICS)]
random.Random(0).shuffle(items)
items = items[:300]
asked = [it for it in with_forms_option(items, "question,completion", 0) if form_of(it) != "mixed"]
model, tok = load_model("default")
gen = ControlledGenerator(model, tok, heads="auto", warn=False)
rows = []
for c in cs:
    for s in range(0, len(asked), 16):
        chunk = asked[s:s + 16]
        res = gen.generate_text([format_prompt(it.prompt) for it in chunk], creativity=c,
                                max_new_tokens=24, seed=s, use_abstain=False)
        for it, r in zip(chunk, res):
            ok = label_answer(it.prompt, it.answers, [r.text], True).correct
            rows.append({"c": c, "topic": it.topic, "right": bool(ok), "p_factual": r.p_factual,
                         "text": r.text,
                         "trace": [[t.token, t.p_dev, t.p_stop, t.p_slot, t.p_risk] for t in r.trace]})
        print(c, s, file=sys.stderr, flush=True)
json.dump(rows, open(out, "w"))
