import json, torch
torch.set_num_threads(1)
from tigerdecode.api import ControlledGenerator
from tigerdecode.model.load import load_model
from tigerdecode.qa.data import load_qa
from tigerdecode.qa.prompts import format_prompt
from tigerdecode.eval.runner import judge_outcome
m, t = load_model("default")
g = ControlledGenerator(m, t, heads=None, warn=False)
items = load_qa("runs/exp/wk_candidates.jsonl")
res = g.generate_text([format_prompt(it.prompt) for it in items], method="greedy", max_new_tokens=16)
keep = []
for it, r in zip(items, res):
    o = judge_outcome(it, r.text, r.abstained)
    print(o, it.prompt, "->", r.text)
    if o == "right": keep.append(it)
print(len(keep))
json.dump([it.to_dict() for it in keep], open("runs/exp/wk_right.json", "w"))
